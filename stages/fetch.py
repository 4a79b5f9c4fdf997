"""fetch: download (and verify) or copy the CIFAR-10 archive named by `data.source`."""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (before any cifarlab import)

from cifarlab.cli import run_stage
from cifarlab.config.params import data_settings, read_params
from cifarlab.data.fetch import fetch_archive
from cifarlab.io import write_json


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path, help="where the archive and its source.json go")
    args = parser.parse_args(argv)
    data = data_settings(read_params())
    info = fetch_archive(data.source, args.out_dir / "cifar-10-python.tar.gz", data.md5)
    write_json(args.out_dir / "source.json", info)
    print(f"fetch: {info['source']} -> {args.out_dir} ({info['bytes'] / 1e6:.1f} MB, md5 {info['md5']}"
          f"{', verified' if info['checksum_verified'] else ''})")


if __name__ == "__main__":
    run_stage(main)
