"""What DVC itself costs as the study grows: dvc.lock's lines per stage and DVC's seconds per stage.

For each git checkout given (its committed HEAD) and each study size N (entries under `runs:`), in a
fresh clone of the checkout:

1. params.yaml is the checkout's own with `runs:` replaced by N entries that cycle through its original
   runs (those without `replicate_of`), named `<run>-s<k>`; every other key is kept but `profile`
   where --profile is given (the profile's keys are among each train stage's params).
2. Every stage's outputs (outs, metrics, plots, with `${...}` substituted) are written by a stand-in
   shell command instead of the stage's own: a file holds its own path (`{}` for a .json, one header
   line for a .csv), a path without a suffix is a directory holding one such file plus any file that
   another stage depends on inside it. Nothing is downloaded, trained or plotted; deps and params are
   left as the checkout declares them, since they are what DVC hashes and records.
3. `dvc commit --force` with the checkout's own dvc.yaml writes dvc.lock for every stage at once, with
   the real commands. Measured: its lines in all, and the lines of the `train@` and `evaluate@`
   entries divided by N.
4. `dvc status` on that finished pipeline, timed: it must find everything up to date (the script stops
   otherwise), and so checks every dep, param and output of every stage.
5. With dvc.yaml's commands swapped for the stand-ins, `dvc repro --force --single-item train@<run>`
   (and evaluate@) for a few runs spread over the study, timed. DVC's seconds per stage is that wall
   time less the stand-in command's own (the median of timing it alone through /bin/sh): a whole
   `dvc` process for one stage, as a sweep task or a one-run `dvc repro` pays it, including DVC's
   start-up, reading dvc.yaml, params.yaml and dvc.lock, hashing, the run cache and rewriting dvc.lock.

Every timing is repeated (--repeats) with the checkouts interleaved, so that noise on a shared machine
hits them alike; the table gives medians and ranges. Each clone has its own fresh DVC cache.

Usage:
python benchmarks/dvc_scale.py --checkout DIR [--checkout DIR ...] [--runs 38 200] [--profile NAME]
    [--repeats 3] --out FILE.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

TIMED_STAGES = ("train", "evaluate")
SHELL = "/bin/sh"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "SHELL": SHELL,
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
VARIABLE = re.compile(r"\$\{\s*([\w.@-]+)\s*\}")


@dataclass
class Clone:
    """One checkout at one study size, ready to time, and what was measured in it."""

    commit: str
    path: Path
    runs: int
    stand_in_dvc_yaml: str
    stand_in_seconds: dict[str, float]  # per timed stage: its stand-in command alone, median
    lock_lines: dict[str, float] = field(default_factory=dict)  # "total", and per timed stage
    commit_seconds: float = 0.0
    status_seconds: list[float] = field(default_factory=list)
    stage_seconds: dict[str, list[float]] = field(default_factory=dict)


def run(cmd: list[str], cwd: Path) -> float:
    """Run cmd in cwd; its wall seconds. Exits with its output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(cmd, check=False, cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} in {cwd} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return seconds


def study_params(params: dict, size: int, profile: str | None) -> dict:
    originals = [(name, entry) for name, entry in params["runs"].items() if "replicate_of" not in entry]
    runs = {}
    for i in range(size):
        name, entry = originals[i % len(originals)]
        runs[f"{name}-s{i // len(originals)}"] = entry
    return {**params, "runs": runs, **({"profile": profile} if profile else {})}


def lookup(context: dict, dotted: str):
    value = context
    for part in dotted.split("."):
        value = value[part]
    return value


def substitute(template: str, context: dict) -> str:
    return VARIABLE.sub(lambda match: str(lookup(context, match.group(1))), template)


def expand(stages: dict, params: dict) -> list[tuple[str, dict, dict]]:
    """Every stage as DVC addresses it, with the context its ${...} resolve in: (address, stage, context)."""
    expanded = []
    for name, stage in stages.items():
        if "matrix" in stage:
            sys.exit(f"stage {name}: matrix stages are not supported")
        if "foreach" not in stage:
            expanded.append((name, stage, params))
            continue
        items = stage["foreach"]
        if isinstance(items, str):
            items = lookup(params, VARIABLE.fullmatch(items).group(1))
        pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
        for key, item in pairs:
            expanded.append((f"{name}@{key}", stage["do"], {**params, "key": key, "item": item}))
    return expanded


def paths(entries: list) -> list[str]:
    """The paths of a deps/outs/metrics/plots list, whose entries are a path or {path: options}."""
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries or []]


def outputs(stage: dict) -> list[str]:
    return paths(stage.get("outs")) + paths(stage.get("metrics")) + paths(stage.get("plots"))


def stand_in_command(outs: list[str], deps: list[str]) -> str:
    """A shell command writing the outputs in milliseconds; a folder gets the deps in it, and one file."""
    writes = []
    for out in outs:
        inside = [dep for dep in deps if dep.startswith(f"{out}/")]
        files = [out] if Path(out).suffix else [f"{out}/stand-in", *inside]
        for file in dict.fromkeys(files):
            content = {".json": "{}", ".csv": "value"}.get(Path(file).suffix, file)
            writes += [f"mkdir -p {shlex.quote(os.path.dirname(file) or '.')}",
                       f"echo {shlex.quote(content)} > {shlex.quote(file)}"]
    return " && ".join(writes) or "true"


def with_stand_ins(pipeline: dict, params: dict) -> dict:
    """The pipeline with every command replaced by its stand-in: a foreach stage's still has DVC's ${...}."""
    expanded = expand(pipeline["stages"], params)
    deps = [substitute(dep, context) for _, stage, context in expanded for dep in paths(stage.get("deps"))]
    dep_templates = [dep for stage in pipeline["stages"].values()
                     for dep in paths(stage.get("do", stage).get("deps"))]
    for stage in pipeline["stages"].values():
        if "foreach" in stage:
            stage["do"]["cmd"] = stand_in_command(outputs(stage["do"]), dep_templates)
        else:
            stage["cmd"] = stand_in_command([substitute(out, params) for out in outputs(stage)], deps)
    return pipeline


def clear_outputs(repo: Path, expanded: list[tuple[str, dict, dict]]) -> None:
    """Remove the checkout's committed outputs (and the folders of per-run ones) and dvc.lock."""
    doomed = {"dvc.lock"}
    for _, stage, context in expanded:
        for out in outputs(stage):
            doomed.add(substitute(out, context))
            folder = os.path.dirname(out.split("${")[0])
            if "${" in out and folder:
                doomed.add(folder)
    for name in doomed:
        target = repo / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def lock_lines(lock: Path, size: int) -> dict[str, float]:
    """dvc.lock's lines in all, and per timed stage the lines of its entries divided by the study size."""
    per_stage: dict[str, int] = {}
    stage = None
    lines = lock.read_text().splitlines()
    for line in lines:
        if match := re.fullmatch(r"  ([^ ].*):", line):
            stage = match.group(1).strip("'\"").split("@")[0]
        if stage:
            per_stage[stage] = per_stage.get(stage, 0) + 1
    return {"total": len(lines), **{name: per_stage.get(name, 0) / size for name in TIMED_STAGES}}


def median_seconds(cmd: list[str], cwd: Path, repeats: int) -> float:
    return statistics.median(run(cmd, cwd) for _ in range(repeats))


def prepare(checkout: Path, size: int, profile: str | None, where: Path) -> Clone:
    """Clone the checkout, write the study's params and stand-in outputs, and commit dvc.lock."""
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    run(["git", "clone", "--quiet", "--no-checkout", str(checkout), str(where)], Path.cwd())
    run(["git", "checkout", "--quiet", commit], where)
    params = study_params(yaml.safe_load((where / "params.yaml").read_text()), size, profile)
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stand_in = with_stand_ins(yaml.safe_load((where / "dvc.yaml").read_text()), params)
    expanded = expand(stand_in["stages"], params)
    clear_outputs(where, expanded)
    for _, stage, context in expanded:
        run([SHELL, "-c", substitute(stage["cmd"], context)], where)
    first_items = {address.split("@")[0]: substitute(stage["cmd"], context)
                   for address, stage, context in reversed(expanded)}
    stand_in_seconds = {name: median_seconds([SHELL, "-c", first_items[name]], where, 5) for name in TIMED_STAGES}
    clone = Clone(commit, where, size, yaml.safe_dump(stand_in, sort_keys=False), stand_in_seconds)
    clone.commit_seconds = run(["dvc", "commit", "--force", "--quiet"], where)
    clone.lock_lines = lock_lines(where / "dvc.lock", size)
    return clone


def timed_addresses(clone: Clone, stage: str, repeats: int) -> list[str]:
    names = list(yaml.safe_load((clone.path / "params.yaml").read_text())["runs"])
    return [f"{stage}@{names[i * len(names) // repeats]}" for i in range(repeats)]


def measure(clones: list[Clone], repeats: int) -> None:
    """Time `dvc status`, then one-stage `dvc repro`, interleaving the clones in each repeat."""
    for clone in clones:
        run(["dvc", "status", "--quiet"], clone.path)  # once untimed: a first look fills DVC's state
    for repeat in range(repeats):
        for clone in clones:
            clone.status_seconds.append(run(["dvc", "status", "--quiet"], clone.path))
            print(f"  {clone.commit} N={clone.runs}: dvc status {clone.status_seconds[-1]:.2f} s", flush=True)
    for clone in clones:
        (clone.path / "dvc.yaml").write_text(clone.stand_in_dvc_yaml)
    for stage in TIMED_STAGES:
        for repeat in range(repeats):
            for clone in clones:
                address = timed_addresses(clone, stage, repeats)[repeat]
                wall = run(["dvc", "repro", "--force", "--single-item", "--quiet", address], clone.path)
                clone.stage_seconds.setdefault(stage, []).append(wall - clone.stand_in_seconds[stage])
                print(f"  {clone.commit} N={clone.runs}: dvc repro -s {address} {wall:.2f} s", flush=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(clones: list[Clone]) -> list[str]:
    stages = " | ".join(f"lock lines per {stage} stage" for stage in TIMED_STAGES)
    seconds = " | ".join(f"DVC s per {stage} stage" for stage in TIMED_STAGES)
    rows = [f"| checkout | N | lock lines | {stages} | {seconds} | `dvc status` s | `dvc commit` s (whole lock) |",
            "| --- " + "| ---: " * (4 + 2 * len(TIMED_STAGES)) + "|"]
    for clone in clones:
        lines = " | ".join(f"{clone.lock_lines[stage]:.1f}" for stage in TIMED_STAGES)
        times = " | ".join(spread(clone.stage_seconds[stage]) for stage in TIMED_STAGES)
        rows.append(f"| {clone.commit} | {clone.runs} | {clone.lock_lines['total']} | {lines} | {times} "
                    f"| {spread(clone.status_seconds)} | {clone.commit_seconds:.1f} |")
    return rows


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, action="append", required=True,
                        help="a git checkout whose HEAD to measure; give several to compare them")
    parser.add_argument("--runs", type=int, nargs="+", default=[38, 200], help="study sizes N")
    parser.add_argument("--profile", help="set params.yaml's profile (default: keep the checkout's)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each kind per checkout and size")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown table")
    args = parser.parse_args()
    started, load_before = time.perf_counter(), os.getloadavg()[1]
    dvc_version = subprocess.run(["dvc", "--version"], env=ENV, capture_output=True, text=True,
                                 check=True).stdout.strip()
    measured = []
    for size in args.runs:
        with tempfile.TemporaryDirectory(prefix="dvc-scale-") as tmp:
            clones = []
            for i, checkout in enumerate(args.checkout):
                clones.append(prepare(checkout.resolve(), size, args.profile, Path(tmp) / str(i)))
                clone = clones[-1]
                print(f"{clone.commit} N={size}: dvc.lock {clone.lock_lines['total']} lines, "
                      f"dvc commit {clone.commit_seconds:.1f} s", flush=True)
            measure(clones, args.repeats)
            measured += clones
    minutes = (time.perf_counter() - started) / 60
    rows = table(measured)
    print("\n".join(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join([
        "# DVC's own cost per stage as the study grows",
        "",
        (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; Python {platform.python_version()}; "
         f"DVC {dvc_version}; {args.repeats} timings of each kind per row (median and range); "
         f"{minutes:.0f} min in all; load average (5 min) {load_before:.1f} before, "
         f"{os.getloadavg()[1]:.1f} after."),
        f"`python {shlex.join(sys.argv)}`",
        "",
        *rows,
        "",
        ("N: runs under `runs:`. Lock lines per stage: the lines of the `<stage>@` entries in dvc.lock over N. "
         "DVC s per stage: `dvc repro --force --single-item <stage>@<run>` wall time less its stand-in "
         "command's; `dvc status` on the whole up-to-date pipeline. See the script's docstring."),
        "",
    ]))


if __name__ == "__main__":
    main()
