"""Results bundles: a study's finished runs as committed evidence, and the report regenerated from them.

    python -m cifarlab.tools.results collect CHECKOUT --study NAME --out docs/results/<profile>-<NAME>
                                             [--times TIMES.tsv] [--machine MACHINE.txt] [--logs DIR]
    python -m cifarlab.tools.results report BUNDLE [--claims claims.yaml]
    python -m cifarlab.tools.results page docs/results [--claims claims.yaml] [--readme README.md]

`collect` takes study NAME's runs from a checkout whose pipeline trained them (`dvc repro` there): its
params.yaml, each run's settings file, curves (its DVCLive folder) and model, which it scores again with
this checkout's evaluation code (the same checkpoint gives the same scores; the answers file gains what newer code
writes, such as per-image validation answers), refusing a run whose test accuracy differs from what the
checkout's evaluate stage recorded. It writes the provenance (the commit the runs trained at, the commit
that scored them, the machine, each run's wall-clock start and end, and the epochs a stopped run resumed
after, read from its train stage's log, `DIR/<run>.log`, which the bundle keeps), then the report.

`report` regenerates a bundle's report from the bundle alone, without training: its aggregates, feature
quantile figures and `report/` with the Findings, by the report stage's own code. Run twice, it writes
the same bytes.

`page` writes `docs/results/README.md`, every claim's verdict over every bundle, and the headline block of
the README (between its `results:begin` and `results:end` markers): what each study found.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from cifarlab.analysis.evaluation import evaluate_run
from cifarlab.analysis.replicates import write_aggregates
from cifarlab.config.claims import CLAIMS_FILE, read_claims, read_left_out
from cifarlab.config.records import read_study_settings
from cifarlab.config.sections import Study
from cifarlab.errors import CifarlabError
from cifarlab.io import write_json, write_text
from cifarlab.report.document import write_report
from cifarlab.report.findings import (
    CONTRADICTED,
    NOT_SHOWN,
    REPRODUCED,
    Finding,
    holm,
    judge,
)
from cifarlab.report.inputs import read_inputs
from cifarlab.report.plots import write_quantile_figures
from cifarlab.report.tables import markdown

STUDY_FILE, PROVENANCE_FILE = "study.json", "provenance.json"


def _study_record(checkout: Path, study: str) -> dict[str, Any]:
    """The checkout's study settings with only study `study`'s runs (and their replicates)."""
    path = checkout / "data" / "study.json"
    if not path.is_file():
        raise CifarlabError(f"{path}: missing; expected a checkout whose pipeline trained the study (dvc repro there)")
    record = json.loads(path.read_text())
    runs = {name: run for name, run in record["runs"].items() if run["study"] == study}
    if not runs:
        raise CifarlabError(f"{checkout / 'data' / 'study.json'}: no run of study {study!r}")
    return {**record, "runs": runs}


def _git(checkout: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def run_times(path: Path | None, runs: list[str]) -> dict[str, dict[str, Any]]:
    """Each run's wall clock from a `run<TAB>start<TAB>end<TAB>outcome<TAB>slot` log (seconds since the
    epoch) of whatever spread the runs: from the start of its first attempt to the end of its first `ok`,
    with every attempt in between (a stopped run that resumed). Lines after that `ok` are reruns that
    found the run done and skipped it, so they are not its time."""
    if path is None:
        return {}
    attempts: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or fields[0] not in runs:
            continue
        so_far = attempts.setdefault(fields[0], [])
        if not any(attempt["outcome"] == "ok" for attempt in so_far):
            so_far.append({"start": int(fields[1]), "end": int(fields[2]), "outcome": fields[3], "slot": fields[4]})
    return {run: {"start": tried[0]["start"], "end": tried[-1]["end"], "outcome": tried[-1]["outcome"],
                  "slot": tried[-1]["slot"], "attempts": len(tried)}
            for run, tried in attempts.items()}


def resumed_after(log: str, run: str) -> list[int]:
    """The epochs after which `run` resumed, from its train stage's output ("<run>: resuming after epoch
    N/M from ..."), one per stop that left a saved state behind."""
    return [int(epoch) for epoch in re.findall(rf"^{re.escape(run)}: resuming after epoch (\d+)/", log, re.M)]


def collect(checkout: Path, study_name: str, out: Path, times: Path | None, machine: Path | None,
            logs: Path | None = None) -> None:
    for given, option in ((times, "--times"), (machine, "--machine")):
        if given is not None and not given.is_file():
            raise CifarlabError(f"{option} {given}: no such file")
    if logs is not None and not logs.is_dir():
        raise CifarlabError(f"--logs {logs}: no such folder (one <run>.log per run)")
    record = _study_record(checkout, study_name)
    if out.exists():
        raise CifarlabError(f"{out}: exists; a retrain is a new bundle, so choose another name or remove it")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent if out.parent.exists() else None))
    try:
        write_json(staging / STUDY_FILE, record)
        shutil.copyfile(checkout / "params.yaml", staging / "params.yaml")  # what reruns the study (the page says how)
        for run in record["runs"]:
            shutil.copyfile(checkout / "data" / "runs" / f"{run}.json", _part(staging, "settings", run, ".json"))
            # copyfile: the bundle's files take this user's mode, not the checkout's
            shutil.copytree(checkout / "plots" / "live" / run, staging / "live" / run, copy_function=shutil.copyfile)
            metrics = evaluate_run(checkout / "models" / f"{run}.pt", checkout / "data" / "split", torch.device("cpu"),
                                   metrics_path=_part(staging, "metrics", run, ".json"),
                                   predictions_path=_part(staging, "predictions", run, ".csv"),
                                   confusion_path=_part(staging, "confusion", run, ".csv"),
                                   weights_path=_part(staging, "weights", run, ".csv"))
            if logs is not None and (logs / f"{run}.log").is_file():
                shutil.copyfile(logs / f"{run}.log", _part(staging, "logs", run, ".log"))
            recorded = json.loads((checkout / "metrics" / f"{run}.json").read_text())
            if recorded["test"]["accuracy"] != metrics["test"]["accuracy"]:
                raise CifarlabError(f"{run}: scored {metrics['test']['accuracy']} on test here against "
                                    f"{recorded['test']['accuracy']} by the checkout's evaluate stage")
        runs = list(record["runs"])
        write_json(staging / PROVENANCE_FILE, {
            "study": study_name, "profile": record["profile"], "runs": len(runs),
            "trained_at": {"commit": _git(checkout, "rev-parse", "HEAD^"),
                           "params_commit": _git(checkout, "rev-parse", "HEAD"),
                           "note": "the checkout's HEAD holds its params.yaml (the study's runs and replicates) "
                                   "on top of the project's commit HEAD^"},
            "scored_at": {"commit": _git(Path.cwd(), "rev-parse", "HEAD")},
            "machine": (machine.read_text().strip().splitlines() if machine else [platform.processor()]),
            "python": platform.python_version(), "torch": torch.__version__,
            "wall_clock": run_times(times, runs),
            "resumed_after_epochs": {run: epochs for run in runs if (log := staging / "logs" / f"{run}.log").is_file()
                                     and (epochs := resumed_after(log.read_text(), run))}})
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(out, CLAIMS_FILE)


def _part(bundle: Path, part: str, run: str, suffix: str) -> Path:
    path = bundle / part / f"{run}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_bundle_study(bundle: Path) -> Study:
    if not (bundle / STUDY_FILE).is_file():
        raise CifarlabError(f"{bundle}: not a results bundle (no {STUDY_FILE}); `collect` makes one")
    return read_study_settings(bundle / STUDY_FILE)


def report(bundle: Path, claims_path: Path) -> Path:
    """The bundle's aggregates and report, from the bundle alone."""
    study = read_bundle_study(bundle)
    shutil.rmtree(bundle / "aggregates", ignore_errors=True)
    write_aggregates(study.replicates(), {name: run.seed for name, run in study.runs.items()}, bundle / "metrics",
                     bundle / "aggregates")
    with tempfile.TemporaryDirectory() as quantiles:
        write_quantile_figures(study.runs_by_study(), bundle / "live", Path(quantiles))
        shutil.rmtree(bundle / "report", ignore_errors=True)
        return write_report(study, read_claims(claims_path, study), metrics_dir=bundle / "metrics",
                            aggregates_dir=bundle / "aggregates", live_root=bundle / "live",
                            quantile_dir=Path(quantiles), weights_dir=bundle / "weights",
                            confusion_dir=bundle / "confusion", predictions_dir=bundle / "predictions",
                            out_dir=bundle / "report")


def bundles(results: Path) -> list[Path]:
    """The bundles under `results`, in the order the studies are introduced (TITLES), then by name."""
    found = [path.parent for path in results.glob(f"*/{STUDY_FILE}")]
    order = list(TITLES)
    return sorted(found, key=lambda b: (order.index(s) if (s := _study(b)) in order else len(order), b.name))


def page(results: Path, claims_path: Path, readme: Path | None) -> None:
    found = bundles(results)
    if not found:
        raise CifarlabError(f"{results}: no bundle (a folder with {STUDY_FILE})")
    judged = judge_bundles(found, claims_path)
    write_text(results / "README.md", "\n".join(results_page(judged, claims_path, results)))
    if readme is not None:
        text = readme.read_text()
        begin, end = "<!-- results:begin -->", "<!-- results:end -->"
        if begin not in text or end not in text:
            raise CifarlabError(f"{readme}: no {begin} ... {end} block to write the headline into")
        head, rest = text.split(begin, 1)
        block = "\n".join(headline_lines(judged, readme.parent))
        write_text(readme, f"{head}{begin}\n{block}\n{end}{rest.split(end, 1)[1]}")


TITLES = {"norm": "Normalization and batch size (COL775 A1)", "lab": "The lab pipeline (ECE 661 HW2 Labs 1-2)",
          "lab3": "ResNet-20 against SimpleNN (HW2 Lab 3 (a))", "resnet20": "ResNet-20 past 90% (HW2 Lab 3 (b))",
          "arch": "ResNet vs plain vs VGG-11", "vggnorm": "VGG-11 without a norm, with BN, with GN"}


def bundle_findings(bundle: Path, claims_path: Path) -> list[Finding]:
    """A bundle's claims judged on its runs, before any family's correction."""
    study = read_study_settings(bundle / "study.json")
    inputs = read_inputs(list(study.runs), metrics_dir=bundle / "metrics", aggregates_dir=bundle / "aggregates",
                         live_root=bundle / "live", predictions_dir=bundle / "predictions")
    return [judge(claim, inputs, study) for claim in read_claims(claims_path, study)]


Judged = list[tuple[Path, Finding]]  # (bundle, finding) in the order of the bundles, then of claims.yaml


def judge_bundles(bundles: list[Path], claims_path: Path) -> Judged:
    """Every bundle's findings, one family: Holm over every claim with a test on the page."""
    pairs = [(bundle, finding) for bundle in bundles for finding in bundle_findings(bundle, claims_path)]
    adjusted = holm([finding for _, finding in pairs])
    return [(bundle, finding) for (bundle, _), finding in zip(pairs, adjusted)]


def _study(bundle: Path) -> str:
    """The bundle's study (a bundle holds one)."""
    return next(iter(read_study_settings(bundle / "study.json").runs_by_study()))


def results_page(pairs: Judged, claims_path: Path, results: Path) -> list[str]:
    bundles = list(dict.fromkeys(bundle for bundle, _ in pairs))
    family = sum(1 for _, f in pairs if f.decision is not None)
    rows = [{"claim": f"`{f.claim.name}`: {f.claim.says}", "source": f.claim.source,
             "study": f"[{_study(bundle)}]({bundle.relative_to(results)}/report/report.md)",
             "measured": f.measured, "p": f.row()["p"], "p (Holm, this page)": f.row()["p (Holm)"],
             "verdict": f.verdict + (f": {f.why}" if f.why else "")} for bundle, f in pairs]
    left = read_left_out(claims_path)
    return ["# What the studies find", "",
            "Every claim of `claims.yaml` against the committed results bundles (one folder per study: every run's "
            "settings, metrics, per-image answers and curves, with the report regenerated from them by "
            "`python -m cifarlab.tools.results report <bundle>`). This page is written by "
            "`python -m cifarlab.tools.results page docs/results --readme README.md`; no number here is typed in. "
            f"The {family} claims with a test on this page are one family under Holm's correction, so a verdict "
            "here can be stricter than in its study's own report, where the family is that study's claims.", "",
            ("How the runs were made: in a clone of the project at the commit each bundle's `provenance.json` names, "
             "whose params.yaml holds the study's runs under profile `subset` on the CIFAR-10 subset, each with "
             "replicates 1 and 2 (seeds 1 and 2; `resnet20` one seed), trained two at a time with one torch thread "
             "each (the layout [measured](../performance.md#spreading-runs-over-a-few-cores) fastest on two cores), "
             "one `dvc repro --single-item train@<run> evaluate@<run>` per run, so that a stopped run resumed "
             "from its last epoch and DVC skipped what was done; `collect` then took each study as it finished."), "",
            ("To train a bundle's study again: check out the commit its `provenance.json` names under `trained_at`, "
             "replace `params.yaml` with the bundle's own, put the archive where its `data: source:` says, and run "
             "`dvc repro` (or `python -m cifarlab.tools.sweep --study <study> --slots 2`, with the `[ray]` extra, "
             "for two runs at a time); `python -m cifarlab.tools.results collect . --study <study> --out <a new "
             "folder>` then makes a bundle of those runs, to set beside this one."), "",
            markdown(rows), "",
            "## What the runs cost, and what the full data would", "",
            (f"Measured on {json.loads((bundles[0] / 'provenance.json').read_text())['machine'][0]}, beside other "
             "work on the same cores, so these times are upper bounds; the projection scales each run's measured "
             "epochs to the full CIFAR-10 (40,000 training and 10,000 validation images per epoch)."), "",
            markdown(cost_rows(bundles, _gpu_rates(results))), "",
            *(["## Left out", "", *[f"- `{c.name}` ({c.source}): {c.says}. Why: {c.why}" for c in left], ""]
              if left else [])]


FULL_TRAIN_IMAGES = 40_000  # the official 50,000 training images less the 20% validation split


def cost_rows(bundles: list[Path], gpu_rates: str) -> list[dict[str, str]]:
    """Per bundle: what its runs cost here, and the same protocol projected onto the full CIFAR-10 from
    those measured rates (a run's epochs, evaluation included, scale with its images: 40,000 training and
    10,000 validation images against the bundle's). Two at a time, the runs take half their sum, or the
    longest run where that is longer (a run is not split between slots)."""
    rows = []
    for bundle in bundles:
        provenance = json.loads((bundle / "provenance.json").read_text())
        study = read_bundle_study(bundle)
        seconds, projected = 0.0, []
        for run in study.runs:
            trained = json.loads((bundle / "live" / run / "metrics.json").read_text())["train_time_s"]
            images = json.loads((bundle / "live" / run / "run.json").read_text())["data"]["train_images"]
            seconds += trained
            projected.append(trained * FULL_TRAIN_IMAGES / images)
        clock = provenance.get("wall_clock", {}).values()
        span = (max(t["end"] for t in clock) - min(t["start"] for t in clock)) / 3600 if clock else math.nan
        two_slots = max(sum(projected) / 2, max(projected))
        rows.append({"bundle": f"`{bundle.name}`", "trainings": str(len(study.runs)),
                     "trained at": provenance["trained_at"]["commit"][:7],
                     "training time (sum over runs)": f"{seconds / 3600:.1f} h",
                     "wall clock, first start to last end": f"{span:.1f} h",
                     "full CIFAR-10 here, two runs at a time": f"{two_slots / 3600:.0f} h",
                     "full CIFAR-10, one GPU": gpu_rates})
    return rows


def _gpu_rates(results: Path) -> str:
    """Whether any GPU has been measured by the GPU check (benchmarks/results/gpu-*)."""
    measured = sorted((results.parent.parent / "benchmarks" / "results").glob("gpu-*"))
    return f"see {', '.join(p.name for p in measured)}" if measured else "unmeasured (no GPU has run the GPU check)"


def headline_lines(pairs: Judged, root: Path) -> list[str]:
    """One line per study: its verdicts on the page's family, with a link to its report."""
    lines = []
    for bundle in dict.fromkeys(bundle for bundle, _ in pairs):
        found = [f for b, f in pairs if b == bundle]
        verdicts = dict.fromkeys([REPRODUCED, CONTRADICTED, *(f.verdict for f in found), NOT_SHOWN])
        said = [f"{verdict.strip('*')}: {', '.join(f'`{f.claim.name}`' for f in found if f.verdict == verdict)}"
                for verdict in verdicts if any(f.verdict == verdict for f in found)]
        study = _study(bundle)
        lines.append(f"- **{TITLES.get(study, study)}** ([report]({bundle.relative_to(root)}/report/report.md)): "
                     + ("; ".join(said) if said else "no claim"))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.tools.results", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    take = commands.add_parser("collect", help="a study's runs from a checkout that trained them, as a bundle")
    take.add_argument("checkout", type=Path)
    take.add_argument("--study", required=True)
    take.add_argument("--out", type=Path, required=True)
    take.add_argument("--times", type=Path, help="run<TAB>start<TAB>end<TAB>outcome<TAB>slot per line")
    take.add_argument("--machine", type=Path, help="a text file describing the machine the runs trained on")
    take.add_argument("--logs", type=Path, help="a folder of the runs' train logs, <run>.log, kept in the bundle")
    again = commands.add_parser("report", help="regenerate a bundle's report from the bundle alone")
    again.add_argument("bundle", type=Path)
    again.add_argument("--claims", type=Path, default=CLAIMS_FILE)
    listing = commands.add_parser("page", help="every bundle's claims on one page, and the README's headline")
    listing.add_argument("results", type=Path)
    listing.add_argument("--claims", type=Path, default=CLAIMS_FILE)
    listing.add_argument("--readme", type=Path)
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.checkout, args.study, args.out, args.times, args.machine, args.logs)
    elif args.command == "report":
        print(f"report: {report(args.bundle, args.claims)}")
    else:
        page(args.results, args.claims, args.readme)


if __name__ == "__main__":
    from cifarlab.cli import run_stage

    run_stage(main)
