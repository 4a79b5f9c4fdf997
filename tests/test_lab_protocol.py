"""The repository's params.yaml against the ECE 661 HW2 handout: each step's run resolves, under the full
profile, to the settings the handout gives for it (SimpleNN, SGD with momentum 0.9, batch 128, 30 epochs, a
constant learning rate unless the step says otherwise). These tests read the checkout's params.yaml on
purpose: they check the study it defines, not the code."""

from __future__ import annotations

import pytest
from checkout import ROOT

from cifarlab.config.params import read_params
from cifarlab.config.sections import RunConfig, Study
from cifarlab.study.resolve import load_study

# What every lab run shares (the handout's training loop), and Lab 1's baseline on top of it.
HANDOUT = {"arch": "simplenn", "activation": "relu", "optimizer": "sgd", "momentum": 0.9, "batch_size": 128,
           "epochs": 30, "warmup_epochs": 0}
LAB1 = {**HANDOUT, "norm": "nn", "lr": 0.01, "weight_decay": 1e-4, "l1": 0.0, "augment": False,
        "schedule": "constant"}
# From Lab 2 (a) on every run augments; Lab 2 (c) tunes the pipeline with augmentation and BN.
LAB2A = {**LAB1, "augment": True}
LAB2C = {**LAB2A, "norm": "bn"}


def _study(profile: str) -> Study:
    params = read_params(ROOT / "params.yaml")
    params["profile"] = profile
    return load_study(params)


@pytest.fixture(scope="module")
def full() -> Study:
    return _study("full")


def settings(run: RunConfig) -> dict:
    """The settings the handout names, as the run trains with them (the lr after any batch scaling); the
    decay's keys only for a step schedule, n only for a ResNet."""
    model, train = run.model, run.train
    shown = {"arch": model.arch, "norm": model.norm, "activation": model.activation, "optimizer": train.optimizer,
             "momentum": train.momentum, "batch_size": train.batch_size, "epochs": train.epochs,
             "warmup_epochs": train.warmup_epochs, "lr": train.effective_lr, "weight_decay": train.weight_decay,
             "l1": train.l1, "augment": train.augment, "schedule": train.schedule}
    if train.schedule == "step":
        shown |= {"step_epochs": train.step_epochs, "gamma": train.gamma}
    if model.arch == "resnet":
        shown["n"] = model.options["n"]
    return shown


def _lab(study: Study, name: str) -> dict:
    run = study.runs[name]
    assert run.study == "lab" and not run.replicate_of, name
    assert run.train.patience >= run.train.epochs, f"{name} may stop early, before the handout's 30 epochs"
    assert (run.train.train_images, run.train.val_images) == (0, 0), f"{name} trains on part of the split"
    return settings(run)


def test_lab1_base_is_the_handouts_simplenn_and_the_labs_baseline(full):
    assert _lab(full, "lab1-base") == LAB1
    assert full.runs_by_study()["lab"][0] == "lab1-base"  # the report compares every lab run with it


def test_lab1h_decays_the_lr_tenfold_every_10_epochs(full):
    assert _lab(full, "lab1h-decay") == {**LAB1, "schedule": "step", "step_epochs": 10, "gamma": 0.1}


def test_lab2a_adds_augmentation_and_nothing_else(full):
    assert _lab(full, "lab2a-aug") == LAB2A


def test_lab2b_i_adds_batchnorm_to_the_augmented_pipeline(full):
    assert _lab(full, "lab2b-bn") == {**LAB2A, "norm": "bn"}


def test_lab2b_ii_is_bn_or_not_at_lr_001_and_01_all_augmented(full):
    for name, norm, lr in (("lab2a-aug", "nn", 0.01), ("lab2b-bn", "bn", 0.01), ("lab2b-lr-1e-1", "nn", 0.1),
                           ("lab2b-bn-lr-1e-1", "bn", 0.1)):
        assert _lab(full, name) == {**LAB2A, "norm": norm, "lr": lr}, name


def test_lab2b_iii_is_swish_with_bn_at_lr_01(full):
    assert _lab(full, "lab2b-swish") == {**LAB2A, "norm": "bn", "lr": 0.1, "activation": "swish"}


def test_lab2c_i_sweeps_the_lr_with_augmentation_and_bn(full):
    sweep = {"lab2c-lr-1": 1.0, "lab2b-bn-lr-1e-1": 0.1, "lab2c-lr-5e-2": 0.05, "lab2b-bn": 0.01,
             "lab2c-lr-5e-3": 0.005, "lab2c-lr-1e-3": 0.001}
    for name, lr in sweep.items():
        assert _lab(full, name) == {**LAB2C, "lr": lr}, name


def test_lab2c_ii_sweeps_l2_at_lr_001_with_augmentation_and_bn(full):
    sweep = {"lab2c-l2-1e-2": 1e-2, "lab2c-l2-1e-3": 1e-3, "lab2b-bn": 1e-4, "lab2c-l2-1e-5": 1e-5,
             "lab2c-l2-0": 0.0}
    for name, weight_decay in sweep.items():
        assert _lab(full, name) == {**LAB2C, "weight_decay": weight_decay}, name


def test_lab2c_iii_replaces_l2_by_l1(full):
    shown = _lab(full, "lab2c-l1")
    assert shown["l1"] > 0
    assert shown == {**LAB2C, "weight_decay": 0.0, "l1": shown["l1"]}


def test_lab3a_compares_resnet20_and_simplenn_on_the_same_settings(full):
    resnet, simplenn = full.runs["lab3a-resnet20"], full.runs["lab3a-simplenn"]
    lab3 = {**HANDOUT, "norm": "bn", "augment": True, "lr": 0.1, "schedule": "step", "step_epochs": 10,
            "gamma": 0.1, "weight_decay": 1e-4, "l1": 0.0}
    assert settings(resnet) == {**lab3, "arch": "resnet", "n": 3}
    assert settings(simplenn) == lab3
    assert {key for _, key, _, _ in resnet.setting_differences(simplenn)} == {"arch", "options"}
    assert resnet.study == simplenn.study and resnet.train.patience >= resnet.train.epochs


def test_lab3b_trains_resnet20_within_200_epochs(full):
    run = full.runs["resnet20"]
    assert (run.model.arch, run.model.options["n"]) == ("resnet", 3)
    assert run.train.epochs <= 200


def test_the_quick_profile_trains_the_lab_runs_on_every_image():
    quick = _study("quick")
    lab = quick.runs_by_study()["lab"]
    assert "lab1-base" in lab
    assert {name: quick.runs[name].train.train_images for name in lab} == {name: 0 for name in lab}
