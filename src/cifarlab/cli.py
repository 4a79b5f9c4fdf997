"""What every entry point shares: a user error is one line and exit status 2, an interruption exit 130."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from cifarlab.errors import CifarlabError, Interrupted


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler's preemption, `kill`) takes the same path as Ctrl-C.
    raise KeyboardInterrupt


def run_stage(body: Callable[[list[str]], None]) -> None:
    """Run a stage's body; a user error or an interruption becomes one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        body(sys.argv[1:])
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted: stopped before finishing; every file it wrote is complete", file=sys.stderr)
        sys.exit(130)
