"""The report stage's document: `report.md` with its figures beside it. A header with the best run and
where every number comes from, what a reader must know before trusting the comparisons, then each
study under the section its `studies:` entry names, then the parameters every run trained with."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cifarlab.config.claims import Claim
from cifarlab.config.sections import RunConfig, Study
from cifarlab.io import write_text
from cifarlab.report.findings import findings_section, judge_all
from cifarlab.report.forest import plot_findings, write_findings_table
from cifarlab.report.inputs import ReportInputs, read_inputs
from cifarlab.report.parameters import parameters_section, source_name
from cifarlab.report.plots import confusion_counts, plot_confusion_matrices
from cifarlab.report.sections import section
from cifarlab.report.tables import OUTCOME_RULE, pct
from cifarlab.report.view import StudyView

READING_THE_COMPARISONS = (
    "How to read the comparisons below the Findings: test accuracy is given in percent as the mean over a run's "
    "replicates (the same settings, another seed for initialisation, data order and augmentation; the split is "
    "the same for all), with a 95% interval that holds both the seed-to-seed spread and the test images' noise "
    "(paired over shared seeds and images; a run of one seed borrows its study's pooled seed variance). A - B is "
    "a difference in points with such an interval; the test column says what it rests on. The verdict is "
    "\"within noise\" when the interval holds 0, else the better run; under a profile that checks the pipeline "
    "there is none. These comparisons are each tested on their own at 95%, for orientation: of twenty with no "
    "real difference, about one will still read \"better\". The Findings are the verdicts, corrected as one "
    "family.")


def header(study: Study, inputs: ReportInputs) -> list[str]:
    """The title, then the runs and studies, the best run (by its mean over seeds), the devices and where
    every number comes from."""
    runs, metrics, replicates, aggregates = list(study.runs), inputs.metrics, inputs.replicates, inputs.aggregates
    best = max(replicates, key=lambda r: aggregates[r]["test"]["accuracy"]["mean"])  # not the luckiest seed
    diverged = [r for r in runs if metrics[r]["status"] == "diverged"]
    devices = sorted({str(metrics[r].get("device", "?")) for r in runs})
    profiles = sorted({cfg.profile for cfg in inputs.configs.values()})
    return [
        "# cifarlab: study report", "",
        f"{len(replicates)} runs ({len(runs)} trainings with the replicates) in {len(study.runs_by_study())} "
        f"studies, profile {', '.join(f'`{p}`' for p in profiles)}; the best test accuracy is "
        f"{pct(aggregates[best]['test']['accuracy']['mean'])}% (`{best}`"
        + (f", mean of {len(replicates[best])} seeds)" if len(replicates[best]) > 1 else ")")
        + (f"; diverged: {', '.join(f'`{r}`' for r in diverged)}" if diverged else "") + ". "
        f"Trained on: {', '.join(devices)}. Generated "
        "from `metrics/` (scores), `aggregates/` (scores over replicates), `plots/live/` (settings, curves, times), "
        "`plots/predictions/` (per-image answers) and `plots/confusion/` by the "
        "`report` stage; no number here is typed in.", "", *data_lines(study, inputs)]


def data_lines(study: Study, inputs: ReportInputs) -> list[str]:
    """Where the images came from and how many each split had: every standard error depends on them."""
    def sizes(key: str) -> str:
        counts = sorted({inputs.records[run]["data"][key] for run in study.runs})
        return " to ".join(f"{n:,}" for n in (counts[0], counts[-1]) if n) if len(counts) > 1 else f"{counts[0]:,}"

    hashes = sorted({inputs.records[run]["data"]["content_sha256"][:12] for run in study.runs})
    return [f"Data: `{source_name(study.data.source)}` (split content hash {', '.join(hashes)}). Test set: {sizes('test_images')} images, "
            "the same for every run; "
            f"runs trained on {sizes('train_images')} images and selected their checkpoint on "
            f"{sizes('val_images')} validation images.", ""]


def provenance_notes(study: Study, configs: Mapping[str, RunConfig],
                     records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What a reader must know before trusting the comparisons: runs of a small profile, runs made under
    other settings than today's params.yaml, runs trained on different splits."""
    notes = []
    profiles_used = {cfg.profile for cfg in configs.values()}
    checks = sorted(profiles_used & set(study.pipeline_profiles))
    if checks:
        notes.append(f"**Profile {', '.join(f'`{p}`' for p in checks)}: runs trained under that profile's overrides "
                     "(the parameters table lists them: smaller models on a slice of the data for a few epochs), not "
                     "the studies as specified. This report checks the pipeline; its numbers are not the studies' "
                     "results, and its Findings give no claim on training a verdict.**")
    others = sorted(profiles_used - set(study.pipeline_profiles) - {"full"})
    if others:
        notes.append(f"**Profile {', '.join(f'`{p}`' for p in others)}: the studies' own protocols (the parameters table "
                     "lists any override) on the data named above, not necessarily the full CIFAR-10: its verdicts are "
                     "about that data, and absolute figures (accuracies, a threshold such as 90%) are not the full "
                     "data's.**")
    profiles = sorted({cfg.profile for cfg in configs.values()})
    if len(profiles) > 1:
        notes.append(f"**This report mixes runs of the profiles {', '.join(f'`{p}`' for p in profiles)}**; the "
                     "parameters table gives each run's.")
    stale = [run for run, cfg in configs.items() if cfg.fingerprint() != study.runs[run].fingerprint()]
    if stale:
        names = ", ".join(f"`{r}`" for r in stale)
        notes.append(f"**Trained under other settings than `params.yaml` now gives: {names}."
                     "** The tables show what they trained with; `dvc repro` retrains them.")
    splits = {records[run]["data"]["content_sha256"] for run in configs}
    if len(splits) > 1:
        notes.append(f"**The runs trained on {len(splits)} different data splits** (content hashes "
                     f"{', '.join(sorted(h[:12] for h in splits))}); their scores are not comparable.")
    return [line for note in notes for line in (note, "")]


def confusion_matrix_lines(view: StudyView, confusion_dir: Path) -> list[str]:
    """Every run's test confusion matrix, from the evaluate stage's tables, as one figure per study."""
    matrices = {run: confusion_counts(confusion_dir, run) for run in view.runs}
    figure = view.out_dir / f"confusion_{view.name}.png"
    plot_confusion_matrices(matrices, figure, f"Test confusion matrices of study {view.name} (share of each "
                            "actual class)")
    return ["### Test confusion matrices", "", f"![test confusion matrices of study {view.name}]({figure.name})", ""]


def study_lines(study: Study, name: str, view: StudyView, confusion_dir: Path) -> list[str]:
    """Study `name` under the heading and the section that its entry in `studies:` names."""
    report = study.reports[name]
    _, render = section(report.section)
    return [f"## {report.title} (study `{name}`)", "", *render(view), *confusion_matrix_lines(view, confusion_dir)]


def write_report(study: Study, claims: list[Claim], *, metrics_dir: Path, aggregates_dir: Path, live_root: Path,
                 quantile_dir: Path, weights_dir: Path, confusion_dir: Path, predictions_dir: Path,
                 out_dir: Path) -> Path:
    """The report stage: `report.md` with its figures beside it in `out_dir`, one section per study.

    Which runs there are and how they group into studies come from params.yaml; everything about each run
    (its settings, data sizes, scores, curves) comes from what it recorded.
    """
    inputs = read_inputs(list(study.runs), metrics_dir=metrics_dir, aggregates_dir=aggregates_dir,
                         live_root=live_root, predictions_dir=predictions_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    findings = judge_all(claims, inputs, study)
    figure = plot_findings(findings, out_dir / "findings.png") if findings else None
    write_findings_table(findings, out_dir / "findings.csv")
    verdicts = not ({cfg.profile for cfg in inputs.configs.values()} & set(study.pipeline_profiles))
    lines = [*header(study, inputs), *provenance_notes(study, inputs.configs, inputs.records),
             *findings_section(findings, figure), READING_THE_COMPARISONS, "", OUTCOME_RULE, ""]
    for name, names in study.runs_by_study().items():
        view = StudyView(name, names, {run: inputs.replicates[run] for run in names if run in inputs.replicates},
                         inputs.configs, inputs.metrics, inputs.aggregates, inputs.histories, inputs.correct,
                         verdicts, weights_dir, quantile_dir, out_dir)
        lines += study_lines(study, name, view, confusion_dir)
    lines.append(parameters_section(inputs.configs, inputs.records, study))
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path
