"""`python benchmarks/gpu_check [options]`: run the check (the package's docstring says what it measures)."""

import sys
from pathlib import Path

if not __package__:
    # Run as a folder, Python puts the folder itself first on sys.path; the package is found from its parent.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from gpu_check.cli import main

sys.exit(main())
