"""Every relative link of the README and the docs (the results bundles' reports included) reaches a file
that exists, and a link into a Markdown file's section reaches a heading of that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from checkout import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "benchmarks").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCED = re.compile(r"```.*?```", re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", FENCED.sub("", page.read_text()), re.M)}


def broken_links(page: Path) -> list[str]:
    broken = []
    for match in LINK.finditer(FENCED.sub("", page.read_text())):
        link = match.group(1)
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no such heading in {target.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(page):
    assert broken_links(page) == []


def test_a_link_to_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# What the studies cost\n")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#what-the-studies-cost) [b](gone.md) [c](other.md#gone) "
                    "[d](https://example.org/x) ```\n[e](inside-code.md)\n```")
    assert broken_links(page) == ["gone.md: no such file", "other.md#gone: no such heading in other.md"]
