"""quantile-plots: one figure per run of its penultimate-feature quantiles, and all runs side by side."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.records import read_study_settings
from cifarlab.report.plots import write_quantile_figures


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live-root", type=Path, required=True, help="holds one DVCLive directory per run")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--study", type=Path, required=True, help="the study's settings file, from check-params")
    args = parser.parse_args(argv)
    study = read_study_settings(args.study)
    written = write_quantile_figures(study.runs_by_study(), args.live_root, args.out_dir)
    print(f"quantile-plots: {len(written)} figures -> {args.out_dir}")


if __name__ == "__main__":
    run_stage(main)
