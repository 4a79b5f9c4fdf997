"""check-params: check the whole of params.yaml, and the device it asks for, before any other stage runs.

DVC deletes a stage's outputs before running its command, so a typo that a train stage found itself
would cost that run's uncached curves. Every train stage depends on this stage's output, which only
says that the checks passed and so never changes: a valid edit reruns no run on its account.
"""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import check_compile_toolchain, read_study, resolve_device, run_stage
from cifarlab.io import write_text


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="written once every check has passed")
    args = parser.parse_args(argv)
    study = read_study()
    device = resolve_device(study.device)
    for run in study.runs.values():
        check_compile_toolchain(run.performance, device)
    write_text(args.out, "params.yaml passed the checks that every stage makes\n")
    print(f"check-params: {len(study.runs)} runs in {len(study.runs_by_study())} studies, profile "
          f"{study.profile}, device {device}: valid")


if __name__ == "__main__":
    run_stage(main)
