"""Part 6, the CUDA tests: `python -m pytest -m gpu -q` in the checkout, with what is left of the budget."""

from __future__ import annotations

import importlib.util
import sys

from gpu_check import ROOT
from gpu_check.check import Check
from gpu_check.children import last_lines, run_boxed
from gpu_check.results import Section, number
from gpu_check.sizes import STOP_GRACE_S

PYTEST_ARGS = ["-m", "gpu", "-q", "-p", "no:cacheprovider"]
# pytest with some packages unimportable, as on a machine without them: each test module must collect.
WITHOUT = ("import sys\nsys.modules.update(dict.fromkeys(sys.argv.pop(1).split(',')))\nimport pytest\n"
           "sys.exit(pytest.main(sys.argv[1:]))")


def command(hidden: tuple[str, ...]) -> list[str]:
    if not hidden:
        return [sys.executable, "-m", "pytest", *PYTEST_ARGS]
    return [sys.executable, "-c", WITHOUT, ",".join(hidden), *PYTEST_ARGS]


def run(check: Check, section: Section, box: float) -> None:
    hidden = check.sizes.hidden_packages
    section.intro = [("`python -m pytest -m gpu -q` in the checkout: every test marked `gpu` (they skip without "
                      "CUDA); its summary line:")]
    if hidden:
        section.intro.append(f"Rehearsal: with {', '.join(hidden)} unimportable, as on a GPU node without them, "
                             "so that every test module must collect without them.")
    if importlib.util.find_spec("pytest") is None:
        section.status = "skipped: pytest is not installed (add its wheel to the ones copied to this machine)"
        return
    log = check.workdir / "logs" / "tests.log"
    grace = STOP_GRACE_S["tests"]
    if box < grace + 5:
        section.status = "not run: the check's time budget was spent"
        return
    done = run_boxed(command(hidden), ROOT, check.env(), box - grace, log, grace)
    summary = last_lines(log, 1, r"\d+ (passed|failed|skipped|deselected|error)")
    section.header = ["command", "summary", "seconds"]
    section.rows = [["`python -m pytest -m gpu -q`", summary, number(done.seconds)]]
    if done.timed_out:
        section.status = f"partial: stopped at its {box:.0f} s time box (the summary counts the tests run)"
    elif done.returncode in (0, 5):  # 5: no test selected
        section.status = f"done in {done.seconds:.0f} s"
    else:
        section.status = f"failed: pytest exited {done.returncode}; see the summary (log: {log.name})"
        section.notes = [f"last lines: {last_lines(log, 6)}"]
