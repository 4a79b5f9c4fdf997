"""The training step: forward, loss and penalty, backward, optimizer, schedule and after-step hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config.sections import PerformanceConfig
from cifarlab.train.optim import after_step_hooks


class EpochTotals(NamedTuple):
    """What `Stepper.run` measured over its batches."""

    loss_sum: float  # the summed per-image cross-entropy (without any penalty)
    correct: float  # correct predictions
    seen: int  # images
    mean_lr: float  # the base ("weights" group) lr averaged over the optimizer steps taken


class Stepper:
    """The training step: forward and loss (optionally autocast and compiled) plus `penalty`, backward,
    optimizer, schedule and the model's after-step hooks; shared by the training loop and the benchmark.

    Losses and correct counts accumulate on the device and `run` reads them once at its end, so the
    host never waits for the device inside an epoch.

    Compiled, the forward is traced once, for static shapes: the batch size of its first call, which an
    epoch's full batches share. A batch of another size, an epoch's smaller last batch (40,000 images in
    batches of 128 leave 64), runs the same step eagerly, since tracing it would cost a second compilation
    and, under CUDA graphs, a second recorded graph (and left to dynamo, it would trace a graph for any
    batch size that every later batch runs). So compiled runs train on every image, as eager runs do.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
                 device: torch.device, channels_last: bool = False, amp_dtype: torch.dtype | None = None,
                 compile_mode: str = "none", penalty: Callable[[], torch.Tensor] | None = None) -> None:
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optimizer, self.scheduler, self.penalty = optimizer, scheduler, penalty
        self.after_step = after_step_hooks(model)
        self.device, self.channels_last, self.amp_dtype = device, channels_last, amp_dtype
        self.compiled = compile_mode != "none"
        self.forward = (torch.compile(self._forward, mode=compile_mode, dynamic=False) if self.compiled
                        else self._forward)
        self.static_batch: int | None = None  # the batch size the compiled forward was traced for

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context of this step, for evaluation between epochs too."""
        return autocast_for(self.device, self.amp_dtype)

    def forward_for(self, batch_size: int) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The compiled forward for the batch size it was traced for (the first it saw), else the eager one."""
        if self.compiled and self.static_batch is None:
            self.static_batch = batch_size
        return self.forward if batch_size == self.static_batch else self._forward

    def _forward(self, images: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective to minimise, cross-entropy, logits)."""
        with self.autocast():
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        return (loss if self.penalty is None else loss + self.penalty()), loss, logits

    def run(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EpochTotals:
        """Train on every batch; return the summed loss, correct predictions, images seen and mean lr."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = steps = 0
        lr_sum = 0.0
        for images, labels in batches:
            objective, loss, logits = self.forward_for(labels.numel())(images, labels)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            lr_sum += self.optimizer.param_groups[0]["lr"]  # a host float: what this step uses
            steps += 1
            self.optimizer.step()
            self.scheduler.step()
            for hook in self.after_step:
                hook()
            loss_sum += loss.detach() * labels.numel()
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += labels.numel()
        total_loss, total_correct = torch.stack([loss_sum, correct]).tolist()  # the one host sync
        return EpochTotals(total_loss, total_correct, seen, lr_sum / max(steps, 1))


def autocast_for(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `amp_dtype` on `device`, or full precision for None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def amp_dtype_for(performance: PerformanceConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast where it pays (CUDA) and the params ask for it; full precision elsewhere."""
    return torch.bfloat16 if performance.bf16 and device.type == "cuda" else None
