"""cifarlab.config.sections: a resolved run's learning rate, its fingerprint and its plain-data record."""

from __future__ import annotations

import json

import pytest

from cifarlab.config.sections import RunConfig
from cifarlab.study.resolve import load_study


def edit_run(params: dict, run: str, **edits) -> None:
    """Edit a run's entry and its replicates' alike, as a user must (each replicate is an entry of its own)."""
    for name, entry in params["runs"].items():
        if name == run or entry.get("replicate_of") == run:
            entry.update(edits)


def test_batch_size_8_scales_the_learning_rate_linearly(study_params):
    study = load_study(study_params)
    assert study.runs["bn-128"].train.effective_lr == pytest.approx(0.1)
    assert study.runs["bn-8"].train.effective_lr == pytest.approx(0.1 * 8 / 128)


def test_a_run_can_keep_the_learning_rate_as_given(study_params):
    edit_run(study_params, "bn-8", lr_scaling="none")
    assert load_study(study_params).runs["bn-8"].train.effective_lr == pytest.approx(0.1)


def test_fingerprint_ignores_the_study_a_run_is_filed_under(study_params):
    before = load_study(study_params).runs["gn-8"].fingerprint()
    study_params["studies"]["elsewhere"] = {"section": "comparisons"}
    edit_run(study_params, "gn-8", study="elsewhere")
    assert load_study(study_params).runs["gn-8"].fingerprint() == before


@pytest.mark.parametrize(("key", "value"), [("groups", 4), ("l1", 1e-5), ("augment", False), ("optimizer", "adam"),
                                            ("activation", "swish"), ("n", 3)])
def test_fingerprint_changes_with_any_run_setting(study_params, key, value):
    before = load_study(study_params).runs["gn-8"].fingerprint()
    edit_run(study_params, "gn-8", **{key: value})
    after = load_study(study_params).runs["gn-8"].fingerprint()
    assert before != after
    assert load_study(study_params).runs["gn-8"].fingerprint() == after


@pytest.mark.parametrize("profile", ["full", "quick"])
def test_every_run_survives_its_record_with_the_profile_overrides_it_records(study_params, profile):
    study_params["profile"] = profile
    study_params["runs"]["lab-decay"]["milestones"] = [10, 20]  # a tuple-valued key of the run's own...
    study_params["profiles"]["quick"]["studies"]["lab"]["train"]["milestones"] = [2, 4]  # ...that the profile overrides
    study = load_study(study_params)
    assert {run.model.arch for run in study.runs.values()} == {"resnet", "plain", "vgg11", "simplenn"}
    for run in study.runs.values():
        assert RunConfig.from_record(json.loads(json.dumps(run.to_record()))) == run
    if profile == "quick":
        assert "milestones (10, 20) (runs.lab-decay) -> (2, 4)" in study.runs["lab-decay"].describe_overrides()
