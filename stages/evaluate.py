"""evaluate@<run>: score a run's best model on train, val and test; write its metrics and predictions."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.analysis.evaluation import evaluate_run
from cifarlab.cli import run_stage
from cifarlab.config.records import read_run_settings
from cifarlab.train.device import resolve_device


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", type=Path, help="the run's settings file, written by check-params")
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="test index/predicted/actual, CSV")
    parser.add_argument("--confusion", type=Path, required=True, help="test actual/predicted/count, CSV")
    parser.add_argument("--weights", type=Path, required=True, help="histogram of conv and linear weights, CSV")
    args = parser.parse_args(argv)
    run, device_setting = read_run_settings(args.settings)
    metrics = evaluate_run(args.model, args.split, resolve_device(device_setting), metrics_path=args.metrics,
                           predictions_path=args.predictions, confusion_path=args.confusion,
                           weights_path=args.weights)
    print(f"evaluate {run.name}: test accuracy {metrics['test']['accuracy']:.2%}, "
          f"macro-F1 {metrics['test']['macro_f1']:.2%} ({metrics['status']})")


if __name__ == "__main__":
    run_stage(main)
