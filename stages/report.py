"""report: the study's Markdown report with its figures, built from the metrics and histories."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.claims import read_claims
from cifarlab.config.records import read_study_settings
from cifarlab.report.document import write_report


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--aggregates", type=Path, required=True, help="the aggregate stage's output")
    parser.add_argument("--live-root", type=Path, required=True)
    parser.add_argument("--quantiles", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="the evaluate stage's weight histograms")
    parser.add_argument("--confusion", type=Path, required=True, help="the evaluate stage's confusion matrices")
    parser.add_argument("--predictions", type=Path, required=True, help="the evaluate stage's per-image answers")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--study", type=Path, required=True, help="the study's settings file, from check-params")
    parser.add_argument("--claims", type=Path, required=True, help="the claims the Findings table tests")
    args = parser.parse_args(argv)
    study = read_study_settings(args.study)
    path = write_report(study, read_claims(args.claims, study), metrics_dir=args.metrics, aggregates_dir=args.aggregates,
                        live_root=args.live_root, quantile_dir=args.quantiles, weights_dir=args.weights,
                        confusion_dir=args.confusion, predictions_dir=args.predictions, out_dir=args.out_dir)
    print(f"report: {path}")


if __name__ == "__main__":
    run_stage(main)
