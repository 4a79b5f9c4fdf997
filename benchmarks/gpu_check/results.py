"""The results file: one section per part, then the goals, rewritten whole after every measurement."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpu_check.sizes import PARTS, TITLES

GOALS_TITLE = "Against the goals of the issue"


@dataclass
class Section:
    """One part's figures: a status line, how they were obtained, a table, and notes."""

    title: str
    status: str = "not run: the check stopped before this part"
    intro: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", "", f"status: {self.status}", ""]
        if self.intro:
            lines += [*self.intro, ""]
        if self.rows:
            numeric = [all(re.match(r"[\d.,]+( |$)|n/a", row[i]) for row in self.rows if len(row) > i and row[i])
                       for i in range(len(self.header))]
            lines += ["| " + " | ".join(self.header) + " |",
                      "| " + " | ".join("---:" if right else "---" for right in numeric) + " |",
                      *("| " + " | ".join(row) + " |" for row in self.rows), ""]
        if self.notes:
            lines += [*self.notes, ""]
        return lines


@dataclass
class Results:
    path: Path
    heading: str
    machine: list[str]
    sections: dict[str, Section] = field(default_factory=lambda: {part: Section(TITLES[part]) for part in PARTS})
    goals: list[str] = field(default_factory=list)

    def write(self) -> None:
        """Replace the file in one step, so that a reader (or a kill) never sees half of it."""
        lines = [f"# {self.heading}", "", *self.machine, ""]
        for section in self.sections.values():
            lines += section.markdown()
        lines += [f"## {GOALS_TITLE}", "", *(self.goals or ["not computed yet"]), ""]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text("\n".join(lines))
        os.replace(partial, self.path)


def number(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"
