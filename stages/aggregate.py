"""aggregate: per original run, every metric over its replicates (mean, std, count, 95% t interval)."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.analysis.replicates import write_aggregates
from cifarlab.cli import run_stage
from cifarlab.config.records import read_study_settings


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="holds one metrics file per run")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--study", type=Path, required=True, help="the study's settings file, from check-params")
    args = parser.parse_args(argv)
    study = read_study_settings(args.study)
    replicates = study.replicates()
    written = write_aggregates(replicates, {name: run.seed for name, run in study.runs.items()}, args.metrics,
                               args.out_dir)
    replicated = sum(len(names) > 1 for names in replicates.values())
    print(f"aggregate: {len(written)} runs ({replicated} with replicates) -> {args.out_dir}")


if __name__ == "__main__":
    run_stage(main)
