"""Time boxes for the parts that measure in this process: the hard edge is SIGALRM, which may land anywhere,
a torch.compile included."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any


class PartTimeout(BaseException):
    """A time box ended.

    A BaseException, as KeyboardInterrupt is: dynamo wraps any Exception raised inside a compile in its own
    (BackendCompilerFailed, InternalTorchDynamoError), which would turn a box that ended mid-compile into a
    failure; a BaseException passes through it as it was raised.
    """


_ends: list[float] = []  # the open boxes' ends (time.monotonic()), innermost last


def _expire(signum: int, frame: Any) -> None:
    raise PartTimeout


def _arm() -> None:
    signal.setitimer(signal.ITIMER_REAL, max(_ends[-1] - time.monotonic(), 0.01))


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[float]:
    """Raise PartTimeout in this thread after `seconds`, or when an enclosing box ends first; yields the
    box's end on time.monotonic()'s clock. Boxes nest: leaving one re-arms the one around it."""
    end = min([time.monotonic() + max(seconds, 0.01), *_ends])
    _ends.append(end)
    before = signal.signal(signal.SIGALRM, _expire)
    _arm()
    try:
        yield end
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _ends.pop()
        signal.signal(signal.SIGALRM, before)
        if _ends:
            _arm()


def box_ended(end: float) -> bool:
    """Whether the box ending at `end` is over: tells an inner box's timeout from its enclosing one's."""
    return time.monotonic() >= end - 0.005
