"""check-params: check the whole of params.yaml, and the device it asks for, then write each run's settings
file and the study's, which every later stage reads instead of params.yaml.

DVC deletes a stage's outputs before running its command, so a typo that a train stage found itself
would cost that run's uncached curves: here it stops the pipeline before any run starts. A run's settings
file keeps its bytes unless the run's settings or its training code change, so a valid edit elsewhere
retrains nothing.
"""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.claims import read_claims
from cifarlab.study.publish import write_settings
from cifarlab.study.resolve import read_study
from cifarlab.train.device import (
    check_compile_toolchain,
    check_cublas_workspace,
    resolve_device,
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, required=True, help="where each run's settings file goes")
    parser.add_argument("--claims", type=Path, required=True, help="the claims the report tests, checked here")
    parser.add_argument("study", type=Path, help="the study's settings file")
    args = parser.parse_args(argv)
    study = read_study()
    device = resolve_device(study.device)
    for run in study.runs.values():
        check_compile_toolchain(run.performance, device)
        check_cublas_workspace(run.performance)
    claims = read_claims(args.claims, study)
    # The training code hashed is this script's checkout's: the one the train stages will run (_checkout).
    write_settings(study, args.runs, args.study, root=Path(__file__).resolve().parents[1])
    print(f"check-params: {len(study.runs)} runs in {len(study.runs_by_study())} studies, {len(claims)} claims, "
          f"profile {study.profile}, device {device}: valid -> {args.study}, {args.runs}/<run>.json")


if __name__ == "__main__":
    run_stage(main)
