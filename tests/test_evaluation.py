"""cifarlab.evaluation: metrics on worked examples, Predictions against numpy/torch, predict() on a tiny ResNet."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifarlab.evaluation import classification_metrics
from cifarlab.inference import Predictions, eval_batch_size_for, predict
from cifarlab.loader import Normalizer, ResidentDataset
from cifarlab.models.resnet import CifarResNet

CPU = torch.device("cpu")


# --- classification_metrics --------------------------------------------------------------------------------


def test_classification_metrics_on_a_worked_example():
    labels = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    # Correct: positions 0, 2, 3 -> accuracy 3/5 = 0.6; micro-F1 pools all classes and equals it.
    # Class 0: TP 1 (pos 0), FP 1 (pos 4), FN 1 (pos 1) -> P 1/2, R 1/2, F1 0.5.
    # Class 1: TP 2 (pos 2, 3), FP 1 (pos 1), FN 0 -> P 2/3, R 1, F1 2 * (2/3) / (5/3) = 0.8.
    # Class 2: TP 0, FN 1 (pos 4), never predicted -> F1 0.
    metrics = classification_metrics(labels, predicted, num_classes=3)
    assert metrics == pytest.approx({"accuracy": 0.6, "micro_f1": 0.6, "macro_f1": (0.5 + 0.8 + 0.0) / 3})
    assert all(type(v) is float for v in metrics.values())


def test_classification_metrics_are_all_one_for_a_perfect_prediction_of_every_class():
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 0, 7, 8])
    assert classification_metrics(labels, labels.copy(), num_classes=10) == {
        "accuracy": 1.0, "micro_f1": 1.0, "macro_f1": 1.0}


def test_classification_metrics_are_all_zero_when_every_prediction_is_wrong():
    labels = np.array([0, 1, 2, 0])
    predicted = np.array([1, 2, 0, 2])
    assert classification_metrics(labels, predicted, num_classes=3) == {
        "accuracy": 0.0, "micro_f1": 0.0, "macro_f1": 0.0}


def test_macro_f1_averages_over_every_class_counting_one_missing_from_labels_and_predictions_as_zero():
    labels = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    # Class 0: TP 1, FN 1 -> P 1, R 1/2, F1 2/3. Class 1: TP 2, FP 1 -> P 2/3, R 1, F1 0.8.
    # Class 2 occurs in neither: F1 0, and it still counts, so the mean is over 3 classes, not 2.
    metrics = classification_metrics(labels, predicted, num_classes=3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)
    assert metrics["accuracy"] == metrics["micro_f1"] == pytest.approx(0.75)


def test_macro_f1_of_a_collapsed_run_on_a_subset_counts_every_class_of_the_model():
    labels = np.array([0, 1, 0, 1])
    predicted = np.zeros(4, dtype=int)  # predicts one class only
    # Class 0: TP 2, FP 2 -> P 1/2, R 1, F1 2/3; classes 1, 2 and 3: F1 0; the mean is over 4 classes.
    assert classification_metrics(labels, predicted, num_classes=4)["macro_f1"] == pytest.approx((2 / 3) / 4)


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
