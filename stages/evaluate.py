"""evaluate@<run>: score a run's best model on train, val and test; write its metrics and predictions."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.analysis.evaluation import evaluate_run
from cifarlab.cli import run_stage
from cifarlab.config.records import read_run_settings
from cifarlab.io import write_json
from cifarlab.train.device import resolve_device

# The scores `dvc metrics show` lists, one short row per training, under the metrics file's own names.
HEADLINE = {"test": ("accuracy", "macro_f1"), "val": ("accuracy",)}


def headline(metrics: dict) -> dict:
    """The few scores of `metrics` named by `HEADLINE`, nested as they are there."""
    return {split: {name: metrics[split][name] for name in names} for split, names in HEADLINE.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", type=Path, help="the run's settings file, written by check-params")
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="every score, JSON")
    parser.add_argument("--headline", type=Path, required=True, help="the few scores dvc metrics show lists, JSON")
    parser.add_argument("--predictions", type=Path, required=True,
                        help="each val and test image: split,index,predicted,actual, CSV")
    parser.add_argument("--confusion", type=Path, required=True, help="test actual/predicted/count, CSV")
    parser.add_argument("--weights", type=Path, required=True, help="histogram of conv and linear weights, CSV")
    args = parser.parse_args(argv)
    run, device_setting = read_run_settings(args.settings)
    metrics = evaluate_run(args.model, args.split, resolve_device(device_setting), metrics_path=args.metrics,
                           predictions_path=args.predictions, confusion_path=args.confusion,
                           weights_path=args.weights)
    write_json(args.headline, headline(metrics))
    print(f"evaluate {run.name}: test accuracy {metrics['test']['accuracy']:.2%}, "
          f"macro-F1 {metrics['test']['macro_f1']:.2%} ({metrics['status']})")


if __name__ == "__main__":
    run_stage(main)
