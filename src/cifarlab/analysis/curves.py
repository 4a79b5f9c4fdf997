"""Figures of a training curve that claims about how runs train compare (overfitting, noise, plateaus,
speed), each from a run's per-epoch history (index: epoch; the training loop's columns)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

WINDOW = 3  # epochs averaged at each end of a gain, so that one noisy epoch does not decide it
PLATEAU_EPOCH = 10  # "plateaus after about 10 epochs"


def _window_mean(series: pd.Series, last_epoch: int) -> float:
    return float(series.loc[last_epoch - WINDOW + 1:last_epoch].mean())


def overfit(history: pd.DataFrame) -> float:
    """Training accuracy's gain over the second half of the run minus validation accuracy's: positive when
    training accuracy still rises while validation has stopped (each end a mean of WINDOW epochs)."""
    last = int(history.index.max())
    middle = last // 2
    if middle < WINDOW:
        return math.nan
    train, val = 1 - history["train_error"], 1 - history["val_error"]
    return ((_window_mean(train, last) - _window_mean(train, middle))
            - (_window_mean(val, last) - _window_mean(val, middle)))


def val_fluctuation(history: pd.DataFrame) -> float:
    """The standard deviation of validation accuracy's epoch-to-epoch change: how much the curve jitters."""
    changes = np.diff((1 - history["val_error"]).to_numpy())
    return float(np.std(changes, ddof=1)) if changes.size >= 2 else math.nan


def val_gain_after(history: pd.DataFrame, epoch: int = PLATEAU_EPOCH) -> float:
    """The best validation accuracy after `epoch` minus that at `epoch`: near 0 for a plateau."""
    val = 1 - history["val_error"]
    if epoch not in val.index or val.index.max() <= epoch:
        return math.nan
    return float(val.loc[epoch + 1:].max() - val.loc[epoch])


def train_loss_mean(history: pd.DataFrame) -> float:
    """The mean training loss over the run's epochs (the area under its curve per epoch): lower for a run
    that converges faster over the same epochs."""
    return float(history["train_loss"].mean())


CURVE_METRICS = {"curve.overfit": overfit, "curve.val_fluctuation": val_fluctuation,
                 "curve.val_gain_after_10": val_gain_after, "curve.train_loss_mean": train_loss_mean}


def curve_metric(history: pd.DataFrame, metric: str) -> float:
    return CURVE_METRICS[metric](history)
