"""evaluate@<run>: score a run's best model on train, val and test; write its metrics and predictions."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import read_study, resolve_device, run_stage
from cifarlab.evaluation import evaluate_run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", help="a key of runs: in params.yaml")
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="test index/predicted/actual, CSV")
    parser.add_argument("--confusion", type=Path, required=True, help="test actual/predicted/count, CSV")
    parser.add_argument("--weights", type=Path, required=True, help="histogram of conv and linear weights, CSV")
    args = parser.parse_args(argv)
    study = read_study()
    run = study.run(args.run)
    metrics = evaluate_run(args.model, args.split, resolve_device(study.device), metrics_path=args.metrics,
                           predictions_path=args.predictions, confusion_path=args.confusion,
                           weights_path=args.weights)
    print(f"evaluate {run.name}: test accuracy {metrics['test']['accuracy']:.2%}, "
          f"macro-F1 {metrics['test']['macro_f1']:.2%} ({metrics['status']})")


if __name__ == "__main__":
    run_stage(main)
