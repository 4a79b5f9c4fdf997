"""The scores of a run's best checkpoint on every split, its val and test predictions and its weight statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from cifarlab.analysis.profiler import profile_model
from cifarlab.config.sections import PerformanceConfig
from cifarlab.data.loader import ResidentDataset
from cifarlab.data.split import load_split
from cifarlab.io import atomic_path, write_json
from cifarlab.models.checkpoints import load_model
from cifarlab.train.inference import TrainedScorer, eval_batch_size_for
from cifarlab.train.optim import penalized_weights

SMALL_WEIGHT = 1e-3  # |w| below this counts as (nearly) zero in the weight statistics
WEIGHT_BINS = np.linspace(-0.25, 0.25, 101)  # histogram of conv and linear weights; outliers go to the ends


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, micro-F1 and macro-F1 (scikit-learn); micro-F1 equals accuracy for single-label data.

    Macro-F1 averages over all `num_classes` classes: a class absent from both labels and predictions
    (a small subset, a run that predicts one class) counts as 0 rather than being dropped, which would
    raise the average.
    """
    classes = np.arange(num_classes)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "micro_f1": float(f1_score(labels, predicted, labels=classes, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0))}


def weight_statistics(model: torch.nn.Module) -> tuple[dict[str, float], pd.DataFrame]:
    """The share of conv and linear weights with |w| < SMALL_WEIGHT, and their histogram (bin centre,
    count), which show what an L1 penalty does that L2 does not: many weights driven to (nearly) zero."""
    weights = torch.cat([p.detach().flatten().float().cpu() for p in penalized_weights(model)]).numpy()
    counts, edges = np.histogram(np.clip(weights, WEIGHT_BINS[0], WEIGHT_BINS[-1]), bins=WEIGHT_BINS)
    stats = {"count": int(weights.size), "fraction_small": float(np.mean(np.abs(weights) < SMALL_WEIGHT)),
             "small_threshold": SMALL_WEIGHT}
    return stats, pd.DataFrame({"weight": (edges[:-1] + edges[1:]) / 2, "count": counts})


def confusion_table(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The confusion matrix in long form (actual, predicted, count), every pair of classes present, zeros
    included, so that plots of two revisions draw the same square grid."""
    counts = pd.DataFrame(confusion_matrix(labels, predicted, labels=np.arange(len(class_names))),
                          index=pd.Index(class_names, name="actual"), columns=pd.Index(class_names, name="predicted"))
    return counts.stack().rename("count").reset_index()


def evaluate_run(model_path: Path, split_dir: Path, device: torch.device, *, metrics_path: Path,
                 predictions_path: Path, confusion_path: Path, weights_path: Path) -> dict[str, Any]:
    """Score a run's best checkpoint on train, val and test (accuracy, F1s, cross-entropy with its standard
    error, and the share of the most frequent class, which a model that learned nothing can reach); write
    its metrics, its val and test predictions (split, index in the split, predicted and actual class), its
    test confusion matrix and its weight histogram.

    Train and val are scored on the images the run trained on and selected its checkpoint with (a profile
    may slice them), without augmentation; test always in full. Every split is scored as validation was in
    training, under the run's `performance` (memory layout, autocast), so that val accuracy is the run's
    best_val_accuracy.
    """
    model, saved = load_model(model_path, device)
    split = load_split(split_dir)
    score = TrainedScorer(model, split.mean, split.std, PerformanceConfig(**saved["run"]["performance"]), device)
    batch_size = eval_batch_size_for(saved["run"]["train"]["eval_batch_size"], device)
    metrics: dict[str, Any] = {**saved["summary"]}
    train = saved["run"]["train"]
    seen_train, seen_val = slice(train["train_images"] or None), slice(train["val_images"] or None)
    num_classes = saved["run"]["model"]["num_classes"]
    names = np.asarray(split.class_names)
    test_true = test_pred = None
    predictions = []
    for name, images, labels in (("train", split.x_train[seen_train], split.y_train[seen_train]),
                                 ("val", split.x_val[seen_val], split.y_val[seen_val]),
                                 ("test", split.x_test, split.y_test)):
        output = score(ResidentDataset(images, labels, device), batch_size)
        predicted = output.logits.argmax(1).cpu().numpy()
        losses = F.cross_entropy(output.logits.float(), output.labels, reduction="none").double().cpu().numpy()
        metrics[name] = {**classification_metrics(labels, predicted, num_classes),
                         "loss": float(losses.mean()), "loss_se": float(losses.std(ddof=1) / np.sqrt(len(losses))),
                         "majority_rate": float(np.bincount(labels, minlength=num_classes).max() / len(labels)),
                         "images": len(labels)}
        test_true, test_pred = labels, predicted
        if name != "train":  # val and test: the per-image answers every interval of the report is taken from
            predictions.append(pd.DataFrame({"split": name, "index": np.arange(len(predicted)),
                                             "predicted": names[predicted], "actual": names[labels]}))
    metrics["weights"], histogram = weight_statistics(model)
    cost = profile_model(model)
    metrics["model"] = {"parameters": cost.parameters, "macs_per_image": cost.macs}
    write_json(metrics_path, metrics)
    with atomic_path(predictions_path) as tmp:  # test keeps the official test batch's order, val the split's
        pd.concat(predictions).to_csv(tmp, index=False)
    with atomic_path(confusion_path) as tmp:
        confusion_table(test_true, test_pred, list(split.class_names)).to_csv(tmp, index=False)
    with atomic_path(weights_path) as tmp:
        histogram.to_csv(tmp, index=False)
    return metrics
