"""Import this first: it makes a stage run the cifarlab library of the checkout the stage belongs to.

An environment's install of cifarlab (editable or not) points at one checkout, but DVC hashes the
`src/` of the checkout it runs in: a second clone sharing the environment, or an experiment that
`dvc exp run --temp` or `--queue` runs in a temporary copy, would otherwise record one version of the
code in dvc.lock and run another.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
