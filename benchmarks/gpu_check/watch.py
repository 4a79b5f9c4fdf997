"""When each running train stage's epochs end, seen from outside by polling its DVCLive files, and the
steady-state rate of runs that overlap: what K runs at once achieve once start-ups and first epochs
(compilation, warm-up) are behind them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gpu_check.children import POLL_S
from gpu_check.project import epochs_logged, live_column


@dataclass(frozen=True)
class Epoch:
    end: float  # time.monotonic() when the check saw it logged, at most a poll late
    seconds: float  # its training and validation, as the stage timed them


class EpochWatch:
    """Polled by `run_together` with which runs still run: records when each run logs an epoch, and says
    to stop once every run has `enough` epochs inside the window where all of them are past their first
    (None: never)."""

    def __init__(self, live_dirs: list[Path], enough: int | None = None) -> None:
        self.live_dirs, self.enough = live_dirs, enough
        self.ends: list[list[float]] = [[] for _ in live_dirs]
        self.exits: list[float | None] = [None] * len(live_dirs)
        self.stopped_at: float | None = None

    def __call__(self, running: list[bool]) -> bool:
        now = time.monotonic()
        for index, (live, ends) in enumerate(zip(self.live_dirs, self.ends)):
            ends.extend([now] * (epochs_logged(live) - len(ends)))
            if not running[index] and self.exits[index] is None:
                self.exits[index] = now
        if self.enough is not None and self.steady_enough():
            self.stopped_at = now
            return True
        return False

    def steady_enough(self) -> bool:
        if not all(self.ends):
            return False
        start = max(ends[0] for ends in self.ends)
        # The epoch under way when the last run's first one ended does not count: one more than `enough`.
        return all(sum(end > start for end in ends) > self.enough for ends in self.ends)

    def epochs(self, index: int) -> list[Epoch]:
        live = self.live_dirs[index]
        seconds = [a + b for a, b in zip(live_column(live, "epoch_time_s"), live_column(live, "eval_time_s"))]
        return [Epoch(end, s) for end, s in zip(self.ends[index], seconds)]

    def until(self) -> float:
        """When the runs stopped overlapping: the first one's exit, or the stop."""
        times = [t for t in [*self.exits, self.stopped_at] if t is not None]
        return min(times) if times else time.monotonic()


def steady_rate(runs: list[list[Epoch]], images: int, until: float) -> tuple[float | None, int]:
    """The sum over `runs` of each one's images/s (`images` per epoch, over its epochs' seconds), counting
    only its epochs after the first that lie inside the window where every run is past its first epoch and
    none has stopped (up to `until`); and how many epochs that counted. None where a run has none there."""
    if not runs or not all(runs):
        return None, 0
    start = max(epochs[0].end for epochs in runs)
    total, counted = 0.0, 0
    for epochs in runs:
        inside = [e for e in epochs[1:] if e.end - e.seconds >= start - POLL_S and e.end <= until]
        if not inside:
            return None, 0
        total += images * len(inside) / sum(e.seconds for e in inside)
        counted += len(inside)
    return total, counted
