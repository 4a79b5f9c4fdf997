"""Child processes in time boxes: started in sessions of their own, stopped as Ctrl-C would stop them."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cifarlab.errors import one_line

POLL_S = 0.05  # how often a running job is looked at; also the resolution of the times a poll records

Job = tuple[list[str], dict[str, str], Path]  # a command, its environment, its log


@dataclass
class Finished:
    returncode: int
    seconds: float
    timed_out: bool


def stop(*procs: subprocess.Popen, grace_s: float) -> None:
    """Interrupt each of `procs` as Ctrl-C would (a stage saves its state), and kill the whole session of any
    that has not ended within `grace_s`: one grace for all, however many."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    grace_end = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(timeout=max(grace_end - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`cmd` with its output appended to `log`, in a session of its own: a Ctrl-C meant for this check
    reaches it only through `stop`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_boxed(cmd: list[str], cwd: Path, env: dict[str, str], box_s: float, log: Path, grace_s: float) -> Finished:
    """Run `cmd`, its output appended to `log`; past `box_s` seconds, or if this check is interrupted, stop it."""
    (done,) = run_together([(cmd, env, log)], cwd, box_s, grace_s)
    return done


def run_together(jobs: list[Job], cwd: Path, box_s: float, grace_s: float,
                 poll: Callable[[list[bool]], bool] | None = None) -> list[Finished]:
    """Start every job at once and wait for all; past `box_s` seconds, when `poll` (shown which jobs still
    run, every POLL_S) returns True, or if this check is interrupted, stop those still running. Each one's
    seconds run to its own end, or to the stop."""
    started = time.perf_counter()
    procs: list[subprocess.Popen] = []
    ended: dict[int, float] = {}
    try:
        for cmd, env, log in jobs:  # one by one, so that an interruption stops those already started
            procs.append(start(cmd, cwd, env, log))
        deadline = started + max(box_s, 0.1)
        while True:
            for index, proc in enumerate(procs):
                if index not in ended and proc.poll() is not None:
                    ended[index] = time.perf_counter() - started
            enough = poll is not None and poll([index not in ended for index in range(len(procs))])
            if enough or len(ended) == len(procs) or time.perf_counter() >= deadline:
                break
            time.sleep(POLL_S)
    except BaseException:
        stop(*procs, grace_s=grace_s)
        raise
    stopped_at = time.perf_counter() - started
    stop(*procs, grace_s=grace_s)
    return [Finished(proc.returncode, ended.get(index, stopped_at), index not in ended)
            for index, proc in enumerate(procs)]


def last_lines(log: Path, count: int = 1, pattern: str = "") -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip() and re.search(pattern, line)]
    return one_line(" / ".join(lines[-count:])) if lines else "(no output)"


def descendants(root: int | None = None) -> dict[int, str]:
    """The live processes below `root` (this one by default) and their command lines, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            if state not in "ZX":
                parents[int(stat.parent.name)] = int(parent)
    found, frontier = {}, [os.getpid() if root is None else root]
    while frontier:
        below = [pid for pid, parent in parents.items() if parent in frontier]
        for pid in below:
            with contextlib.suppress(OSError):
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        frontier = below
    return found
