"""cifarlab.analysis.evaluation: classification metrics, weight statistics and the confusion table on worked
examples, and a run's best checkpoint scored as training validated it, its summary figures against hand
computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cifarlab.analysis.evaluation import classification_metrics, confusion_table, evaluate_run, weight_statistics
from cifarlab.data.split import save_split
from cifarlab.models.checkpoints import save_model
from cifarlab.train import inference, loop
from cifarlab.train.loop import train_run
from cifarlab.train.resume import TrainState

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


# --- evaluate_run against the run's own validation ----------------------------------------------------------


def _recording_predict(module, calls: list[torch.Tensor], monkeypatch) -> None:
    """Record the logits of every `predict` call `module` makes."""
    real = module.predict

    def recorded(*args, **kwargs):
        output = real(*args, **kwargs)
        calls.append(output.logits.clone())
        return output

    monkeypatch.setattr(module, "predict", recorded)


def _bf16_everywhere(performance, device):
    return torch.bfloat16


def _train_and_evaluate(run, split, device: torch.device, tmp_path, monkeypatch
                        ) -> tuple[TrainState, list[torch.Tensor], list[torch.Tensor], dict]:
    """Train `run` on `device`, save its model as the train stage does and evaluate it as the evaluate stage
    does; return the final state, the logits of each validation in training (before training, then after each
    epoch), those of each split in evaluation (train, val, test) and the metrics."""
    validated: list[torch.Tensor] = []
    evaluated: list[torch.Tensor] = []
    _recording_predict(loop, validated, monkeypatch)
    _recording_predict(inference, evaluated, monkeypatch)
    result = train_run(run, split, device, resume_path=tmp_path / "resume.pt", on_epoch=lambda state: None)
    state = result.state
    save_model(tmp_path / "model.pt", result.model, run, {"best_val_accuracy": state.best_accuracy},
               {"mean": list(split.mean), "std": list(split.std)})
    save_split(split, tmp_path / "split", seed=0, val_fraction=0.25)
    metrics = evaluate_run(tmp_path / "model.pt", tmp_path / "split", device, metrics_path=tmp_path / "metrics.json",
                           predictions_path=tmp_path / "predictions.csv", confusion_path=tmp_path / "confusion.csv",
                           weights_path=tmp_path / "weights.csv")
    return state, validated, evaluated, metrics


def _assert_val_scored_as_validated(state: TrainState, validated: list[torch.Tensor], evaluated: list[torch.Tensor],
                                    metrics: dict, dtype: torch.dtype) -> None:
    best_validation, val = validated[state.best_epoch], evaluated[1]
    assert val.dtype == best_validation.dtype == dtype
    # The same weights, layout, precision and batches give the same bits; NCHW instead of channels_last
    # already changes the last bits of the logits.
    assert torch.equal(val, best_validation), "evaluate's val logits differ from the best epoch's validation"
    images = metrics["val"]["images"]
    assert round(metrics["val"]["accuracy"] * images) == round(state.best_accuracy * images)
    assert metrics["val"]["accuracy"] == pytest.approx(state.best_accuracy, abs=1e-6)


@pytest.mark.parametrize("autocast", [False, True], ids=["cpu", "bf16-autocast-as-on-cuda"])
def test_evaluate_scores_val_as_training_validated_it_so_val_accuracy_is_best_val_accuracy(
        tiny_run, tiny_split, tmp_path, monkeypatch, autocast):
    if autocast:  # bf16 autocast is on only on CUDA; here the CPU stands in for it, in training and evaluation alike
        monkeypatch.setattr(loop, "amp_dtype_for", _bf16_everywhere)
        monkeypatch.setattr(inference, "amp_dtype_for", _bf16_everywhere)
    run = tiny_run()
    assert run.performance.channels_last  # validation ran channels_last, so evaluation must too
    state, validated, evaluated, metrics = _train_and_evaluate(run, tiny_split, CPU, tmp_path, monkeypatch)
    _assert_val_scored_as_validated(state, validated, evaluated, metrics,
                                    torch.bfloat16 if autocast else torch.float32)


@pytest.mark.gpu
def test_evaluate_on_cuda_scores_val_in_bf16_channels_last_as_training_validated_it(tiny_run, tiny_split, tmp_path,
                                                                                  monkeypatch):
    run = tiny_run()
    assert run.performance.bf16 and run.performance.channels_last
    state, validated, evaluated, metrics = _train_and_evaluate(run, tiny_split, torch.device("cuda"), tmp_path,
                                                               monkeypatch)
    _assert_val_scored_as_validated(state, validated, evaluated, metrics, torch.bfloat16)
    for split in ("train", "val", "test"):
        assert 0 <= metrics[split]["accuracy"] <= 1 and np.isfinite(metrics[split]["loss"])


def test_the_summary_figures_and_per_image_answers_equal_hand_computations(tiny_run, tiny_split, tmp_path,
                                                                           monkeypatch):
    run = tiny_run(profile={"train_images": 20, "val_images": 6})  # each split scored on what the run used
    _, _, evaluated, metrics = _train_and_evaluate(run, tiny_split, CPU, tmp_path, monkeypatch)
    splits = {"train": tiny_split.y_train[:20], "val": tiny_split.y_val[:6], "test": tiny_split.y_test}
    for (split, labels), logits in zip(splits.items(), evaluated):
        losses = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels), reduction="none").double()
        n = len(labels)
        assert metrics[split]["images"] == n
        assert metrics[split]["accuracy"] == pytest.approx(float((logits.argmax(1).numpy() == labels).mean()))
        assert metrics[split]["loss"] == pytest.approx(float(losses.mean()), rel=1e-6)
        assert metrics[split]["loss_se"] == pytest.approx(float(losses.std()) / n ** 0.5, rel=1e-6)
        assert metrics[split]["majority_rate"] == pytest.approx(max(np.bincount(labels)) / n)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    answers = pd.read_csv(tmp_path / "predictions.csv")
    assert list(answers.columns) == ["split", "index", "predicted", "actual"]
    assert answers["split"].unique().tolist() == ["val", "test"]
    names = np.asarray(tiny_split.class_names)
    for split, logits in (("val", evaluated[1]), ("test", evaluated[2])):
        rows, labels = answers[answers["split"] == split], splits[split]
        assert rows["index"].tolist() == list(range(len(labels)))
        assert rows["predicted"].tolist() == names[logits.argmax(1).numpy()].tolist()
        assert rows["actual"].tolist() == names[labels].tolist()
        assert (rows["predicted"] == rows["actual"]).mean() == pytest.approx(metrics[split]["accuracy"])
    confusion = pd.read_csv(tmp_path / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted", "count"]
    assert confusion["count"].sum() == len(splits["test"])
    model = torch.load(tmp_path / "model.pt", weights_only=False)
    state = model["model_state"]
    weights = torch.cat([v.flatten() for k, v in state.items() if k.endswith("weight") and v.dim() > 1])
    assert metrics["weights"]["fraction_small"] == pytest.approx(float((weights.abs() < 1e-3).double().mean()))
    assert metrics["weights"]["count"] == weights.numel()
    histogram = pd.read_csv(tmp_path / "weights.csv")
    assert list(histogram.columns) == ["weight", "count"] and histogram["count"].sum() == weights.numel()
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert metrics["model"]["parameters"] == sum(v.numel() for k, v in state.items() if not k.endswith(buffers))
    assert metrics["model"]["macs_per_image"] > 0


# --- weight statistics and the confusion table, worked by hand -----------------------------------------------


def test_weight_statistics_count_weights_strictly_below_the_threshold_and_bin_outliers_at_the_ends():
    layer = torch.nn.Linear(4, 2, bias=True)
    with torch.no_grad():  # float32, as trained: 1e-3 is exactly the threshold, so it is not small
        layer.weight.copy_(torch.tensor([[-0.3, -0.25, -0.001, 0.0], [0.0005, 0.001, 0.1025, 0.3]]))
        layer.bias.fill_(0.0)  # a bias is not a penalized weight: not counted
    stats, histogram = weight_statistics(layer)
    assert stats == {"count": 8, "fraction_small": 0.25, "small_threshold": 1e-3}
    assert len(histogram) == 100 and histogram["count"].sum() == 8
    # bins of 0.005 from -0.25: -0.3 and -0.25 in the first, -0.001 in bin 49, 0, 0.0005 and 0.001 in bin 50,
    # 0.1025 in bin 70 and 0.3 in the last
    assert {i: c for i, c in enumerate(histogram["count"]) if c} == {0: 2, 49: 1, 50: 3, 70: 1, 99: 1}
    assert histogram["weight"].iloc[[0, 50, 99]].tolist() == pytest.approx([-0.2475, 0.0025, 0.2475])


def test_the_confusion_table_lists_every_pair_of_classes_with_zeros_in_long_form():
    table = confusion_table(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), ["a", "b", "c", "d"])
    assert list(table.columns) == ["actual", "predicted", "count"] and len(table) == 16
    counts = {(a, p): c for a, p, c in table.itertuples(index=False) if c}
    assert counts == {("a", "a"): 1, ("a", "b"): 1, ("b", "b"): 1, ("c", "a"): 1}
    assert table.iloc[:4]["predicted"].tolist() == ["a", "b", "c", "d"] and set(table.iloc[:4]["actual"]) == {"a"}
