"""cifarlab.config.claims: claims.yaml is checked against the study's runs before any training, with the claim
and key named in every error; and the repository's own claims hold against its params.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from checkout import ROOT

from cifarlab.config.claims import read_claims, read_left_out
from cifarlab.config.relations import RELATIONS, relation_lines
from cifarlab.config.sections import Study
from cifarlab.errors import CifarlabError
from cifarlab.study.resolve import load_study, read_study

# A valid claim on the test params' norm study; each test edits a copy.
MORE = {"source": "a handout, 1 (a)", "says": "GN beats IN", "study": "norm", "metric": "test.accuracy",
        "expect": "more", "a": "gn-128", "b": "in-128"}


@pytest.fixture
def study(study_params) -> Study:
    return load_study(study_params)


def _write(tmp_path: Path, claims: dict) -> Path:
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": claims}, sort_keys=False))
    return path


def _claim(tmp_path: Path, study: Study, /, **entry):
    """The one claim `c` of a claims file holding `entry` (None values dropped: a key left out)."""
    claims = read_claims(_write(tmp_path, {"c": {k: v for k, v in entry.items() if v is not None}}), study)
    assert [claim.name for claim in claims] == ["c"]
    return claims[0]


def _error(tmp_path: Path, study: Study, /, **entry) -> str:
    """The one-line error that reading claim `c` gives, less the file's name."""
    path = _write(tmp_path, {"c": {k: v for k, v in entry.items() if v is not None}})
    with pytest.raises(CifarlabError) as caught:
        read_claims(path, study)
    message = str(caught.value)
    assert "\n" not in message, "a user error is one line"
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_a_claim_reads_with_every_key_it_gave(tmp_path, study):
    claim = _claim(tmp_path, study, **{**MORE, "reported": "70% vs 60%", "min_train_images": 40000})
    assert (claim.name, claim.source, claim.says, claim.study, claim.metric, claim.expect) == (
        "c", "a handout, 1 (a)", "GN beats IN", "norm", "test.accuracy", "more")
    assert (claim.a, claim.b, claim.reported, claim.min_train_images) == ("gn-128", "in-128", "70% vs 60%", 40000)
    assert claim.kind == "score" and not claim.of_changes
    changes = _claim(tmp_path, study, **{**MORE, "a": "gn-8", "a_base": "gn-128", "b": "bn-8", "b_base": "bn-128"})
    assert changes.of_changes and changes.named_runs == ("gn-8", "gn-128", "bn-8", "bn-128")


def test_numbers_are_floats_and_ln_classes_stays_a_name(tmp_path, study):
    near = _claim(tmp_path, study, source="s", says="x", metric="initial_val_loss", expect="near",
                  runs=["bn-128"], value="ln-classes", margin=1)
    assert (near.value, near.margin) == ("ln-classes", 1.0) and isinstance(near.margin, float)
    at_least = _claim(tmp_path, study, source="s", says="x", study="resnet20", metric="test.accuracy",
                      expect="at-least", a="resnet20", value=1)
    assert at_least.value == 1.0 and isinstance(at_least.value, float)


@pytest.mark.parametrize("key", ["source", "says", "metric", "expect"])
@pytest.mark.parametrize("value", [None, "", "  ", 3])
def test_a_claim_without_source_says_metric_or_expect_names_that_key(tmp_path, study, key, value):
    assert _error(tmp_path, study, **{**MORE, key: value}).startswith(f"claims.c.{key}: expected text")


def test_an_unknown_expect_or_metric_names_the_key_and_the_choices(tmp_path, study):
    message = _error(tmp_path, study, **{**MORE, "expect": "bigger"})
    assert message.startswith("claims.c.expect: expected one of more, less, same") and "'bigger'" in message
    message = _error(tmp_path, study, **{**MORE, "metric": "test.top5"})
    assert message.startswith("claims.c.metric: expected one of") and "test.accuracy" in message
    assert "'test.top5'" in message


# What each expect needs, filled in with values valid on the test params' norm study.
NEEDED = {"a": "gn-128", "b": "in-128", "margin": 0.01, "value": 0.5, "runs": ["bn-128"]}


def _entry(expect: str, **keys) -> dict:
    """A claim on the norm study's test accuracy with the keys `expect` needs, then `keys`."""
    return {**{k: MORE[k] for k in ("source", "says", "study", "metric")}, "expect": expect,
            **{key: NEEDED[key] for key in RELATIONS[expect].needs}, **keys}


@pytest.mark.parametrize(("expect", "key", "value"), [
    ("more", "margin", 0.01), ("more", "value", 0.5), ("more", "runs", ["bn-128"]), ("less", "typo", 1),
    ("at-least", "b", "in-128"), ("at-chance", "value", 0.1), ("same", "runs", "all"), ("measured", "a", "gn-128"),
])
def test_a_key_that_its_expect_does_not_take_is_refused(tmp_path, study, expect, key, value):
    message = _error(tmp_path, study, **_entry(expect, **{key: value}))
    assert message.startswith(f"claims.c.{key}: " + ("not a key of a claim" if key == "typo" else
                                                     f"not a key of an `expect: {expect}` claim")), message


@pytest.mark.parametrize(("typo", "meant"), [("expext", "expect"), ("marign", "margin"), ("sourse", "source")])
def test_an_unknown_key_is_named_with_the_nearest_known_one(tmp_path, study, typo, meant):
    entry = {**_entry("same"), typo: "x"}
    assert _error(tmp_path, study, **entry) == f"claims.c.{typo}: not a key of a claim; did you mean {meant}?"


def test_b_is_optional_only_for_measured(tmp_path, study):
    measured = _claim(tmp_path, study, source="s", says="x", study="norm", metric="test.accuracy", expect="measured",
                      runs=["gn-128", "in-128"], b="bn-128")
    assert measured.b == "bn-128" and measured.runs == ("gn-128", "in-128")


@pytest.mark.parametrize(("expect", "missing"), [
    ("more", "a"), ("less", "b"), ("same", "margin"), ("not-below", "margin"), ("at-least", "value"),
    ("at-most", "value"), ("at-chance", "a"), ("at-chance", "margin"), ("near", "runs"), ("near", "value"),
    ("measured", "runs"),
])
def test_a_key_that_its_expect_needs_is_named_when_missing(tmp_path, study, expect, missing):
    entry = {key: value for key, value in _entry(expect).items() if key != missing}
    if expect == "near":
        entry["metric"] = "weights.fraction_small"
    assert _error(tmp_path, study, **entry) == f"claims.c.{missing}: an `expect: {expect}` claim needs it"


def test_at_chance_compares_an_accuracy_only(tmp_path, study):
    entry = {**MORE, "expect": "at-chance", "metric": "test.loss", "b": None, "margin": 0.02}
    assert _error(tmp_path, study, **entry).startswith("claims.c.expect: test.loss (loss) may expect one of")
    assert _claim(tmp_path, study, **{**entry, "metric": "test.accuracy"}).expect == "at-chance"


@pytest.mark.parametrize("metric", ["val.accuracy", "val.loss"])
def test_a_claim_on_the_validation_images_that_chose_the_checkpoint_is_refused(tmp_path, study, metric):
    message = _error(tmp_path, study, **{**MORE, "metric": metric})
    assert message.startswith(f"claims.c.metric: {metric} is on the validation images") and "use test." in message


@pytest.mark.parametrize(("metric", "expect"), [("model.parameters", "same"), ("seconds_per_epoch", "at-chance"),
                                                ("test.accuracy", "near"), ("test.accuracy", "equals")])
def test_a_metric_expects_only_what_its_noise_can_judge(tmp_path, study, metric, expect):
    entry = {**_entry(expect), "metric": metric}
    assert _error(tmp_path, study, **entry).startswith(f"claims.c.expect: {metric} (")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("margin", 2, "expected a margin below 1 (0.01 = 1 point), got 2"), ("margin", 1, "below 1"),
    ("value", 1.5, "expected a value from 0 to 1"), ("value", -0.1, "from 0 to 1"),
])
def test_margins_and_values_of_shares_stay_within_their_range(tmp_path, study, key, value, expected):
    entry = _entry("same" if key == "margin" else "at-least", **{key: value})
    assert expected in _error(tmp_path, study, **entry)
    assert _claim(tmp_path, study, **_entry("same" if key == "margin" else "at-least", **{key: 0.99})).expect


def test_a_margin_of_a_loss_is_not_a_share(tmp_path, study):
    assert _claim(tmp_path, study, **{**_entry("same"), "metric": "test.loss", "margin": 2}).margin == 2.0


@pytest.mark.parametrize("entry", [{**MORE, "b": "gn-128"},
                                   {**MORE, "a": "gn-8", "a_base": "gn-128", "b": "bn-8", "b_base": "gn-8"}])
def test_a_claim_compares_distinct_runs(tmp_path, study, entry):
    assert _error(tmp_path, study, **entry).startswith("claims.c: a, b (and a_base, b_base) must be different runs")


def test_a_claim_named_twice_is_refused_with_the_line_of_the_second(tmp_path, study):
    path = tmp_path / "claims.yaml"
    text = yaml.safe_dump({"claims": {"c": MORE}}, sort_keys=False)
    path.write_text(text + text.split("\n", 1)[1])
    with pytest.raises(CifarlabError, match=r"claims\.c") as caught:
        read_claims(path, study)
    assert f"line {text.count(chr(10)) + 1}" in str(caught.value)


def test_left_out_claims_read_with_their_reason_and_refuse_a_missing_one(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": {}, "left_out": {"x": {"source": "s", "says": "y", "why": "z"}}}))
    assert [(c.name, c.why) for c in read_left_out(path)] == [("x", "z")]
    path.write_text(yaml.safe_dump({"claims": {}, "left_out": {"x": {"source": "s", "says": "y"}}}))
    with pytest.raises(CifarlabError, match="left_out.x.why: expected text"):
        read_left_out(path)


@pytest.mark.parametrize("entry", [
    {**MORE, "a_base": "gn-8"},
    {**MORE, "b_base": "bn-8"},
])
def test_a_base_and_b_base_go_together_in_a_more_or_less_claim(tmp_path, study, entry):
    assert _error(tmp_path, study, **entry).startswith("claims.c: a_base and b_base go together")
    same = {**MORE, "expect": "same", "margin": 0.01, "a_base": "gn-8", "b_base": "bn-8"}
    assert _error(tmp_path, study, **same).startswith("claims.c.a_base: not a key of an `expect: same` claim")


def test_an_unknown_study_names_the_studies(tmp_path, study):
    message = _error(tmp_path, study, **{**MORE, "study": "normz"})
    assert message == (f"claims.c.study: expected one of the studies in params.yaml ({', '.join(study.reports)}), "
                       "got 'normz'")
    assert "norm, lab" in message


@pytest.mark.parametrize(("key", "run"), [
    ("a", "lab-base"),  # a run of another study
    ("b", "bn-128-r1"),  # a replicate: claims name the original, whose replicates are read with it
    ("a", "no-such-run"),
])
def test_a_run_of_another_study_or_a_replicate_is_refused(tmp_path, study, key, run):
    message = _error(tmp_path, study, **{**MORE, key: run})
    assert message == f"claims.c.{key}: expected a run of study norm that is not a replicate, got {run!r}"


def test_without_a_study_a_claim_reads_any_original_run(tmp_path, study):
    claim = _claim(tmp_path, study, **{**MORE, "study": None, "a": "lab-base", "b": "bn-128"})
    assert (claim.study, claim.a, claim.b) == (None, "lab-base", "bn-128")
    message = _error(tmp_path, study, **{**MORE, "study": None, "a": "gn-8-r1"})
    assert message == "claims.c.a: expected a run of runs: that is not a replicate, got 'gn-8-r1'"


@pytest.mark.parametrize("runs", ["bn-128", [], ["bn-128", "lab-base"], ["bn-128-r1"], {"bn-128": 1}])
def test_runs_is_all_or_a_list_of_original_runs_of_the_study(tmp_path, study, runs):
    entry = {**MORE, "expect": "measured", "a": None, "b": None, "runs": runs}
    assert _error(tmp_path, study, **entry).startswith("claims.c.runs: expected `all` or a list of runs")


def test_runs_all_is_every_original_run_of_its_study_or_of_every_study(tmp_path, study):
    entry = {**MORE, "expect": "measured", "a": None, "b": None, "runs": "all"}
    assert _claim(tmp_path, study, **entry).runs == ("bn-128", "torch_bn-128", "in-128", "bin-128", "ln-128",
                                                     "gn-128", "bn-8", "gn-8")
    every = _claim(tmp_path, study, **{**entry, "study": None}).runs
    assert every == tuple(study.replicates())
    assert not any(run.endswith("-r1") for run in every) and "lab-base" in every and "vgg-gn32" in every


@pytest.mark.parametrize(("key", "value"), [
    ("value", "high"), ("value", True), ("value", float("nan")), ("value", float("inf")), ("value", [0.9]),
    ("margin", 0), ("margin", -0.01), ("margin", "0.01"), ("margin", True), ("margin", float("nan")),
    ("min_train_images", 0), ("min_train_images", 1.5), ("min_train_images", "40000"), ("min_train_images", True),
    ("reported", 65.64),
])
def test_a_bad_value_margin_image_count_or_reported_names_its_key(tmp_path, study, key, value):
    entry = {**MORE, "metric": "weights.fraction_small", "expect": "near", "a": None, "b": None, "runs": ["bn-128"],
             "value": 0.5, "margin": 0.01, key: value}
    assert _error(tmp_path, study, **entry).startswith(f"claims.c.{key}: expected")


def test_a_claim_on_a_study_without_runs_here_is_left_out_even_naming_runs_it_lacks(tmp_path, study_params):
    study_params["runs"] = {name: entry for name, entry in study_params["runs"].items() if entry["study"] != "lab"}
    study = load_study(study_params)
    path = _write(tmp_path, {"lab": {**MORE, "study": "lab", "a": "lab-base", "b": "lab-bn"}, "norm": MORE})
    assert [claim.name for claim in read_claims(path, study)] == ["norm"]


def test_a_file_that_is_not_a_claims_mapping_is_refused(tmp_path, study):
    path = tmp_path / "claims.yaml"
    for text, expected in [("[1, 2]\n", "expected a mapping `claims:`"), ("claims: [a]\n", "expected a mapping"),
                           ("claims: {c: [1]}\n", "claims.c: expected a mapping"), ("claims: {c: [\n", "line 2: not valid YAML")]:
        path.write_text(text)
        with pytest.raises(CifarlabError, match=expected) as caught:
            read_claims(path, study)
        assert str(caught.value).startswith(str(path))
    with pytest.raises(CifarlabError, match="not found"):
        read_claims(tmp_path / "missing.yaml", study)
    path.write_text("claims: {}\n")
    assert read_claims(path, study) == []


def test_the_repositorys_claims_hold_against_its_params():
    study = read_study(ROOT / "params.yaml")
    assert read_claims(ROOT / "claims.yaml", study)
    assert read_left_out(ROOT / "claims.yaml")


def test_the_claims_files_header_lists_every_relation_as_the_registry_defines_it():
    header = (ROOT / "claims.yaml").read_text().split("\nclaims:", 1)[0]
    listed = [line.removeprefix("#   ") for line in header.splitlines() if line.startswith("#   ")]
    assert listed == relation_lines()


def test_the_statistics_page_defines_every_relation_of_the_registry():
    table = (ROOT / "docs" / "statistics.md").read_text().split("**One test per claim.**", 1)[1].split("\n\n")[1]
    first_cells = [line.split("|")[1] for line in table.splitlines()[2:]]
    named = {name for cell in first_cells for name in re.findall(r"`([a-z-]+)`", cell)}
    assert named == set(RELATIONS)
