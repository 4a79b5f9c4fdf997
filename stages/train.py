"""train@<run>: train one run (resuming if its checkpoint is there) and save its best model."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.records import read_run_settings
from cifarlab.train.device import (
    check_compile_toolchain,
    configure_torch,
    resolve_device,
)
from cifarlab.train.stage import train_and_save


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", type=Path, help="the run's settings file, written by check-params")
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the best model, written at the end")
    parser.add_argument("--live", type=Path, required=True, help="the run's DVCLive directory")
    parser.add_argument("--checkpoint", type=Path, required=True, help="resume state, kept across runs")
    args = parser.parse_args(argv)
    run, device_setting = read_run_settings(args.settings)
    device = resolve_device(device_setting)
    check_compile_toolchain(run.performance, device)
    configure_torch(run.performance)
    train_and_save(run, args.split, device, model_path=args.model, live_dir=args.live, resume_path=args.checkpoint)


if __name__ == "__main__":
    run_stage(main)
