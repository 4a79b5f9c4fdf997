"""benchmarks/slots.py: a run that fails stops the measurement with its layout and its error, instead of
leaving the parent waiting for a rate."""

from __future__ import annotations

import sys

import pytest
from checkout import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import slots  # the line above finds it


def test_a_failing_run_stops_the_measurement_with_its_layout_and_error():
    with pytest.raises(RuntimeError, match=r"^2x1 at batch 8: .*no_such_norm"):
        slots.machine_rate(2, 1, 8, "no_such_norm", seconds=0.1)

