"""cifarlab.train.inference: Predictions' loss, error and feature quantiles against numpy and torch, and
predict() on a tiny ResNet against the model called directly in eval mode."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.models.resnet import CifarResNet
from cifarlab.train.inference import Predictions, eval_batch_size_for, predict

CPU = torch.device("cpu")


# --- Predictions -------------------------------------------------------------------------------------------


def test_loss_and_error_equal_cross_entropy_and_a_hand_counted_error_rate():
    logits = torch.tensor([[2.0, 1.0, 0.0],  # argmax 0, label 0: right
                           [0.5, 0.1, 3.0],  # argmax 2, label 1: wrong
                           [0.0, 4.0, 1.0],  # argmax 1, label 1: right
                           [1.0, 0.0, -1.0]])  # argmax 0, label 0: right
    labels = torch.tensor([0, 1, 1, 0])
    loss, error = Predictions(logits, torch.zeros(4, 64), labels).loss_and_error()
    assert isinstance(loss, float) and isinstance(error, float)
    assert error == pytest.approx(1 / 4)  # one wrong of four
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    # The same loss from its definition: mean over samples of logsumexp(row) - row[label].
    by_hand = np.mean([math.log(sum(math.exp(v) for v in row)) - row[y]
                       for row, y in zip(logits.tolist(), labels.tolist())])
    assert loss == pytest.approx(by_hand, rel=1e-6)


def test_loss_is_computed_in_float32_for_half_precision_logits():
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    loss, _ = Predictions(logits, torch.zeros(6, 64), labels).loss_and_error()
    assert loss == pytest.approx(F.cross_entropy(logits.float(), labels).item(), rel=1e-6)


def test_feature_quantiles_equal_numpy_quantiles_of_all_feature_values():
    features = torch.randn(7, 64, generator=torch.Generator().manual_seed(2)).relu()  # many exact zeros, like ReLU
    quantiles = Predictions(torch.zeros(7, 10), features, torch.zeros(7, dtype=torch.long)).feature_quantiles()
    assert list(quantiles) == ["q01", "q20", "q80", "q99"]
    expected = np.quantile(features.numpy().astype(np.float64).ravel(), [0.01, 0.20, 0.80, 0.99])
    assert list(quantiles.values()) == pytest.approx(expected.tolist(), rel=1e-6, abs=1e-7)
    assert all(type(v) is float for v in quantiles.values())


# --- predict -----------------------------------------------------------------------------------------------


def _tiny_setup() -> tuple[CifarResNet, ResidentDataset, Normalizer]:
    torch.manual_seed(0)
    model = CifarResNet(n=1)  # default norm: batch norm, so train and eval mode give different outputs
    images = np.random.default_rng(0).integers(0, 256, size=(5, 3, 32, 32), dtype=np.uint8)
    dataset = ResidentDataset(images, np.array([4, 0, 9, 1, 7]), CPU)
    normalize = Normalizer((0.49, 0.48, 0.45), (0.25, 0.24, 0.26), CPU)
    with torch.no_grad():  # one training pass, so the running statistics are not the trivial (0, 1)
        model.train()(normalize(dataset.images))
    return model, dataset, normalize


@pytest.mark.parametrize("training", [True, False])
def test_predict_leaves_the_model_in_the_mode_it_found(training):
    model, dataset, normalize = _tiny_setup()
    model.train(training)
    predict(model, dataset, normalize, batch_size=2)
    assert all(m.training == training for m in model.modules())


def test_predict_gives_eval_mode_logits_and_features_of_every_image_in_order():
    model, dataset, normalize = _tiny_setup()
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = normalize(dataset.images)  # all 5 at once: batching must not change eval outputs
        expected_logits, expected_features = reference(x), reference.forward_features(x)
        train_mode_logits = copy.deepcopy(model).train()(x)
    out = predict(model.train(), dataset, normalize, batch_size=2)  # batches of 2, 2, 1
    assert out.logits.shape == (5, 10) and out.features.shape == (5, 64)
    torch.testing.assert_close(out.logits, expected_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.features, expected_features, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.logits, train_mode_logits, atol=1e-3)  # the check can tell the modes apart
    assert out.labels.tolist() == [4, 0, 9, 1, 7]
    assert not out.logits.requires_grad


def test_predict_leaves_batch_norm_running_statistics_untouched():
    model, dataset, normalize = _tiny_setup()
    before = copy.deepcopy(model.state_dict())
    predict(model, dataset, normalize, batch_size=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_eval_batch_size_zero_is_chosen_for_the_device_and_a_set_size_is_kept():
    assert eval_batch_size_for(0, CPU) == 128
    assert eval_batch_size_for(0, torch.device("cuda")) == 1024
    assert eval_batch_size_for(64, CPU) == 64
    assert eval_batch_size_for(64, torch.device("cuda")) == 64
