"""The committed results: the README's headline and docs/results/README.md are what the results bundles
give, so that no figure quoted there is typed in or stale."""

from __future__ import annotations

from checkout import ROOT

from cifarlab.tools.results import bundles, headline_lines, results_page

RESULTS = ROOT / "docs" / "results"


def test_the_readme_headline_is_what_the_bundles_give():
    found = bundles(RESULTS)
    assert found, "no results bundle is committed"
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results:begin -->\n", 1)[1].split("<!-- results:end -->", 1)[0]
    assert block.splitlines() == headline_lines(found, ROOT / "claims.yaml", ROOT)


def test_the_results_page_is_what_the_bundles_give():
    found = bundles(RESULTS)
    page = (RESULTS / "README.md").read_text().splitlines()
    assert page == "\n".join(results_page(found, ROOT / "claims.yaml", RESULTS)).splitlines()
