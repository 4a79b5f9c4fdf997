"""One GPU check: in minutes of one GPU, the figures that the project's performance goals need, then the
CUDA tests, written to one results file.

    python benchmarks/gpu_check --archive SUBSET [--out FILE|DIR] [--logs FILE] [--commit-file FILE]
                                [--parts LIST] [--budget S] [--box PART=S]
    python benchmarks/gpu_check --rehearsal [--archive SUBSET] [--out FILE]

The parts, in this order (the goals' figures first), each in its own time box, all within --budget seconds
(480 by default, the grace periods of stopped processes included):
  preflight     the step the batch-8 goals compile, compiled once in bf16: graphs, graph breaks and
                CUDA-graph skips
  throughput    ResNet-14 training images/s for bn, torch_bn and gn, batch 8 eager then compiled, then batch
                128 likewise, along the paths of benchmarks/throughput.py
  train         one full-length run of bn-8 (compiled) and one of bn-128 through the train stage on SUBSET
  runs-per-gpu  K = 8, 4, 2, 1 train processes at once on the GPU: the sum of their steady-state images/s
  rates         path (a), eager, for every other network and batch size among params.yaml's runs
  tests         `python -m pytest -m gpu -q`, with what is left of the budget
  projection    the full default study's time on this GPU, from like-for-like rates
A part that fails, or that DVCLive or pytest is missing for, is recorded as such and the check goes on. The
results file is rewritten, atomically, after every measurement: a check stopped early (Ctrl-C, SIGTERM, a
scheduler's time limit) leaves what it measured. --rehearsal runs the same code, in the same order, on the
CPU with tiny sizes and stand-ins for inductor, one of which outlives its time box inside the compile.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The checkout's own library, as the stages import it (an offline GPU node has no install of cifarlab), and
# benchmarks/throughput.py, whose measuring functions the check shares.
for _path in (ROOT / "src", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
