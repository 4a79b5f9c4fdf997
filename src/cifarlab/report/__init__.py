"""The report, from the bottom up: `plots` (curve tables and figures, shared with the curves and
quantile-plots stages), `inputs` (what the runs recorded), `view` (what a section sees of its study),
`tables` (formatting, and the tables of scores, costs and comparisons), `sections/` (one module per
section; a study's `section:` names its own), `parameters` (the settings table) and `document`
(`report.md`, the stage's one call)."""
