"""curves: per study, one long table per curve of every run (run, epoch, value: the mean over its
replicates; low, high: one standard deviation either side), for `dvc plots`."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.records import read_study_settings
from cifarlab.report.plots import write_curve_tables


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live-root", type=Path, required=True, help="holds one DVCLive directory per run")
    parser.add_argument("--by-time", type=Path, required=True, help="where the loss-by-seconds tables go")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--study", type=Path, required=True, help="the study's settings file, from check-params")
    args = parser.parse_args(argv)
    by_study = read_study_settings(args.study).replicates_by_study()
    written = write_curve_tables(by_study, args.live_root, args.out_dir, args.by_time)
    print(f"curves: {len(written)} tables for {len(by_study)} studies -> {args.out_dir}, {args.by_time}")


if __name__ == "__main__":
    run_stage(main)
