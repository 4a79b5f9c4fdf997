"""Report tables and verdicts: numbers appear exactly as formatted from the metrics files."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import STUDY_PARAMS
from scipy import stats

from cifarlab.analysis.evaluation import confusion_table
from cifarlab.analysis.replicates import aggregate_metrics
from cifarlab.config.sections import RunConfig, TrainConfig
from cifarlab.report import plots
from cifarlab.report.document import provenance_notes, write_report
from cifarlab.report.parameters import parameters_section
from cifarlab.report.plots import confusion_counts
from cifarlab.report.sections.lab import changed_settings
from cifarlab.report.sections.norm import (
    batch_sensitivity,
    feature_widths,
    sanity_section,
)
from cifarlab.report.tables import comparison_rows, interval, metrics_table, outcome
from cifarlab.report.view import StudyView, changes, difference
from cifarlab.study.resolve import load_study
from cifarlab.train.tracking import LIVE_METRICS, live_plot_file


def _params() -> dict:
    """The tests' own params (conftest.STUDY_PARAMS), a fresh copy."""
    return copy.deepcopy(STUDY_PARAMS)


def test_metrics_table_keeps_two_decimals_for_round_percentages():
    scores = {"accuracy": 0.5, "micro_f1": 0.5, "macro_f1": 0.05, "images": 1024}
    metrics = {"run": {"status": "completed", "stopped_reason": "", "best_epoch": 2, "epochs_run": 2,
                       "train": scores, "val": {**scores, "images": 512},
                       "test": {**scores, "accuracy": 1.0, "images": 1017}, "train_time_s": 3.0}}
    header, _, row = metrics_table(metrics).splitlines()  # header, rule, then the one run
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    named = dict(zip((cell.strip() for cell in header.strip("|").split("|")), cells))
    assert [named[f"train {score}"] for score in ("accuracy", "micro-F1", "macro-F1")] == ["50.00", "50.00", "5.00"]
    assert named["test accuracy"] == "100.00"
    # each split with the images it was scored on: train on those trained on, val on those that selected
    assert (named["train images"], named["val images"], named["test images"]) == ("1,024", "512", "1,017")


def _scores(accuracy: float, images: int = 1000, majority_rate: float = 0.1) -> dict:
    return {"accuracy": accuracy, "micro_f1": accuracy, "macro_f1": accuracy, "loss": 2.3, "loss_se": 0.01,
            "majority_rate": majority_rate, "images": images}


# Exact 95% intervals on 1,000 images: 133 right is [11.26%, 15.56%], 134 [11.35%, 15.67%], 90 [7.30%, 10.95%],
# 95 [7.75%, 11.49%]; the majority-class rate is 11.3%.
@pytest.mark.parametrize(("status", "accuracy", "expected"), [
    ("diverged", 0.5, "**diverged** (non-finite loss at epoch 3)"),
    ("completed", 0.133, "**at chance**"),
    ("completed", 0.134, "learned"),
    ("completed", 0.095, "**at chance**"),
    ("completed", 0.090, "**below chance**"),
])
def test_outcome_is_a_two_sided_test_against_the_majority_class_rate(status, accuracy, expected):
    metrics = {"status": status, "stopped_reason": "non-finite loss at epoch 3",
               "test": _scores(accuracy, majority_rate=0.113)}
    assert outcome(metrics) == expected


def test_changed_settings_names_each_key_that_differs_from_the_baseline():
    study = load_study(_params())
    base = study.runs["lab-base"]
    assert changed_settings(study.runs["lab-bn-lr-1e-1"], base) == "norm=bn, lr=0.1"
    assert changed_settings(study.runs["lab-l1"], base) == "weight_decay=0.0, l1=1e-05"
    assert changed_settings(base, base) == "(the baseline)"


def _study(profile: str = "full", **run_entry_edits):
    params = _params()
    params["profile"] = profile
    for run, edits in run_entry_edits.items():
        params["runs"][run].update(edits)
    return load_study(params)


def _records(study, sha: str = "a" * 64) -> dict:
    return {name: {"run": cfg.to_record(), "data": {"train_images": 40000, "val_images": 10000,
                                                   "test_images": 10000, "content_sha256": sha}}
            for name, cfg in study.runs.items()}


def _configs(records: dict) -> dict:
    return {name: RunConfig.from_record(record["run"]) for name, record in records.items()}


def test_a_report_of_runs_made_as_params_say_has_no_provenance_note():
    study = _study()
    assert provenance_notes(study, _configs(_records(study)), _records(study)) == []


def test_the_report_names_runs_trained_under_other_settings_than_params_now_give():
    trained = _study()
    records = _records(trained)
    now = _study(**{"ln-128": {"lr": 0.05}})  # edited after ln-128 trained
    notes = provenance_notes(now, _configs(records), records)
    assert notes == [("**Trained under other settings than `params.yaml` now gives: `ln-128`.** The tables show "
                      "what they trained with; `dvc repro` retrains them."), ""]


def test_the_report_says_when_it_mixes_profiles_and_data_splits():
    full, quick = _study(), _study("quick")
    records = {**_records(full), "bn-8": _records(quick, sha="b" * 64)["bn-8"]}
    notes = " ".join(provenance_notes(full, _configs(records), records))
    assert "**Profile `quick`: runs trained under that profile's overrides" in notes
    assert "**This report mixes runs of the profiles `full`, `quick`**" in notes
    assert "`bn-8`" in notes and "**The runs trained on 2 different data splits**" in notes


def test_a_profile_that_gives_verdicts_is_not_called_a_pipeline_check():
    subset = _study("subset")  # the studies' protocols on a smaller archive
    records = _records(subset)
    notes = " ".join(provenance_notes(subset, _configs(records), records))
    assert "**Profile `subset`: the studies' own protocols" in notes and "checks the pipeline" not in notes


def test_the_parameters_table_shows_what_each_run_recorded_and_what_the_profile_overrode():
    quick = _study("quick")
    records = _records(quick)
    records["resnet20"]["data"]["train_images"] = 1024
    table = parameters_section(_configs(records), records, _study())  # today's params say full: ignored
    row = next(line for line in table.splitlines() if line.startswith("| resnet20 "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    header = [cell.strip() for cell in next(line for line in table.splitlines() if line.startswith("| run "))
              .strip("|").split("|")]
    shown = dict(zip(header, cells))
    assert shown["profile"] == "quick" and shown["epochs"] == "5" and shown["train images"] == "1,024"
    assert shown["overridden by the profile"] == ("n 3 (studies.resnet20) -> 1, epochs 200 (studies.resnet20) -> 5, "
                                                  "patience 200 (studies.resnet20) -> 5")
    bin_row = dict(zip(header, [c.strip() for c in next(line for line in table.splitlines()
                                                         if line.startswith("| bin-128 ")).strip("|").split("|")]))
    assert bin_row["gate lr"].startswith("1 (10x")  # the gates' lr: 10 x 0.1


def test_a_confusion_table_holds_every_pair_of_classes_and_reads_back_as_the_matrix(tmp_path):
    labels, predicted = np.array([0, 0, 1, 0, 1]), np.array([0, 1, 1, 0, 2])
    table = confusion_table(labels, predicted, ["cat", "dog", "ship"])
    assert len(table) == 9  # zeros included: two revisions' grids line up cell for cell
    assert table.iloc[0].tolist() == ["cat", "cat", 2]
    table.to_csv(tmp_path / "r.csv", index=False)
    matrix = confusion_counts(tmp_path, "r")
    assert list(matrix.index) == list(matrix.columns) == ["cat", "dog", "ship"]
    assert matrix.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]  # rows actual, columns predicted


def _view(tmp_path: Path, runs: dict[str, dict], accuracies: dict[str, float], val_errors: dict[str, list[float]],
          images: int = 1000) -> StudyView:
    """A norm-study view of `runs` (params entries) whose test accuracies and validation-error curves are
    given, with aggregates made as the aggregate stage makes them."""
    params = _params()
    params["runs"] = runs
    study = load_study(params)
    metrics = {name: {"status": "completed", "stopped_reason": "", "best_epoch": 2, "train_time_s": 1.0,
                      "test": _scores(accuracies[name], images), "val": _scores(accuracies[name], images)}
               for name in runs}
    replicates = study.replicates()
    aggregates = {run: aggregate_metrics([metrics[n] for n in names], [study.runs[n].seed for n in names])
                  for run, names in replicates.items()}
    histories = {name: pd.DataFrame({"val_error": errors, "train_error": errors},
                                    index=pd.RangeIndex(1, len(errors) + 1, name="epoch"))
                 for name, errors in val_errors.items()}
    return StudyView("norm", list(runs), replicates, study.runs, metrics, aggregates, histories, {}, True, tmp_path, tmp_path,
                     tmp_path)


PAIR = {"bn-128": {"study": "norm", "norm": "bn"}, "torch_bn-128": {"study": "norm", "norm": "torch_bn"},
        **{f"{run}-r{k}": {"study": "norm", "norm": norm, "replicate_of": run, "replicate": k}
           for run, norm in (("bn-128", "bn"), ("torch_bn-128", "torch_bn")) for k in (1, 2)}}


def _binomial_se(accuracies: list[float], images: int) -> float:
    return sum(a * (1 - a) / images for a in accuracies) ** 0.5


def test_replicated_runs_are_compared_pair_by_seed_with_seed_and_image_noise_and_a_verdict(tmp_path):
    # torch_bn is 1 point better on every seed while the seeds spread by 10 points: only pairing sees it.
    # Without per-image answers, image noise is each run's binomial SE (the mean square over its seeds).
    accuracies = {"bn-128": 0.50, "bn-128-r1": 0.60, "bn-128-r2": 0.70,
                  "torch_bn-128": 0.51, "torch_bn-128-r1": 0.615, "torch_bn-128-r2": 0.71}
    view = _view(tmp_path, PAIR, accuracies, {name: [0.5] for name in PAIR}, images=100_000)
    row = comparison_rows(view, [("torch_bn-128", "bn-128")])[0]
    seed_var = np.var([0.01, 0.015, 0.01], ddof=1) / 3
    image_var = sum(np.mean([a * (1 - a) / 100_000 for a in values]) for values in
                    ([0.51, 0.615, 0.71], [0.50, 0.60, 0.70]))
    df = (seed_var + image_var) ** 2 / (seed_var ** 2 / 2)
    half = stats.t.ppf(0.975, df) * (seed_var + image_var) ** 0.5
    diff = 0.035 / 3
    assert row["A - B (points) [95% interval]"] == f"+{100 * diff:.2f} [{100 * (diff - half):+.2f}, {100 * (diff + half):+.2f}]"
    assert row["verdict"] == "`torch_bn-128` better" and row["test"].startswith("3 paired seeds + each run's image SE")


def test_single_runs_without_replicates_in_their_study_get_no_interval_and_say_why(tmp_path):
    runs = {"bn-128": {"study": "norm", "norm": "bn"}, "gn-128": {"study": "norm", "norm": "gn"}}
    view = _view(tmp_path, runs, {"bn-128": 0.26, "gn-128": 0.237}, {name: [0.5] for name in runs}, images=1017)
    row = comparison_rows(view, [("gn-128", "bn-128")])[0]
    assert row["A - B (points) [95% interval]"] == "-2.30 [no interval]"
    assert row["verdict"].startswith("no verdict (a run of one seed, and no replicated run")
    exact = stats.binomtest(241, 1017).proportion_ci(0.95)  # 23.70% of 1,017 images is 241
    assert row["A test accuracy [95% interval]"] == f"23.70 [{100 * exact.low:.2f}, {100 * exact.high:.2f}] (images only)"


def test_a_pipeline_check_profile_calls_no_run_better(tmp_path):
    accuracies = {"bn-128": 0.50, "bn-128-r1": 0.60, "bn-128-r2": 0.70,
                  "torch_bn-128": 0.51, "torch_bn-128-r1": 0.615, "torch_bn-128-r2": 0.71}
    view = dataclasses.replace(_view(tmp_path, PAIR, accuracies, {n: [0.5] for n in PAIR}, images=100_000),
                               verdicts=False)
    assert comparison_rows(view, [("torch_bn-128", "bn-128")])[0]["verdict"] == "no verdict (a pipeline-check profile)"


def test_the_sanity_check_says_whether_the_twins_are_distinguishable_and_the_curve_gap_in_spreads(tmp_path):
    # epoch 1: means 0.62 and 0.63, both spread 0.02 (the largest ratio, 0.5); epoch 2: a gap of 2 points
    # against a spread of 0.1 (ratio 0.2). The gap is reported where it is largest, with the spread there.
    curves = {"bn-128": [0.60, 0.30], "bn-128-r1": [0.62, 0.40], "bn-128-r2": [0.64, 0.50],
              "torch_bn-128": [0.61, 0.32], "torch_bn-128-r1": [0.63, 0.42], "torch_bn-128-r2": [0.65, 0.52]}
    accuracies = {"bn-128": 0.50, "bn-128-r1": 0.60, "bn-128-r2": 0.70,
                  "torch_bn-128": 0.52, "torch_bn-128-r1": 0.58, "torch_bn-128-r2": 0.71}
    view = _view(tmp_path, PAIR, accuracies, curves)
    text = "\n".join(sanity_section(view))
    diff = difference(view, "bn-128", "torch_bn-128")
    assert diff.low < 0 < diff.high
    assert "`bn-128` vs `torch_bn-128` (3 seeds each)" in text
    assert (f"no difference shown, but only one larger than {100 * max(-diff.low, diff.high):.2f} points could have "
            "shown here") in text
    assert ("largest gap between their mean validation-error curves: 2.00 points (epoch 2), 0.20 seed-to-seed "
            "standard deviations (10.00 points) there.") in text


def test_the_curve_gap_counts_only_epochs_every_replicate_reached(tmp_path):
    curves = {name: [0.60, 0.50] for name in PAIR}
    curves["bn-128-r2"] = [0.60]  # stopped early; epoch 2's mean would rest on fewer seeds
    curves["torch_bn-128"] = [0.61, 0.10]
    text = "\n".join(sanity_section(_view(tmp_path, PAIR, {name: 0.5 for name in PAIR}, curves)))
    assert "curves: 0.33 points (epoch 1)" in text  # epoch 2's 13-point gap is left out


def test_one_replicate_against_three_borrows_the_pooled_seed_variance(tmp_path):
    runs = {name: entry for name, entry in PAIR.items() if not name.startswith("torch_bn-128-")}
    accuracies = {"bn-128": 0.50, "bn-128-r1": 0.60, "bn-128-r2": 0.70, "torch_bn-128": 0.62}
    view = _view(tmp_path, runs, accuracies, {name: [0.5] for name in runs})
    row = comparison_rows(view, [("torch_bn-128", "bn-128")])[0]
    assert row["test"].startswith("1 and 3 seeds (one seed's variance pooled over 1 replicated runs, 2 df)")
    assert row["A - B (points) [95% interval]"].startswith("+2.00 [")


def test_an_accuracy_cell_clips_its_interval(tmp_path):
    accuracies = {"bn-128": 0.05, "bn-128-r1": 0.95, "bn-128-r2": 0.50, "torch_bn-128": 0.4, "torch_bn-128-r1": 0.4,
                  "torch_bn-128-r2": 0.4}
    view = _view(tmp_path, PAIR, accuracies, {name: [0.5] for name in PAIR})
    row = comparison_rows(view, [("torch_bn-128", "bn-128")])[0]
    assert row["B test accuracy [95% interval]"] == "50.00 [0.00, 100.00]"
    # the seeds agree: the images' noise is what is left, at the normal quantile (infinite df)
    half = stats.norm.ppf(0.975) * (0.4 * 0.6 / 1000) ** 0.5
    assert row["A test accuracy [95% interval]"] == f"40.00 [{100 * (0.4 - half):.2f}, {100 * (0.4 + half):.2f}]"


def test_a_difference_in_batch_size_sensitivity_is_the_difference_of_the_two_changes(tmp_path):
    runs = {name: {"study": "norm", "norm": name[:2], **({"batch_size": 8} if name.endswith("-8") else {})}
            for name in ("bn-128", "bn-8", "gn-128", "gn-8")}
    runs |= {f"{name}-r1": {**entry, "replicate_of": name, "replicate": 1} for name, entry in runs.items()}
    accuracies = {"bn-128": 0.60, "bn-8": 0.50, "gn-128": 0.55, "gn-8": 0.54,
                  "bn-128-r1": 0.61, "bn-8-r1": 0.51, "gn-128-r1": 0.56, "gn-8-r1": 0.55}
    view = _view(tmp_path, runs, accuracies, {name: [0.5] for name in runs}, images=100_000)
    [line] = batch_sensitivity(view, [("bn-8", "bn-128"), ("gn-8", "gn-128")])[:1]
    diff = changes(view, "gn-8", "gn-128", "bn-8", "bn-128")
    assert diff.mean == pytest.approx((0.545 - 0.555) - (0.505 - 0.605)) and diff.low > 0
    assert line.startswith(f"- From batch 128 to 8, `gn` changes by -1.00 points and `bn` by -10.00; the difference "
                           f"of the changes is +9.00 points {interval(diff)} ({diff.test}): ")
    assert line.endswith("`gn` gains more (or loses less) from the smaller batch.")


def _row(table: str, run: str) -> dict[str, str]:
    """The cells of `run`'s row of a Markdown table, by column name."""
    lines = table.splitlines()
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split("|")]
    header = cells(next(line for line in lines if line.startswith("| run ")))
    return dict(zip(header, cells(next(line for line in lines if line.startswith(f"| {run} ")))))


def test_the_parameters_table_shows_train_keys_from_the_config_fields_and_groups_only_for_group_norms():
    study = _study()
    records = _records(study)
    table = parameters_section(_configs(records), records, study)
    shown = _row(table, "bn-128")
    # keys that no list in the report names: their columns come from TrainConfig's fields
    assert shown["lr reference batch"] == "128" and shown["eval batch size"] == "0"
    assert shown["norm"] == "bn" and _row(table, "gn-128")["norm"] == "gn (8 groups)"
    assert shown["n"] == "2" and _row(table, "lab-base")["n"] == "-"  # ResNet's option; SimpleNN has none


def test_a_new_train_key_shows_in_the_parameters_table_without_an_edit_there():
    @dataclasses.dataclass(frozen=True)
    class TrainWithSmoothing(TrainConfig):
        label_smoothing: float = 0.1

    study = _study()
    records = _records(study)
    configs = {name: dataclasses.replace(cfg, train=TrainWithSmoothing(**dataclasses.asdict(cfg.train)))
               for name, cfg in _configs(records).items()}
    assert _row(parameters_section(configs, records, study), "bn-128")["label smoothing"] == "0.1"


def test_the_feature_quantiles_are_described_with_each_models_own_width(tmp_path):
    # ResNet's last stage has 64 channels (He et al. 2016, section 4.2); SimpleNN's last hidden layer 84 units
    runs = {"bn-128": {"study": "norm", "norm": "bn"}, "simple": {"study": "norm", "norm": "bn", "arch": "simplenn"}}
    view = _view(tmp_path, runs, {name: 0.5 for name in runs}, {name: [0.5] for name in runs})
    assert feature_widths(view) == "penultimate features (64-d for ResNet-14 (A); 84-d for SimpleNN)"
    one = {"bn-128": runs["bn-128"]}
    assert feature_widths(_view(tmp_path, one, {"bn-128": 0.5}, {"bn-128": [0.5]})) == "64-d penultimate features"


def _write_run_outputs(root: Path, study) -> None:
    """What the train, evaluate and aggregate stages write for every run of `study`, for two epochs."""
    metrics = {}
    for name, cfg in study.runs.items():
        live = root / "live" / name
        live.mkdir(parents=True)
        (live / "metrics.json").write_text(json.dumps({"train_time_s": 2.0, "device": "cpu"}))
        (live / "run.json").write_text(json.dumps({"run": cfg.to_record(), "data": {
            "train_images": 40, "val_images": 10, "test_images": 10, "content_sha256": "a" * 64}}))
        for column, metric in LIVE_METRICS.items():
            live_plot_file(live, column).parent.mkdir(parents=True, exist_ok=True)
            live_plot_file(live, column).write_text(f"step\t{metric.split('/')[-1]}\n1\t0.6\n2\t0.5\n")
        metrics[name] = {"status": "completed", "stopped_reason": "", "best_epoch": 2, "epochs_run": 2,
                         "initial_val_loss": 2.3, "train": _scores(0.5, 40), "val": _scores(0.5, 10),
                         "test": _scores(0.5, 10), "model": {"parameters": 1000, "macs_per_image": 5000},
                         "weights": {"small_threshold": 1e-3, "fraction_small": 0.1}}
        (root / "metrics").mkdir(exist_ok=True)
        (root / "metrics" / f"{name}.json").write_text(json.dumps(metrics[name]))
        (root / "confusion").mkdir(exist_ok=True)
        (root / "confusion" / f"{name}.csv").write_text("actual,predicted,count\ncat,cat,3\ncat,dog,2\n"
                                                        "dog,cat,1\ndog,dog,4\n")
        (root / "predictions").mkdir(exist_ok=True)
        (root / "predictions" / f"{name}.csv").write_text(
            "split,index,predicted,actual\n" + "".join(f"{split},{i},cat,{'cat' if i % 2 else 'dog'}\n"
                                                        for split in ("val", "test") for i in range(10)))
    (root / "aggregates").mkdir()
    for run, names in study.replicates().items():
        aggregate = aggregate_metrics([metrics[n] for n in names], [study.runs[n].seed for n in names])
        (root / "aggregates" / f"{run}.json").write_text(json.dumps(aggregate))


def test_each_study_gets_the_section_its_entry_names_under_its_title_whatever_the_study_is_called(tmp_path):
    params = _params()
    params["studies"] = {
        "norm": {"section": "comparisons"},  # a name that is also a section's: the entry decides
        "first-cnn": {"section": "lab", "title": "A first CNN, one change at a time", "arch": "simplenn",
                      "norm": "nn"},
    }
    params["runs"] = {"cnn-base": {"study": "first-cnn"}, "cnn-lr": {"study": "first-cnn", "lr": 0.05},
                      "bn": {"study": "norm", "norm": "bn"}, "ln": {"study": "norm", "norm": "ln"}}
    params["profiles"] = {"full": {}}
    study = load_study(params)
    _write_run_outputs(tmp_path, study)
    path = write_report(study, [], metrics_dir=tmp_path / "metrics", aggregates_dir=tmp_path / "aggregates",
                        live_root=tmp_path / "live", quantile_dir=tmp_path / "quantiles",
                        weights_dir=tmp_path / "weights", confusion_dir=tmp_path / "confusion",
                        predictions_dir=tmp_path / "predictions", out_dir=tmp_path / "report")
    sections = {part.splitlines()[0]: part for part in path.read_text().split("\n## ")[1:]}
    assert list(sections) == ["A first CNN, one change at a time (study `first-cnn`)",  # the entry's title
                              "Comparisons with the study's first run (study `norm`)",  # the section's own
                              "Parameters of the study"]
    lab = sections["A first CNN, one change at a time (study `first-cnn`)"]
    assert "### Sanity checks" in lab and "### What each change buys (baseline `cnn-base`)" in lab
    norm = sections["Comparisons with the study's first run (study `norm`)"]
    assert "### Against the baseline `bn`" in norm and "quantiles" not in norm  # not the norm section


def hand_made_metrics(status: str, reason: str = "") -> dict:
    scores = {"accuracy": 0.1, "micro_f1": 0.1, "macro_f1": 0.05, "images": 100}
    return {"status": status, "stopped_reason": reason, "best_epoch": 1, "epochs_run": 3,
            "best_val_accuracy": 0.1, "train": scores, "val": scores, "test": scores, "train_time_s": 1.0}


def test_metrics_table_marks_a_diverged_run_with_its_reason():
    table = metrics_table({"ok": hand_made_metrics("completed"),
                           "boom": hand_made_metrics("diverged", "non-finite loss at epoch 3")})
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("|")}
    assert "**diverged** (non-finite loss at epoch 3)" in rows["boom"]
    assert "diverged" not in rows["ok"] and "completed" in rows["ok"]


def test_every_curve_against_the_epoch_ticks_whole_epochs_only(tmp_path, monkeypatch):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    epochs = pd.Index([1, 2, 3, 4, 5], name="epoch")  # five epochs: matplotlib alone would tick 1.5, 2.5, ...
    history = pd.DataFrame({"train_error": [0.9, 0.8, 0.7, 0.65, 0.6], "val_error": [0.9, 0.85, 0.75, 0.7, 0.7],
                            "train_loss": [2.3, 2.0, 1.8, 1.7, 1.6], "epoch_time_s": [3.0, 2.9, 3.1, 3.0, 3.2],
                            "feature_q01": [0.0] * 5, "feature_q20": [0.0] * 5, "feature_q80": [0.2] * 5,
                            "feature_q99": [2.0] * 5}, index=epochs)
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure))
    plots.plot_error_curves({"a": [history, history * 1.01]}, tmp_path / "errors.png", "errors")
    plots.plot_loss_by_epoch_and_time({"a": history}, tmp_path / "loss.png", "loss")
    plots.plot_run_quantiles(history, "a", tmp_path / "quantiles.png")

    epoch_axes = []
    for figure in figures:
        FigureCanvasAgg(figure).draw()
        epoch_axes += [axes for axes in figure.axes if axes.get_xlabel() == "epoch"]
    assert len(epoch_axes) == 4  # two error panels, the loss by epoch, the quantiles
    for axes in epoch_axes:
        low, high = axes.get_xlim()
        shown = [tick for tick in axes.get_xticks() if low <= tick <= high]
        assert shown and all(float(tick).is_integer() for tick in shown), shown
