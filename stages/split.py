"""split: read the archive and write the seeded train/validation split and the untouched test set."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.params import data_settings, read_params, require_key
from cifarlab.data.archive import read_archive
from cifarlab.data.split import make_split, save_split


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("archive", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    params = read_params()
    seed, data = require_key(params, "seed", int), data_settings(params)
    split = make_split(read_archive(args.archive), data.val_fraction, seed)
    meta = save_split(split, args.out_dir, seed=seed, val_fraction=data.val_fraction)
    print(f"split: {meta['sizes']} -> {args.out_dir} (sha256 {meta['content_sha256'][:12]})")


if __name__ == "__main__":
    run_stage(main)
