"""The whole DAG under `dvc repro`, in a temporary copy of the repo, on a tiny generated archive."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from archives import make_cifar_archive
from checkout import committed_project, run

pytestmark = pytest.mark.slow
# Every study, with the runs its report section needs: both batch sizes for bn and gn, the built-in twin and
# a second seed of both (a paired comparison), an L1 run and its baseline, a run that may diverge, and each
# kind of network.
RUNS = ("torch_bn-128", "bn-128", "bn-8", "gn-128", "gn-8", "bn-128-r1", "torch_bn-128-r1", "lab-base", "lab-lr-1",
        "lab-l1", "resnet20", "arch-plain20", "arch-simplenn", "vgg-gn32")


# One claim of each kind the Findings table tests, on the runs above.
CLAIMS = {
    "twin": {"source": "s1", "says": "the twins agree", "study": "norm", "metric": "test.accuracy", "expect": "same",
             "a": "torch_bn-128", "b": "bn-128", "margin": 0.01},
    "gn-batch": {"source": "s2", "says": "GN minds the batch less", "study": "norm", "metric": "test.accuracy",
                 "expect": "more", "a": "gn-8", "a_base": "gn-128", "b": "bn-8", "b_base": "bn-128"},
    "initial": {"source": "s3", "says": "ln 10 before training", "metric": "initial_val_loss", "expect": "near",
                "runs": "all", "value": "ln-classes", "margin": 0.25},
    "chance": {"source": "s4", "says": "lr 1 at chance", "study": "lab", "metric": "test.accuracy",
               "expect": "at-chance", "a": "lab-lr-1", "margin": 0.02},
    "sparse": {"source": "s5", "says": "L1 sparsifies", "study": "lab", "metric": "weights.fraction_small",
               "expect": "more", "a": "lab-l1", "b": "lab-base"},
    "ninety": {"source": "s6", "says": "past 90%", "study": "resnet20", "metric": "test.accuracy",
               "expect": "at-least", "a": "resnet20", "value": 0.9, "min_train_images": 40000},
    "loss": {"source": "s7", "says": "plain trains lower", "study": "arch", "metric": "train.loss", "expect": "less",
             "a": "arch-plain20", "b": "arch-simplenn"},
}


@pytest.fixture(scope="module")
def study_repo(tmp_path_factory, tiny_params) -> Path:
    """The project with the tiny study reproduced once on a generated archive, two epochs a run (module-scoped:
    slow)."""
    archive = make_cifar_archive(tmp_path_factory.mktemp("archive") / "cifar.tar.gz", per_batch=12, test_size=20)
    params = tiny_params(archive, epochs=2)
    params["runs"] = {name: entry for name, entry in params["runs"].items() if name in RUNS}
    assert set(params["runs"]) == set(RUNS)
    repo = committed_project(tmp_path_factory.mktemp("study"), params, CLAIMS)
    result = run(["dvc", "repro"], repo)
    (repo / "repro.log").write_text(result.stdout + result.stderr)
    return repo


def test_repro_writes_every_runs_metrics_and_the_report(study_repo):
    runs = list(yaml.safe_load((study_repo / "params.yaml").read_text())["runs"])
    for name in runs:
        metrics = json.loads((study_repo / "metrics" / f"{name}.json").read_text())
        for split in ("train", "val", "test"):
            assert set(metrics[split]) == {"accuracy", "micro_f1", "macro_f1", "loss", "loss_se", "majority_rate",
                                           "images"}
            assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert metrics["epochs_run"] == 2
        assert metrics["initial_val_loss"] > 0
        assert (study_repo / "plots" / "quantiles" / f"{name}.png").stat().st_size > 0
    report = (study_repo / "report" / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert [h for h in headings if h.startswith("## ")] == [
        "## Findings",
        "## Normalization and batch size in a CIFAR ResNet (study `norm`)",
        "## A first CNN and what each improvement of the training pipeline buys (study `lab`)",
        "## ResNet-20 past 90% (study `resnet20`)",
        "## Residual vs plain vs VGG vs SimpleNN on one budget (study `arch`)",
        "## No norm vs BatchNorm vs GroupNorm on VGG-11 (study `vggnorm`)",
        "## Parameters of the study"]
    for heading in ("### Metrics", "### Error curves", "### Sanity check", "### Batch size",
                    "### Penultimate-feature quantiles", "### Sanity checks", "### What each change buys",
                    "### L1 against L2", "### Parameters and MACs",
                    "### Training loss by epoch and by wall-clock second"):
        assert any(h.startswith(heading) for h in headings), heading
    for image in ("error_curves.png", "batch_size_bn.png", "batch_size_gn.png", "quantiles_all_runs.png",
                  "error_curves_lab.png", "weights_lab.png", "costs_arch.png", "loss_arch.png",
                  "error_curves_vggnorm.png", *(f"confusion_{study}.png" for study in
                                                   ("norm", "lab", "resnet20", "arch", "vggnorm"))):
        assert f"]({image})" in report and (study_repo / "report" / image).exists()


def test_the_test_predictions_give_each_official_test_index_and_its_predicted_class(study_repo):
    metrics = json.loads((study_repo / "metrics" / "resnet20.json").read_text())
    lines = (study_repo / "plots" / "predictions" / "resnet20.csv").read_text().splitlines()
    assert lines[0] == "split,index,predicted,actual"
    rows = [line.split(",")[1:] for line in lines[1:] if line.startswith("test,")]
    assert len(rows) == metrics["test"]["images"] == 20
    assert [int(row[0]) for row in rows] == list(range(20))
    classes = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    assert {row[1] for row in rows} <= classes and {row[2] for row in rows} <= classes


def test_report_numbers_come_from_the_metrics_files(study_repo):
    report = (study_repo / "report" / "report.md").read_text()
    metrics = json.loads((study_repo / "metrics" / "gn-8.json").read_text())
    assert f"{100 * metrics['test']['accuracy']:.2f}" in report
    assert f"{100 * metrics['val']['macro_f1']:.2f}" in report


def test_dvc_metrics_show_lists_every_runs_headline(study_repo):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], study_repo).stdout)
    files = next(iter(shown.values()))["data"]
    runs = yaml.safe_load((study_repo / "params.yaml").read_text())["runs"]
    assert set(files) == {f"metrics/headline/{name}.json" for name in runs}
    for name in runs:
        detailed = json.loads((study_repo / "metrics" / f"{name}.json").read_text())
        assert files[f"metrics/headline/{name}.json"]["data"] == {
            "test": {key: detailed["test"][key] for key in ("accuracy", "macro_f1")},
            "val": {"accuracy": detailed["val"]["accuracy"]}}


def test_dvc_plots_render_every_curve_of_the_study_and_every_confusion(study_repo):
    plots = json.loads(run(["dvc", "plots", "show", "--json"], study_repo).stdout)["data"]
    entries = yaml.safe_load((study_repo / "params.yaml").read_text())["runs"]
    studies = {entry["study"] for entry in entries.values()}
    for study in studies:
        runs = {name for name, entry in entries.items() if entry["study"] == study}
        originals = {name for name in runs if "replicate_of" not in entries[name]}
        for curve in ("train_error", "val_error", "train_loss", "val_loss", "lr"):
            points = plots[f"plots/curves/{study}/{curve}.csv"][0]["content"]["data"]["values"]
            assert {p["run"] for p in points} == originals  # a replicated run is one mean curve with a band
            assert {p["epoch"] for p in points} == {"1", "2"}
            if study == "norm":
                assert {p["replicates"] for p in points if p["run"] == "bn-128"} == {"2"}
            banded = [p for p in points if p["low"] != ""]  # single-replicate runs have no band
            assert all(float(p["low"]) <= float(p["value"]) <= float(p["high"]) for p in banded)
            assert {p["run"] for p in banded} <= {"bn-128", "torch_bn-128"}
        by_time = plots[f"plots/curves-by-time/{study}/train_loss.csv"][0]["content"]["data"]["values"]
        assert {p["run"] for p in by_time} == runs
    for name in entries:
        confusion = plots[f"plots/confusion/{name}.csv"][0]["content"]["data"]["values"]
        assert len(confusion) == 100 and sum(int(cell["count"]) for cell in confusion) == 20  # 10x10, 20 images
    html = study_repo / "html"
    run(["dvc", "plots", "diff", "HEAD", "-o", str(html)], study_repo)
    assert (html / "index.html").exists()


def test_the_aggregate_stage_summarizes_each_run_over_its_replicates_for_dvc_metrics(study_repo):
    shown = next(iter(json.loads(run(["dvc", "metrics", "show", "--json", "aggregates"],
                                     study_repo).stdout).values()))["data"]
    entries = yaml.safe_load((study_repo / "params.yaml").read_text())["runs"]
    originals = [name for name, entry in entries.items() if "replicate_of" not in entry]
    assert sorted(p for p in shown if p.startswith("aggregates/")) == sorted(f"aggregates/{r}.json" for r in originals)
    scores = [json.loads((study_repo / "metrics" / f"{name}.json").read_text())["test"]["accuracy"]
              for name in ("bn-128", "bn-128-r1")]
    summary = shown["aggregates/bn-128.json"]["data"]["test"]["accuracy"]
    assert summary["count"] == 2 and summary["mean"] == pytest.approx(sum(scores) / 2)
    assert summary["std"] == pytest.approx(abs(scores[0] - scores[1]) / 2 ** 0.5)
    single = json.loads((study_repo / "aggregates" / "gn-8.json").read_text())["test"]["accuracy"]
    assert single["count"] == 1 and single["std"] is None and single["low"] is None  # DVC shows null as nothing
    assert shown["aggregates/gn-8.json"]["data"]["test"]["accuracy"]["count"] == 1
    report = (study_repo / "report" / "report.md").read_text()
    assert "- `bn-128` vs `torch_bn-128` (2 seeds each):" in report
    assert re.search(r"\| `torch_bn-128` +\| `bn-128` +\|", report) is None  # the twin is not "another norm"
    # A: one seed (exact binomial); B: two (t interval, or binomial when the seeds agree); A - B; test; verdict
    # each run's interval and the difference's hold seed and test-image noise; one seed borrows the pooled
    row = next(line for line in report.splitlines() if re.match(r"\| `bn-8` +\| `bn-128` ", line))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert all(re.fullmatch(r"[0-9.]+ \[[0-9.]+, [0-9.]+\]", cell) for cell in cells[2:4]), row
    assert re.fullmatch(r"[+-][0-9.]+ \[[+-][0-9.]+, [+-][0-9.]+\]", cells[4]), row
    assert re.fullmatch(r"1 and 2 seeds \(one seed's variance pooled over \d+ replicated runs, \d+ df\) \+ 20 paired "
                        r"images, t\(([0-9.,]+|inf)\)", cells[5]), row
    assert cells[6] in ("within noise", "`bn-8` better", "`bn-128` better"), row


def test_a_second_repro_has_nothing_to_do(study_repo):
    assert json.loads(run(["dvc", "status", "--json"], study_repo).stdout) == {}
    assert "Running stage" not in run(["dvc", "repro"], study_repo).stdout


def test_every_file_a_stage_wrote_is_a_declared_output(study_repo):
    lock = yaml.safe_load((study_repo / "dvc.lock").read_text())
    declared = [out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]
    produced = [p.relative_to(study_repo).as_posix()
                for top in ("data", "models", "metrics", "aggregates", "plots", "report")
                for p in (study_repo / top).rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert produced
    undeclared = [p for p in produced if not any(p == d or p.startswith(d + "/") for d in declared)]
    runs = yaml.safe_load((study_repo / "params.yaml").read_text())["runs"]
    assert set(undeclared) == {f"models/resume/{name}.pt" for name in runs}  # scratch that DVC leaves alone


def test_a_new_run_is_one_params_entry_that_metrics_and_curves_pick_up(study_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(study_repo, repo, symlinks=True)  # with its git history and DVC cache
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["runs"]["gn-4-128"] = {"study": "norm", "norm": "gn", "groups": 4}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = run(["dvc", "repro"], repo).stdout
    trained = {line.split("'")[1] for line in ran.splitlines() if line.startswith("Running stage 'train@")}
    assert trained == {"train@gn-4-128"}  # only the new run trains
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert "metrics/headline/gn-4-128.json" in next(iter(shown.values()))["data"]
    curve = json.loads(run(["dvc", "plots", "show", "--json"], repo).stdout)["data"]["plots/curves/norm/val_error.csv"]
    assert "gn-4-128" in {p["run"] for p in curve[0]["content"]["data"]["values"]}
    assert "gn-4-128" in (repo / "report" / "report.md").read_text()


def output_files(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for top in ("models", "metrics", "plots", "report")
            for p in (repo / top).rglob("*") if p.is_file()}


def test_a_params_typo_after_a_finished_run_stops_before_any_output_is_removed(study_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(study_repo, repo, symlinks=True)
    before = output_files(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["runs"]["gn-8"]["lrr"] = 0.05  # meant lr: DVC would rerun train@gn-8 and clear its outputs first
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], repo, check=False)
    assert result.returncode != 0
    assert "error: runs.gn-8.lrr: not a key of runs.gn-8; did you mean lr?" in result.stderr
    assert "Running stage 'train@" not in result.stdout
    assert output_files(repo) == before  # curves, models, metrics, report: every byte still there


def page_specs(html: str) -> list[dict]:
    """The Vega-Lite specs that DVC's page hands to vegaEmbed, one per plot."""
    return [json.loads(spec) for spec in re.findall(r"var spec = (\{.*?\});\s*vegaEmbed", html, flags=re.S)]


def page_plots(html: str) -> dict[str, dict]:
    """The page's specs by the id of the box each is drawn in."""
    return {box: json.loads(spec) for spec, box in
            re.findall(r"var spec = (\{.*?\});\s*vegaEmbed\('#([^']+)'", html, flags=re.DOTALL)}


def test_plots_diff_of_two_commits_renders_with_no_network_and_a_square_confusion_grid_per_revision(
        study_repo, tmp_path):
    # Imported here, not at the top: a machine without it (a GPU node) must still collect this module.
    vl_convert = pytest.importorskip("vl_convert")
    repo = tmp_path / "repo"
    shutil.copytree(study_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "results"], repo)
    confusion = repo / "plots" / "confusion" / "bn-8.csv"
    table = [line.split(",") for line in confusion.read_text().splitlines()]
    confusion.write_text("\n".join(",".join(row[:2] + ([str(20 if row[0] == row[1] == "cat" else 0)] if i else row[2:]))
                                   for i, row in enumerate(table)) + "\n")  # the workspace: every image a cat
    run([sys.executable, "-m", "cifarlab.tools.offline_plots"], repo)
    run(["dvc", "plots", "diff", "HEAD", "-o", "diff"], repo)
    html = (repo / "diff" / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)  # nothing to fetch
    assert "window.vegaEmbed" in html  # the libraries are in the page itself
    specs = page_specs(html)
    assert len(specs) == len(re.findall(r"<div id\s*=", html)) > 0
    drawn = {box: spec for box, spec in page_plots(html).items() if spec}
    # A JSON file that DVC keeps as a plot for the run cache only (a run's every score, its DVCLive summary
    # and settings) draws nothing; every other plot, per study and per run, draws.
    assert all(box.endswith("_json") for box in set(page_plots(html)) - set(drawn))
    assert any(box.startswith("plots_predictions_") for box in drawn) and any(
        box.startswith("plots_live_") for box in drawn)
    for spec in drawn.values():
        svg = vl_convert.vegalite_to_svg(spec)
        assert "<path" in svg or "<rect" in svg
    grid = next(s for s in specs if s.get("title") == "plots/confusion/bn-8.csv")
    assert {v["rev"] for v in grid["data"]["values"]} == {"HEAD", "workspace"}
    svg = vl_convert.vegalite_to_svg(grid)
    for rev in ("HEAD", "workspace"):
        assert f">{rev}</text>" in svg  # one labelled grid per revision
    # 10 actual x 10 predicted cells per revision, zeros included, so both grids line up
    for rev in ("HEAD", "workspace"):
        cells = {(v["actual"], v["predicted"]) for v in grid["data"]["values"] if v["rev"] == rev}
        assert len(cells) == 100


def test_offline_plots_outside_a_dvc_repository_says_so_in_one_line(tmp_path):
    result = run([sys.executable, "-m", "cifarlab.tools.offline_plots"], tmp_path, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path}: not a DVC repository (no .dvc folder); "
                                                  "run this from the project root"]
    assert not (tmp_path / ".dvc").exists()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_results_bundle_regenerates_its_report_byte_for_byte_from_the_bundle_alone(study_repo, tmp_path):
    """collect takes the norm study's runs with their models' answers; report, run again on the bundle
    alone (no checkout, no models), writes the same bytes."""
    bundle = tmp_path / "results" / "quick-norm"
    bundle.parent.mkdir()
    logs = tmp_path / "logs"  # as a runner keeps each run's train stage output: bn-128 stopped twice
    logs.mkdir()
    (logs / "bn-128.log").write_text("bn-128: resuming after epoch 1/3 from models/resume/bn-128.pt\n"
                                     "gn-128: resuming after epoch 2/3 from models/resume/gn-128.pt\n"
                                     "bn-128: resuming after epoch 2/3 from models/resume/bn-128.pt\n")
    (logs / "gn-8.log").write_text("gn-8 epoch 1/3\n")
    run([sys.executable, "-m", "cifarlab.tools.results", "collect", str(study_repo), "--study", "norm", "--out",
         str(bundle), "--logs", str(logs)], study_repo)
    provenance = json.loads((bundle / "provenance.json").read_text())
    assert provenance["resumed_after_epochs"] == {"bn-128": [1, 2]}
    assert sorted(p.name for p in (bundle / "logs").iterdir()) == ["bn-128.log", "gn-8.log"]
    assert (bundle / "params.yaml").read_bytes() == (study_repo / "params.yaml").read_bytes()
    runs = json.loads((bundle / "study.json").read_text())["runs"]
    assert set(runs) == {name for name, entry in yaml.safe_load((study_repo / "params.yaml").read_text())["runs"].items()
                         if entry["study"] == "norm"}
    for run_name in runs:
        answers = (bundle / "predictions" / f"{run_name}.csv").read_text().splitlines()
        assert answers[0] == "split,index,predicted,actual" and {line.split(",")[0] for line in answers[1:]} == {
            "val", "test"}
        assert (json.loads((bundle / "metrics" / f"{run_name}.json").read_text())["test"] ==
                json.loads((study_repo / "metrics" / f"{run_name}.json").read_text())["test"])
    first = _files(bundle)
    assert "report/report.md" in first and "report/findings.png" in first
    shutil.rmtree(bundle / "report")
    run([sys.executable, "-m", "cifarlab.tools.results", "report", str(bundle)], study_repo)
    assert _files(bundle) == first


def test_a_retrain_is_a_new_bundle_an_existing_one_is_never_overwritten(study_repo, tmp_path):
    (tmp_path / "taken").mkdir()
    result = run([sys.executable, "-m", "cifarlab.tools.results", "collect", str(study_repo), "--study", "norm",
                  "--out", str(tmp_path / "taken")], study_repo, check=False)
    assert result.returncode == 2 and "exists; a retrain is a new bundle" in result.stderr
    assert list((tmp_path / "taken").iterdir()) == []
