"""What each stage costs before it does any work: starting Python and importing what its script imports.

    python benchmarks/stage_costs.py --checkout OLD --checkout NEW [--repeats 5] [--out FILE.md]

For each checkout and each script in its `stages/` (the same names in both), times `python stages/<s>.py
--help` (the script's imports run, then argparse prints and exits) `--repeats` times, interleaving the
checkouts so that the machine's noise falls on both alike, and reports the median and the range in
seconds, with the heaviest modules the script imports (`python -X importtime`) and whether torch is among
them. DVC's own share of a stage is measured by `benchmarks/dvc_scale.py`.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path


def stage_scripts(checkout: Path) -> list[str]:
    return sorted(p.stem for p in (checkout / "stages").glob("[a-z]*.py"))


def time_startup(checkout: Path, script: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, f"stages/{script}.py", "--help"], cwd=checkout, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def heaviest_imports(checkout: Path, script: str, top: int = 3) -> tuple[list[str], bool]:
    """The `top` top-level packages by cumulative import time, and whether torch is imported at all."""
    result = subprocess.run([sys.executable, "-X", "importtime", f"stages/{script}.py", "--help"], cwd=checkout,
                            capture_output=True, text=True, check=True)
    cumulative: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and not match.group(2):  # a top-level import, not one nested in another
            cumulative[match.group(3)] = int(match.group(1))
    ranked = sorted(cumulative, key=cumulative.get, reverse=True)[:top]
    torch = any(re.search(r"\|\s+torch$", line) for line in result.stderr.splitlines())
    return [f"{name} {cumulative[name] / 1e6:.2f}" for name in ranked], torch


def commit_of(checkout: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    checkouts = [c.resolve() for c in args.checkout]
    scripts = sorted(set.intersection(*(set(stage_scripts(c)) for c in checkouts)))
    times: dict[tuple[Path, str], list[float]] = {(c, s): [] for c in checkouts for s in scripts}
    for repeat in range(args.repeats):
        for script in scripts:
            for checkout in checkouts:
                times[checkout, script].append(time_startup(checkout, script))
        print(f"round {repeat + 1}/{args.repeats} done", file=sys.stderr)
    lines = [f"# Stage start-up: Python and the script's imports (`python stages/<s>.py --help`)", "",
             f"`{' '.join(['python', *sys.argv])}` on {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}; median [min, max] of {args.repeats} runs, interleaved.", "",
             "| stage | " + " | ".join(f"`{commit_of(c)}`" for c in checkouts) + " | heaviest imports (s), last checkout |",
             "| --- | " + " | ".join("---" for _ in checkouts) + " | --- |"]
    for script in scripts:
        cells = []
        for checkout in checkouts:
            values = times[checkout, script]
            cells.append(f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]")
        heavy, torch = heaviest_imports(checkouts[-1], script)
        lines.append(f"| {script} | " + " | ".join(cells) + f" | {', '.join(heavy)}{'' if torch else '; no torch'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
