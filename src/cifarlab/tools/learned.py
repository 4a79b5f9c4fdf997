"""Did every run learn? Each run's test accuracy against the test set's majority-class rate, two-sided.

    python -m cifarlab.tools.learned --study data/study.json --claims claims.yaml --metrics metrics

prints each run's margin above the majority-class rate with the exact 95% interval of its accuracy, and
exits 1 when a run that no claim expects to fail (`expect: at-chance`) is not above it: a pipeline that
stopped learning shows here, on the quick profile, before anyone reads a report. Exit 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifarlab.analysis.stats import accuracy_interval
from cifarlab.cli import run_stage
from cifarlab.config.claims import read_claims
from cifarlab.config.records import read_study_settings
from cifarlab.io import require_input


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, required=True, help="the study's settings file, from check-params")
    parser.add_argument("--claims", type=Path, required=True, help="claims.yaml: its at-chance claims may fail")
    parser.add_argument("--metrics", type=Path, required=True, help="the evaluate stage's metrics folder")
    args = parser.parse_args(argv)
    study = read_study_settings(args.study)
    expected_to_fail = {claim.a for claim in read_claims(args.claims, study) if claim.expect == "at-chance"}
    failed = []
    print(f"{'run':24s} {'test accuracy [95%]':>26s} {'majority':>9s} {'margin':>8s}  outcome")
    for name, run in study.runs.items():
        test = json.loads(require_input(args.metrics / f"{name}.json", f"the evaluate stage for {name}")
                          .read_text())["test"]
        low, high = accuracy_interval(test["accuracy"], test["images"])
        rate = test["majority_rate"]
        learned = low > rate
        exempt = run.original in expected_to_fail
        verdict = "learned" if learned else ("not above chance (a claim expects it)" if exempt else "NOT LEARNED")
        if not learned and not exempt:
            failed.append(name)
        print(f"{name:24s} {100 * test['accuracy']:7.2f}% [{100 * low:6.2f}, {100 * high:6.2f}] "
              f"{100 * rate:8.2f}% {100 * (test['accuracy'] - rate):+7.2f}  {verdict}")
    if failed:
        print(f"learned: {len(failed)} of {len(study.runs)} runs not above chance: {', '.join(failed)}")
        raise SystemExit(1)
    print(f"learned: every run above chance but those a claim expects to fail ({len(study.runs)} runs)")


if __name__ == "__main__":
    run_stage(main)
