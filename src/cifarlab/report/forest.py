"""The Findings as a picture: each claim's 95% interval against its reference, coloured by verdict (a forest
plot), and the same rows as a table for `dvc plots`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from cifarlab.config.claims import FRACTIONS
from cifarlab.io import atomic_path
from cifarlab.report.findings import CONTRADICTED, NOT_SHOWN, REPRODUCED, Finding

COLOURS = {REPRODUCED: "tab:green", CONTRADICTED: "tab:red", NOT_SHOWN: "tab:gray"}
UNITS = {"points": "points (A - B, or A - its threshold or chance rate)", "loss": "cross-entropy",
         "seconds": "seconds per epoch"}


def _unit(finding: Finding) -> str:
    metric = finding.claim.metric
    return "points" if metric in FRACTIONS else "seconds" if metric == "seconds_per_epoch" else "loss"


def _rows(findings: list[Finding]) -> list[dict]:
    """One row per claim with an interval: estimate, interval and the margin around its reference, in the
    claim's unit (points for shares)."""
    rows = []
    for f in findings:
        if f.estimate is None or f.estimate.missing:
            continue
        scale = 100 if _unit(f) == "points" else 1
        low, high = f.estimate.interval()
        margin = f.claim.margin if f.claim.expect in ("same", "at-chance", "not-below") else None
        # an equivalence is bounded on both sides, at least-as-good (not-below) only below
        rows.append({"claim": f.claim.name, "unit": _unit(f), "estimate": scale * f.estimate.mean,
                     "low": scale * low, "high": scale * high,
                     "margin": scale * margin if margin is not None else None,
                     "bounds": "below" if f.claim.expect == "not-below" else "both",
                     "verdict": f.verdict.strip("*")})
    return rows


def write_findings_table(findings: list[Finding], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(_rows(findings), columns=["claim", "unit", "estimate", "low", "high", "margin", "bounds", "verdict"]
                     ).to_csv(tmp, index=False, float_format="%.6g")


def plot_findings(findings: list[Finding], path: Path) -> Path | None:
    """One panel per unit, a row per claim: its interval, its estimate, the reference (0) and any margin
    (dotted), coloured by the verdict after the family's correction. None when no claim has an interval."""
    rows = _rows(findings)
    if not rows:
        return None
    by_unit: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_unit[row["unit"]].append(row)
    heights = [len(unit_rows) for unit_rows in by_unit.values()]
    figure = Figure(figsize=(8, 1.2 + 0.32 * sum(heights) + 0.6 * len(heights)), layout="constrained")
    grid = figure.add_gridspec(len(heights), 1, height_ratios=heights)
    for index, (unit, unit_rows) in enumerate(by_unit.items()):
        axes = figure.add_subplot(grid[index])
        for y, row in enumerate(reversed(unit_rows)):
            colour = COLOURS[f"**{row['verdict']}**" if row["verdict"] != NOT_SHOWN else NOT_SHOWN]
            axes.plot([row["low"], row["high"]], [y, y], color=colour, linewidth=2.5, solid_capstyle="butt")
            axes.plot([row["estimate"]], [y], "o", color=colour, markersize=5)
            if row["margin"] is not None:
                for edge in (-row["margin"],) if row["bounds"] == "below" else (-row["margin"], row["margin"]):
                    axes.plot([edge, edge], [y - 0.35, y + 0.35], ":", color="black", linewidth=1)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_yticks(range(len(unit_rows)), [row["claim"] for row in reversed(unit_rows)], fontsize="small")
        axes.set_ylim(-0.6, len(unit_rows) - 0.4)
        axes.set_xlabel(UNITS[unit])
        axes.grid(axis="x", alpha=0.3)
    handles = [figure.axes[0].plot([], [], color=colour, linewidth=2.5, label=verdict.strip("*"))[0]
               for verdict, colour in COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncol=3, fontsize="small")
    figure.suptitle("Findings: each claim's 95% interval (seed and image noise); dotted: its margin", fontsize="medium")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path
