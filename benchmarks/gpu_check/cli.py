"""The check's command line: what it refuses before it starts, the parts in order, each in its box, and a
results file that survives a stop."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

import gpu_check
from cifarlab.errors import CifarlabError, one_line
from gpu_check import (
    ROOT,
    full_runs,
    gpu_tests,
    paths,
    preflight,
    projection,
    rates,
    runs_per_gpu,
)
from gpu_check.boxes import PartTimeout
from gpu_check.check import Check
from gpu_check.goals import goals
from gpu_check.machine import configure_like_the_stages, dvclive_refusal, machine_lines
from gpu_check.results import Results, Section
from gpu_check.sizes import GPU, PARTS, REHEARSAL

PART_RUNS: dict[str, Callable[[Check, Section, float], None]] = {
    "preflight": preflight.run, "throughput": paths.run, "train": full_runs.run, "runs-per-gpu": runs_per_gpu.run,
    "rates": rates.run, "tests": gpu_tests.run, "projection": projection.run}


def parse_box(text: str) -> tuple[str, float]:
    part, _, seconds = text.partition("=")
    if part not in PARTS or not seconds:
        raise argparse.ArgumentTypeError(f"expected PART=SECONDS with PART one of {', '.join(PARTS)}, got {text!r}")
    return part, float(seconds)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check", description=gpu_check.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, help="the CIFAR-10 subset archive "
                        "(cifar-10-subset-python.tar.gz); the rehearsal generates a tiny one without it")
    parser.add_argument("--out", type=Path,
                        help="the results file, or a folder for gpu-check-<GPU>.md (default: "
                             "benchmarks/results/; the rehearsal's: rehearsal.md in the work folder)")
    parser.add_argument("--logs", type=Path,
                        help="also write every part's log here, as a .tar.gz")
    parser.add_argument("--commit-file", type=Path,
                        help="a file whose first line names the commit measured, for a copy without .git")
    parser.add_argument("--rehearsal", action="store_true", help="the same code on the CPU with tiny sizes")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"a comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--budget", type=float, help="seconds for the whole check, the stops' grace included "
                                                     "(480; the rehearsal 300)")
    parser.add_argument("--box", type=parse_box, action="append", default=[], metavar="PART=S",
                        help="one part's time box in seconds (repeatable)")
    parser.add_argument("--workdir", type=Path,
                        help="where the temporary project and logs go (default: a new temporary folder, "
                             "removed at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    arguments = parser()
    args = arguments.parse_args(argv)
    args.box = dict(args.box)
    for option, path in (("--archive", args.archive), ("--commit-file", args.commit_file)):
        if path is not None and not path.is_file():
            arguments.error(f"{option}: {path} is not a file")
    args.archive = args.archive and args.archive.resolve()
    parts = [part for part in args.parts.split(",") if part]
    if unknown := [part for part in parts if part not in PARTS]:
        arguments.error(f"--parts: unknown {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    if not args.rehearsal and not torch.cuda.is_available():
        arguments.error("no CUDA device here: the check measures a GPU (--rehearsal runs it on the CPU)")
    if not args.rehearsal and args.archive is None and {"train", "runs-per-gpu"} & set(parts):
        arguments.error("--archive: the train and runs-per-gpu parts need the CIFAR-10 subset archive")
    return args, parts


def make_check(args: argparse.Namespace, argv: list[str], parts: list[str]) -> Check:
    device = torch.device("cpu" if args.rehearsal else "cuda")
    sizes = REHEARSAL if args.rehearsal else GPU
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    heading, machine, slug = machine_lines(device, args.rehearsal, argv, args.commit_file)
    out = args.out or (workdir / "rehearsal.md" if args.rehearsal else ROOT / "benchmarks" / "results")
    if out.is_dir():
        out = out / f"gpu-check-{slug}.md"
    results = Results(out.resolve(), heading, machine)
    budget = args.budget if args.budget is not None else sizes.budget_s
    check = Check(args, sizes, device, results, workdir, deadline=time.monotonic() + budget, archive=args.archive)
    if check.archive is None and args.rehearsal:
        sys.path.insert(0, str(ROOT / "tests"))
        from archives import make_cifar_archive

        check.archive = make_cifar_archive(workdir / "tiny-cifar.tar.gz", per_batch=12, test_size=20)
    for part in PARTS:
        if part not in parts:
            results.sections[part].status = "not run: not among --parts"
    return check


def run_part(check: Check, part: str) -> None:
    section = check.results.sections[part]
    box = check.box(part) if part != "projection" else check.sizes.boxes[part]  # arithmetic only: always
    if box < 1:
        section.status = "not run: the check's time budget was spent"
        return
    section.status = "running"
    started = time.monotonic()
    print(f"== {part} (time box {box:.0f} s)", flush=True)
    try:
        PART_RUNS[part](check, section, box)
    except PartTimeout:
        section.status = f"partial: stopped at its {box:.0f} s time box"
    except Exception as exc:  # noqa: BLE001  (a part's failure is a finding; the next part still runs)
        section.status = f"failed: {type(exc).__name__}: {one_line(exc)}"
        (check.workdir / "logs").mkdir(exist_ok=True)
        (check.workdir / "logs" / f"{part}.traceback").write_text(traceback.format_exc())
    print(f"-- {part}: {section.status} ({time.monotonic() - started:.0f} s)", flush=True)
    check.write()


def run_parts(check: Check, parts: list[str]) -> int:
    """Every part asked for, in PARTS' order; 130 if the check was interrupted."""
    current = None
    try:
        check.write()
        for part in [p for p in PARTS if p in parts]:
            current = part
            run_part(check, part)
        return 0
    except KeyboardInterrupt:
        if current is not None:
            section = check.results.sections[current]
            section.status = f"stopped early (interrupted): {section.status}"
        print("gpu check: interrupted; writing what was measured", file=sys.stderr, flush=True)
        return 130


def finish(check: Check, parts: list[str]) -> None:
    """The projection from what was measured, if the check stopped before it; the goals; the logs."""
    section = check.results.sections["projection"]
    if "projection" in parts and section.status.startswith(("not run", "running", "stopped early")):
        with contextlib.suppress(Exception):
            projection.run(check, section, 1.0)
            section.status += " (from what was measured before the check stopped)"
    with contextlib.suppress(Exception):
        check.results.goals = goals(check)
    check.write()
    args = check.args
    if args.logs is not None and (check.workdir / "logs").is_dir():
        args.logs.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.logs, "w:gz") as archive:
            archive.add(check.workdir / "logs", arcname="logs")
    if not args.keep and args.workdir is None:
        shutil.rmtree(check.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, parts = parse(argv)
    if (refusal := dvclive_refusal()) is not None:
        print(f"gpu check: {refusal}", file=sys.stderr)
        return 2
    try:
        configure_like_the_stages()
    except CifarlabError as exc:  # params.yaml, which every stage would refuse too
        print(f"gpu check: {exc}", file=sys.stderr)
        return 2
    check = make_check(args, argv, parts)
    # A scheduler's SIGTERM stops the check as Ctrl-C does: what is measured is written.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"gpu check: {check.results.heading}; results -> {check.results.path}; work folder {check.workdir}",
          flush=True)
    try:
        status = run_parts(check, parts)
    finally:
        finish(check, parts)
    print(f"gpu check: results in {check.results.path}", flush=True)
    return status
