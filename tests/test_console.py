"""cifarlab.train.console: the progress line within an epoch, and the line a run starts with."""

from __future__ import annotations

import io

import torch

from cifarlab.study.resolve import load_study
from cifarlab.train import console
from cifarlab.train.console import show_progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_within_an_epoch_rewrites_one_terminal_line_and_clears_it_at_the_end():
    stream = FakeTerminal()
    batches = list(show_progress(iter("abc"), total=3, label="bn-8 epoch 2/5", stream=stream, every_s=0.0))
    assert batches == ["a", "b", "c"]
    shown = stream.getvalue().split("\r")
    assert [part.split(",")[0] for part in shown[1:4]] == [f"bn-8 epoch 2/5: step {k}/3" for k in (1, 2, 3)]
    assert shown[-1] == "\033[K"  # the last write clears the line for the epoch's summary
    assert "\n" not in stream.getvalue()


def test_progress_writes_nothing_when_output_is_not_a_terminal():
    stream = io.StringIO()  # a log file or a pipe
    assert list(show_progress(iter(range(5)), total=5, label="x", stream=stream, every_s=0.0)) == list(range(5))
    assert stream.getvalue() == ""


def test_the_start_line_names_a_replicate_its_original_and_its_seed(study_params):
    study = load_study(study_params)  # the full profile: a ResNet-14 for 100 epochs
    line = console.start_line(study.runs["gn-8-r1"], torch.device("cpu"), 40000, 10000, 5000)
    assert line.startswith("gn-8-r1 (replicate 1 of gn-8): ResNet-14")
    assert "5000 steps of 8 per epoch, 100 epochs, seed 1 |" in line
    assert "seed 0 |" in console.start_line(study.runs["gn-8"], torch.device("cpu"), 40000, 10000, 5000)
