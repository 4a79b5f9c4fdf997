"""cifarlab.study.resolve: a params file is validated once, with the key named in every error, and runs resolve
as documented (defaults <- study <- run entry <- profile <- the profile's keys for the study)."""

from __future__ import annotations

import copy

import pytest
import torch

from cifarlab.config.sections import RunConfig
from cifarlab.errors import CifarlabError
from cifarlab.models import MODELS, build_model
from cifarlab.nn.activations import ACTIVATIONS
from cifarlab.nn.norm_registry import NORM_LAYERS
from cifarlab.study.resolve import load_study


def error_of(params: dict) -> str:
    with pytest.raises(CifarlabError) as caught:
        load_study(params)
    message = str(caught.value)
    assert "\n" not in message, "a user error is one line"
    return message


def test_runs_are_grouped_by_study_and_each_replicate_under_its_original_in_params_order(study_params):
    study = load_study(study_params)
    assert study.profile == "full"
    by_study = study.replicates_by_study()
    assert list(by_study) == ["norm", "lab", "resnet20", "arch", "vggnorm"]
    assert list(by_study["norm"]) == ["bn-128", "torch_bn-128", "in-128", "bin-128", "ln-128", "gn-128", "bn-8", "gn-8"]
    replicated = {run: names for run, names in by_study["norm"].items() if len(names) > 1}
    assert replicated == {run: [run, f"{run}-r1"] for run in ("bn-128", "torch_bn-128", "gn-8")}
    assert {study.runs[name].seed for names in replicated.values() for name in names} == {0, 1}
    full = study.runs["bn-128"]
    assert (full.train.epochs, full.train.batch_size, full.train.train_images) == (100, 128, 0)


def test_quick_profile_overrides_every_run_last_then_each_study(study_params):
    study_params["profile"] = "quick"
    study_params["runs"]["bn-128"]["epochs"] = 50  # the profile wins so that quick stays quick
    study = load_study(study_params)
    quick = study_params["profiles"]["quick"]
    for name in study.runs_by_study()["norm"]:
        run = study.runs[name]
        assert run.train.epochs == quick["train"]["epochs"]
        assert run.train.schedule == quick["studies"]["norm"]["train"]["schedule"]
        assert run.model.options["n"] == quick["model"]["n"]
    assert study.runs["bn-8"].train.batch_size == 8
    # a study's own profile keys come last: vggnorm's image count, over the profile's common one
    vgg = study.runs["vgg-gn32"].train
    assert vgg.train_images == quick["studies"]["vggnorm"]["train"]["train_images"] != quick["train"]["train_images"]


def test_a_run_takes_its_studys_keys_and_may_override_them(study_params):
    study = load_study(study_params)
    base, bn = study.runs["lab-base"], study.runs["lab-bn"]
    assert (base.model.arch, base.model.norm, base.train.lr, base.train.augment) == ("simplenn", "nn", 0.01, False)
    assert (bn.model.norm, bn.train.lr) == ("bn", 0.01)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda p: p["runs"]["bn-128"].update(batchsize=64), "runs.bn-128.batchsize: not a key of runs.bn-128; did you "
                                                         "mean batch_size?"),
    (lambda p: p["runs"]["bn-128"].update(norm="batchnorm"), "runs.bn-128.norm: expected one of torch_bn"),
    (lambda p: p["runs"]["gn-8"].update(groups=5), "runs.gn-8.groups: GroupNorm groups=5 must divide"),
    (lambda p: p["model"].update(groups=3), "model.groups: GroupNorm groups=3 must divide"),
    (lambda p: p["model"].update(n=0), "model.n: expected a value >= 1"),
    (lambda p: p["runs"]["bn-8"].update(batch_size=0), "runs.bn-8.batch_size: expected a value >= 1"),
    (lambda p: p["train"].update(epochs=0), "train.epochs: expected a value >= 1"),
    (lambda p: p["train"].update(epochs=-3), "train.epochs: expected a value >= 1"),
    (lambda p: p["train"].update(lr=0), "train.lr: expected a value > 0"),
    (lambda p: p["train"].update(lr=-0.1), "train.lr: expected a value > 0"),
    (lambda p: p["train"].update(epochs="ten"), "train.epochs: expected int, got 'ten'"),
    (lambda p: p["train"].update(epochs=10.5), "train.epochs: expected int, got 10.5"),
    (lambda p: p["train"].update(epochs=True), "train.epochs: expected int, got True"),
    (lambda p: p["train"].pop("momentum"), "train.momentum: missing"),
    (lambda p: p["runs"]["in-128"].pop("norm"), "runs.in-128.norm: missing"),
    (lambda p: p["runs"]["in-128"].pop("study"), "runs.in-128.study: expected one of the studies (norm, lab,"),
    (lambda p: p["runs"]["in-128"].update(study="nrom"), "runs.in-128.study: expected one of the studies"),
    (lambda p: p["runs"]["in-128"].update(study=["norm"]), "runs.in-128.study: expected one of the studies"),
    (lambda p: p["runs"]["in-128"].update(study={"norm": 1}), "runs.in-128.study: expected one of the studies"),
    (lambda p: p["studies"].update({"a/b": {}}), "studies.a/b: expected a study name"),
    (lambda p: p["studies"]["lab"].update(lr="x"), "studies.lab.lr: expected float, got 'x'"),
    (lambda p: p["studies"]["lab"].update(lrr=1), "studies.lab.lrr: not a key of studies.lab; did you mean lr?"),
    (lambda p: p["profiles"]["quick"]["studies"].update(labb={}), "profiles.quick.studies.labb: not a study"),
    (lambda p: p["runs"].update({"x": "bn"}), "runs.x: expected a mapping"),
    (lambda p: p.update(runs={}), "runs: expected at least one run"),
    (lambda p: p.update(profile="fast"), "profile: expected one of full, subset, quick, got 'fast'"),
    (lambda p: p["profiles"]["quick"]["train"].update(epoch=3), "profiles.quick.train.epoch: not a key of "
                                                                "profiles.quick.train; did you mean epochs?"),
    (lambda p: p.update(sed=1), "sed: not a top-level key; did you mean seed?"),
    (lambda p: p["train"].update(epohcs=3), "train.epohcs: not a key of train; did you mean epochs?"),
    (lambda p: p["performance"].update(bf61=True), "performance.bf61: not a key of performance; did you mean bf16?"),
    (lambda p: p["profiles"]["quick"].update(trian={}), "profiles.quick.trian: not a key of profiles.quick; did you "
                                                        "mean train?"),
    (lambda p: p["runs"]["bn-128"].update(xyz=1), "runs.bn-128.xyz: not a key of runs.bn-128; expected study, "
                                                  "replicate_of, replicate or a key of model: or train: (activation,"),
    (lambda p: p.pop("seed"), "params.yaml: missing top-level key 'seed'"),
    (lambda p: p["data"].update(val_fraction=1.0), "data.val_fraction: expected a value < 1.0"),
    (lambda p: p["model"].update(shortcut="C"), "model.shortcut: expected one of A, B, got 'C'"),
])
def test_bad_params_name_the_key_and_what_was_expected(study_params, edit, expected):
    bad = copy.deepcopy(study_params)
    edit(bad)
    assert expected in error_of(bad)


def test_profile_overrides_are_validated_under_their_own_key(study_params):
    study_params["profile"] = "quick"
    study_params["profiles"]["quick"]["train"]["batch_size"] = 0
    assert "profiles.quick.train.batch_size: expected a value >= 1" in error_of(study_params)


def test_compile_is_accepted_for_every_norm(study_params):
    study_params["performance"]["compile"] = "reduce-overhead"
    study_params["runs"] = {f"{norm}-128": {"study": "norm", "norm": norm} for norm in NORM_LAYERS}
    study = load_study(study_params)
    assert {run.model.norm for run in study.runs.values()} == set(NORM_LAYERS)
    assert all(run.performance.compile == "reduce-overhead" for run in study.runs.values())


# --- model families and the registries ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "registry"), [("arch", MODELS), ("norm", NORM_LAYERS), ("activation", ACTIVATIONS)])
def test_the_names_params_accept_are_the_registrys_own(study_params, key, registry):
    study_params["runs"]["bn-128"][key] = "no-such-name"
    assert f"runs.bn-128.{key}: expected one of {', '.join(registry)}, got 'no-such-name'" in error_of(study_params)


def test_a_family_takes_only_its_own_options_from_the_defaults(study_params):
    study_params["runs"] = {"vgg": {"study": "norm", "arch": "vgg11", "norm": "bn"},
                            "plain": {"study": "norm", "arch": "plain", "norm": "bn", "n": 3},
                            "lab": {"study": "norm", "arch": "simplenn", "norm": "nn", "activation": "swish"}}
    runs = load_study(study_params).runs
    assert runs["vgg"].model.options == {"width": 64}  # model.n and model.shortcut do not apply
    assert runs["plain"].model.options == {"n": 3}
    assert runs["lab"].model.activation == "swish"


def test_a_run_setting_an_option_its_family_lacks_is_refused(study_params):
    study_params["runs"]["vgg"] = {"study": "norm", "arch": "vgg11", "norm": "bn", "shortcut": "B"}
    assert "runs.vgg.shortcut: not an option of arch vgg11 (its options: width)" in error_of(study_params)


def test_a_groupnorm_error_names_the_layer_that_set_the_groups(study_params):
    study_params["studies"]["norm"]["groups"] = 32
    assert "studies.norm.groups: GroupNorm groups=32 must divide the resnet widths" in error_of(study_params)


def test_a_study_option_of_another_family_does_not_apply_to_the_studys_other_runs(study_params):
    study_params["runs"]["resnet20-vgg"] = {"study": "resnet20", "arch": "vgg11", "norm": "bn"}  # the study sets n: 3
    assert load_study(study_params).runs["resnet20-vgg"].model.options == {"width": 64}


def test_the_profiles_keys_for_a_study_override_the_run_entry(study_params):
    study_params["profile"] = "quick"
    quick_lab = study_params["profiles"]["quick"]["studies"]["lab"]["train"]["step_epochs"]
    assert study_params["runs"]["lab-decay"]["step_epochs"] != quick_lab
    assert load_study(study_params).runs["lab-decay"].train.step_epochs == quick_lab


def test_groupnorm_groups_are_checked_against_the_widths_of_the_model_built(study_params):
    study_params["runs"] = {"vgg-gn": {"study": "norm", "arch": "vgg11", "norm": "gn", "groups": 32}}
    assert load_study(study_params).runs["vgg-gn"].model.groups == 32  # 32 divides 64, 128, 256 and 512
    study_params["runs"]["resnet-gn"] = {"study": "norm", "norm": "gn", "groups": 32}
    assert ("runs.resnet-gn.groups: GroupNorm groups=32 must divide the resnet widths 16, 32, 64"
            in error_of(study_params))


def test_a_replicate_trains_its_original_with_the_seed_plus_its_number_on_the_same_split(study_params):
    study_params["seed"] = 5
    study_params["runs"]["gn-8-r3"] = {"study": "norm", "norm": "gn", "batch_size": 8, "replicate_of": "gn-8",
                                       "replicate": 3}
    study = load_study(study_params)
    replicate, original = study.runs["gn-8-r3"], study.runs["gn-8"]
    assert (replicate.seed, original.seed, study.seed) == (8, 5, 5)  # the split keeps the top-level seed
    assert study.runs["bn-128-r1"].seed == study.runs["torch_bn-128-r1"].seed == 6  # replicate k pairs by seed
    assert (replicate.model, replicate.train) == (original.model, original.train)
    assert replicate.original == "gn-8" and original.original == "gn-8"
    assert study.replicates()["gn-8"] == ["gn-8", "gn-8-r1", "gn-8-r3"]
    assert replicate.fingerprint() != original.fingerprint()  # another seed: its own resume state
    assert RunConfig.from_record(replicate.to_record()) == replicate


@pytest.mark.parametrize(("entry", "expected"), [
    ({"replicate_of": "gn-9", "replicate": 2}, "runs.x.replicate_of: no run named 'gn-9'"),
    ({"replicate_of": "gn-8-r1", "replicate": 2},
     "runs.x.replicate_of: 'gn-8-r1' is itself a replicate of 'gn-8'; name the original run"),
    ({"replicate_of": "gn-8", "replicate": 2, "batch_size": 128},
     "runs.x: a replicate of gn-8 trains with its settings and another seed only; differs in "
     "train.batch_size 128 here, 8 in gn-8"),
    ({"replicate_of": "gn-8", "replicate": 1},
     "runs.x.replicate: 1 is the number of gn-8-r1 as well; each replicate of gn-8 needs a number of its own"),
    ({"replicate_of": "gn-8", "replicate": 0},
     "runs.x.replicate: expected a whole number from 1 (the original is 0), got 0"),
    ({"replicate_of": "gn-8"}, "runs.x: a replicate names both the run it repeats (replicate_of) and its number "
                               "(replicate: 1, 2, ...)"),
    ({"replicate": 2}, "runs.x: a replicate names both the run it repeats (replicate_of) and its number "
                       "(replicate: 1, 2, ...)"),
    ({"replicate_of": "", "replicate": 2},
     "runs.x.replicate_of: expected the name of the run this one repeats, got ''"),
    ({"replicate_of": "gn-8", "replicate": 2, "study": "lab"},
     "runs.x.study: a replicate is in its original's study 'norm', got 'lab'"),
])
def test_a_replicate_that_is_not_another_seed_of_one_original_is_refused_by_its_key(study_params, entry, expected):
    study_params["runs"]["x"] = {"study": "norm", "norm": "gn", "batch_size": 8, **entry}
    assert error_of(study_params) == expected


def test_a_new_top_level_seed_moves_every_run_and_replicate_together(study_params):
    study_params["seed"] = 1  # the original's new seed is replicate 1's old one: no clash, each shifts by one
    study = load_study(study_params)
    assert [study.runs[name].seed for name in study.replicates()["bn-128"]] == [1, 2]


def test_replicates_are_checked_after_the_profile_so_a_quick_replicate_matches_a_quick_original(study_params):
    study_params["profile"] = "quick"
    study = load_study(study_params)
    assert study.runs["gn-8-r1"].train == study.runs["gn-8"].train
    assert study.runs["gn-8-r1"].train.epochs == 5


def test_an_original_edited_without_its_replicates_is_refused_before_anything_runs(study_params):
    study_params["runs"]["gn-8"]["lr"] = 0.05
    assert error_of(study_params) == ("runs.gn-8-r1: a replicate of gn-8 trains with its settings and another seed "
                                      "only; differs in train.lr 0.1 here, 0.05 in gn-8")


def test_a_replicate_listed_above_its_original_is_refused(study_params):
    runs = study_params["runs"]
    study_params["runs"] = {"bn-128-r1": runs.pop("bn-128-r1"), **runs}
    assert error_of(study_params) == ("runs.bn-128-r1.replicate_of: list bn-128 above its replicates in runs: (the "
                                      "report takes a study's first run as its baseline)")


def test_a_vgg_width_scales_every_convolution_and_a_profile_sets_it(study_params):
    study_params["profile"] = "quick"
    study_params["profiles"]["quick"]["model"]["width"] = 32
    study_params["runs"] = {"vgg": {"study": "vggnorm", "norm": "gn", "groups": 32}}
    model = build_model(load_study(study_params).runs["vgg"].model)
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [
        32, 64, 128, 128, 256, 256, 256, 256]


def test_a_width_whose_channels_the_groups_do_not_divide_is_refused(study_params):
    study_params["runs"] = {"vgg": {"study": "vggnorm", "norm": "gn", "groups": 32, "width": 16}}
    assert "runs.vgg.groups: GroupNorm groups=32 must divide" in error_of(study_params)


def test_a_profile_that_settles_no_claim_is_recorded_and_a_bad_verdicts_value_is_refused(study_params):
    study_params["profiles"]["quick"]["verdicts"] = False
    assert load_study(study_params).pipeline_profiles == ("quick",)
    study_params["profiles"]["quick"]["verdicts"] = "no"
    assert "profiles.quick.verdicts: expected true or false, got 'no'" in error_of(study_params)
