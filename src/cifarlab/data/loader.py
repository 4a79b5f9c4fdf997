"""The training input path: the split lives on the device as uint8, augmentation is batched tensor ops.

Per epoch, the permutation, crop offsets and flips are drawn on the CPU from a generator seeded by
(seed, epoch), then copied to the device once. So an epoch's data is a pure function of the seed and the
epoch number: CPU and GPU see identical batches, and a resumed run continues with the same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

CROP_PADDING = 4
IMAGE_SIZE = 32


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's randomness: image order, crop offsets in [0, 2*padding], flip flags."""

    order: torch.Tensor  # (N,) int64
    dy: torch.Tensor  # (N,) int64, row offset into the padded image
    dx: torch.Tensor  # (N,) int64
    flip: torch.Tensor  # (N,) bool

    @staticmethod
    def draw(n: int, seed: int, epoch: int, padding: int = CROP_PADDING) -> "EpochPlan":
        gen = epoch_generator(seed, epoch)
        return EpochPlan(order=torch.randperm(n, generator=gen),
                         dy=torch.randint(0, 2 * padding + 1, (n,), generator=gen),
                         dx=torch.randint(0, 2 * padding + 1, (n,), generator=gen),
                         flip=torch.rand(n, generator=gen) < 0.5)

    def to(self, device: torch.device) -> "EpochPlan":
        return EpochPlan(*(t.to(device, non_blocking=True) for t in (self.order, self.dy, self.dx, self.flip)))


def crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              padding: int = CROP_PADDING) -> torch.Tensor:
    """Random-crop with zero padding and horizontal flip, per sample, for a whole batch at once.

    Equivalent to torchvision's RandomCrop(32, padding=4) then RandomHorizontalFlip() on each image
    (zero padding in pixel space, before normalization), as one gather instead of a loop over images.
    """
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    rows = dy[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = torch.arange(width, device=images.device)
    # Flipping the crop window's column order flips the image: one gather does both.
    cols = torch.where(flip[:, None], width - 1 - cols, cols) + dx[:, None]  # (B, W)
    flat = padded.reshape(batch, channels, -1)  # (B, C, (H+2p)*(W+2p))
    index = (rows[:, :, None] * (width + 2 * padding) + cols[:, None, :]).reshape(batch, 1, -1)  # (B, 1, H*W)
    return flat.gather(2, index.expand(batch, channels, -1)).reshape(batch, channels, height, width)


class Normalizer:
    """uint8 NCHW -> float, standardised per channel with the train split's statistics."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool = False) -> None:
        # Folding /255 into the affine map makes normalization one multiply-add per element.
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, images.float(), self.scale)
        return out.contiguous(memory_format=self.memory_format)


class ResidentDataset:
    """A split held on the device: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, device: torch.device) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def train_batches(self, batch_size: int, seed: int, epoch: int, normalize: Normalizer, *,
                      augment: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, normalized batches for one epoch, randomly cropped and flipped if `augment`; the last
        batch may be smaller. The order is the same with augmentation on or off."""
        plan = EpochPlan.draw(len(self), seed, epoch).to(self.device)
        for start in range(0, len(self), batch_size):
            window = slice(start, start + batch_size)
            index = plan.order[window]
            images = self.images[index]
            if augment:
                images = crop_flip(images, plan.dy[window], plan.dx[window], plan.flip[window])
            yield normalize(images), self.labels[index]

    def eval_batches(self, batch_size: int,
                     normalize: Normalizer) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches in order, without augmentation."""
        for start in range(0, len(self), batch_size):
            yield normalize(self.images[start:start + batch_size]), self.labels[start:start + batch_size]
