"""torch.compile as the check uses it: what a compile made (graphs, breaks, CUDA-graph skips), the
rehearsal's stand-ins for inductor, and a clean slate after a compile that a time box stopped."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch._dynamo.utils import counters

from gpu_check.children import descendants


@dataclass(frozen=True)
class CompileCounts:
    """What dynamo and inductor counted since the last `fresh_compile`."""

    graphs: int
    breaks: int
    cudagraph_skips: int

    @property
    def clean(self) -> bool:
        """One graph, no break, and CUDA graphs (where the mode records them) not skipped."""
        return self.graphs == 1 and self.breaks == 0 and self.cudagraph_skips == 0

    def __str__(self) -> str:
        return f"{self.graphs} / {self.breaks} / {self.cudagraph_skips}"


def fresh_compile() -> None:
    """Forget every compiled graph and count from zero: each model compiles afresh, never against another's
    cache limit or counts."""
    torch._dynamo.reset()
    counters.clear()


def compile_counts() -> CompileCounts:
    return CompileCounts(graphs=counters["stats"]["unique_graphs"], breaks=sum(counters["graph_break"].values()),
                         cudagraph_skips=counters["inductor"]["cudagraph_skips"])


def _stalled_backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
    """Inside dynamo's compile, as inductor's code generation is: start inductor's compile workers, as a cold
    compile has them, then wait for the time box to end."""
    from torch._inductor import config
    from torch._inductor.async_compile import AsyncCompile

    config.compile_threads = max(config.compile_threads or 0, 2)  # a pool, even on a one-CPU machine
    AsyncCompile.warm_pool()
    while True:
        time.sleep(1)


@contextlib.contextmanager
def compiling_with(backend: str | None, stalled: bool = False) -> Iterator[None]:
    """torch.compile with `backend` in place of inductor (None: inductor itself), or stalled; the step, its
    graph capture and its guards run as they would under inductor."""
    if backend is None and not stalled:
        yield
        return
    compile_ = torch.compile

    def stand_in(model: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("mode", None)  # a mode is inductor's option
        return compile_(model, backend=_stalled_backend if stalled else backend, **kwargs)

    torch.compile = stand_in
    try:
        yield
    finally:
        torch.compile = compile_


def compile_workers() -> list[int]:
    """This process's inductor compile workers (its sidecar and the workers it forked)."""
    return [pid for pid, cmd in descendants().items() if "compile_worker" in cmd]


def release_compile(wait_s: float = 5.0) -> int:
    """After a compile that a box stopped: reset dynamo and stop inductor's compile workers, which would
    otherwise go on compiling the dropped graph's kernels beside the next part; returns how many are left."""
    torch._dynamo.reset()
    with contextlib.suppress(ImportError):
        from torch._inductor.async_compile import shutdown_compile_workers

        shutdown_compile_workers()
    end = time.monotonic() + wait_s
    while (left := compile_workers()) and time.monotonic() < end:
        time.sleep(0.1)
    return len(left)
