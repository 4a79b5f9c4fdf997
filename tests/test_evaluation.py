"""cifarlab.analysis.evaluation: classification metrics on worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from cifarlab.analysis.evaluation import classification_metrics

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
