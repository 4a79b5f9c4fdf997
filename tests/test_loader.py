"""cifarlab.data.loader: batched crop/flip against a per-image reference and against torchvision, the epoch
plan, the resident dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2, chi2_contingency, chisquare

from cifarlab.data.loader import EpochPlan, Normalizer, ResidentDataset, crop_flip

CPU = torch.device("cpu")
MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)


def _uint8_images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _reference_crop_flip(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """One image, the torchvision way: zero-pad by 4, take the 32x32 window at (dy, dx), then mirror."""
    padded = F.pad(image, (4, 4, 4, 4))  # (C, 40, 40), zeros
    crop = padded[:, dy:dy + 32, dx:dx + 32]
    return crop.flip(-1) if flip else crop


def _reference_normalize(images: torch.Tensor) -> torch.Tensor:
    """(x / 255 - mean) / std per channel, in float64, one channel at a time."""
    x = images.double() / 255
    return torch.stack([(x[:, c] - MEAN[c]) / STD[c] for c in range(3)], dim=1)


# --- crop_flip ---------------------------------------------------------------------------------------------


def test_crop_flip_matches_a_per_image_pad_slice_flip_reference():
    n = 16
    images = _uint8_images(n)
    g = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 9, (n,), generator=g)
    dx = torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    # The extreme offsets, both corners, each with and without a flip.
    corners_y, corners_x = torch.tensor([0, 8, 0, 8]), torch.tensor([0, 8, 8, 0])
    dy[:4], dx[:4], flip[:4] = corners_y, corners_x, torch.tensor([0, 1, 0, 1]).bool()
    dy[4:8], dx[4:8], flip[4:8] = corners_y, corners_x, torch.tensor([1, 0, 1, 0]).bool()
    out = crop_flip(images, dy, dx, flip)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for i in range(n):
        expected = _reference_crop_flip(images[i], int(dy[i]), int(dx[i]), bool(flip[i]))
        assert torch.equal(out[i], expected), f"image {i}: dy={int(dy[i])} dx={int(dx[i])} flip={bool(flip[i])}"


def test_crop_flip_at_the_centre_without_flip_is_the_identity_and_with_flip_a_mirror():
    images = _uint8_images(2)
    centre = torch.full((2,), 4)
    assert torch.equal(crop_flip(images, centre, centre, torch.tensor([False, False])), images)
    assert torch.equal(crop_flip(images, centre, centre, torch.tensor([True, True])), images.flip(-1))


def test_crop_flip_at_offset_zero_shifts_in_four_rows_and_columns_of_zeros():
    images = torch.full((1, 3, 32, 32), 7, dtype=torch.uint8)
    out = crop_flip(images, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert (out[:, :, :4, :] == 0).all() and (out[:, :, :, :4] == 0).all()
    assert (out[:, :, 4:, 4:] == 7).all()


def test_crop_flip_gives_the_same_result_for_a_channels_last_batch():
    images = _uint8_images(4)
    dy, dx, flip = torch.tensor([0, 3, 8, 5]), torch.tensor([8, 1, 0, 4]), torch.tensor([True, False, True, False])
    expected = crop_flip(images, dy, dx, flip)
    assert torch.equal(crop_flip(images.contiguous(memory_format=torch.channels_last), dy, dx, flip), expected)


# --- crop_flip and EpochPlan against torchvision's RandomCrop and RandomHorizontalFlip -------------------

DRAWS = 3000
CONFIDENCE = 0.999  # chi-square tests reject above this quantile; the seeds are fixed, so never flaky


def _position_image() -> torch.Tensor:
    """A (3, 32, 32) uint8 image whose pixels say where they are: channel 0 = row + 1, channel 1 =
    column + 1, channel 2 = 255. Every real pixel is nonzero, so zero padding is told apart."""
    index = torch.arange(32)
    return torch.stack([(index[:, None] + 1).expand(32, 32), (index[None, :] + 1).expand(32, 32),
                        torch.full((32, 32), 255)]).to(torch.uint8)


def _recover(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dy, dx, flip) of each crop of `_position_image`, read off the centre pixels (never padding).

    Output row 16 is padded row dy + 16, i.e. image row dy + 12, so channel 0 there is dy + 13. Column 16
    is the crop's column 16 (image column dx + 12) or, flipped, its column 15 (image column dx + 11).
    """
    rows, cols = crops[:, 0].long(), crops[:, 1].long()
    flip = cols[:, 16, 15] > cols[:, 16, 16]
    return rows[:, 16, 16] - 13, cols[:, 16, 16] - 13 + flip.long(), flip


def _reference_crops(image: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """`_reference_crop_flip` of `image` for each (dy, dx, flip): the 162 possible crops made one at a time,
    then picked per draw."""
    table = torch.stack([_reference_crop_flip(image, y, x, f)
                         for y in range(9) for x in range(9) for f in (False, True)])
    return table[(dy * 9 + dx) * 2 + flip.long()]


def _torchvision_draws(image: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    from torchvision import transforms

    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator
        torch.manual_seed(seed)
        return torch.stack([augment(image) for _ in range(n)])


def _cell_counts(dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> dict[str, np.ndarray]:
    return {"offsets": np.bincount((dy * 9 + dx).numpy(), minlength=81),
            "flips": np.bincount(flip.long().numpy(), minlength=2),
            "joint": np.bincount(((dy * 9 + dx) * 2 + flip.long()).numpy(), minlength=162)}


def _assert_offsets_span_0_to_8(source: str, dy: torch.Tensor, dx: torch.Tensor) -> None:
    for offset in (dy, dx):
        assert offset.min() == 0 and offset.max() == 8, source  # exactly the 9 offsets 0..8


def test_crop_flip_with_epoch_plan_is_distributed_like_torchvision_randomcrop_and_flip():
    image = _position_image()

    theirs = _torchvision_draws(image, DRAWS, seed=0)
    t_dy, t_dx, t_flip = _recover(theirs)
    _assert_offsets_span_0_to_8("torchvision", t_dy, t_dx)
    # The decoding is right, and torchvision's transform is exactly pad + slice + flip.
    assert torch.equal(theirs, _reference_crops(image, t_dy, t_dx, t_flip))

    plan = EpochPlan.draw(DRAWS, seed=0, epoch=1)
    ours = crop_flip(image.expand(DRAWS, -1, -1, -1)[plan.order], plan.dy, plan.dx, plan.flip)
    o_dy, o_dx, o_flip = _recover(ours)
    _assert_offsets_span_0_to_8("crop_flip", o_dy, o_dx)
    # crop_flip applied exactly the plan's crop and flip to every image.
    assert torch.equal(o_dy, plan.dy) and torch.equal(o_dx, plan.dx) and torch.equal(o_flip, plan.flip)
    assert torch.equal(ours, _reference_crops(image, o_dy, o_dx, o_flip))

    counts = {"torchvision": _cell_counts(t_dy, t_dx, t_flip), "crop_flip": _cell_counts(o_dy, o_dx, o_flip)}
    for source, cells in counts.items():
        # Uniform over the 9x9 offsets, fair flips, and the two independent (joint uniform over 162 cells).
        for kind, observed in cells.items():
            statistic = chisquare(observed).statistic
            assert statistic < chi2.ppf(CONFIDENCE, len(observed) - 1), (source, kind, statistic)
    for kind in ("offsets", "flips", "joint"):
        # Two-sample: the two pipelines' cell counts come from the same distribution.
        test = chi2_contingency(np.stack([counts["torchvision"][kind], counts["crop_flip"][kind]]), correction=False)
        assert test.statistic < chi2.ppf(CONFIDENCE, test.dof), (kind, test.statistic)


# --- EpochPlan ---------------------------------------------------------------------------------------------


def test_epoch_plan_is_a_pure_function_of_seed_and_epoch():
    a, b = EpochPlan.draw(100, seed=5, epoch=2), EpochPlan.draw(100, seed=5, epoch=2)
    for name in ("order", "dy", "dx", "flip"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize(("seed", "epoch"), [(5, 3), (6, 2), (0, 0)])
def test_epoch_plan_changes_with_the_epoch_or_the_seed(seed, epoch):
    base, other = EpochPlan.draw(100, seed=5, epoch=2), EpochPlan.draw(100, seed=seed, epoch=epoch)
    for name in ("order", "dy", "dx", "flip"):
        assert not torch.equal(getattr(base, name), getattr(other, name)), name


def test_epoch_plan_order_is_a_permutation_and_offsets_lie_in_0_to_8():
    plan = EpochPlan.draw(1000, seed=1, epoch=0)
    assert plan.order.dtype == torch.int64
    assert torch.equal(plan.order.sort().values, torch.arange(1000))
    assert not torch.equal(plan.order, torch.arange(1000))
    for offsets in (plan.dy, plan.dx):
        assert offsets.min() == 0 and offsets.max() == 8
    assert plan.flip.dtype == torch.bool


def test_epoch_plan_offsets_are_uniform_on_0_to_8_and_independent_and_flips_fair():
    n = 20_000
    plan = EpochPlan.draw(n, seed=0, epoch=0)
    # Pearson's chi-square against uniform counts; the 0.999 quantile keeps a correct sampler passing
    # (the plan is seeded, so the outcome is fixed) and fails a skewed or truncated range by far.
    for offsets in (plan.dy, plan.dx):
        counts = np.bincount(offsets.numpy(), minlength=9)
        assert len(counts) == 9
        expected = n / 9
        assert ((counts - expected) ** 2 / expected).sum() < chi2.ppf(0.999, df=8)
        assert np.all(np.abs(counts / n - 1 / 9) < 0.02)
    # dy and dx drawn independently: the 81 joint cells are uniform too (fails if dx copies dy).
    joint = np.bincount((plan.dy * 9 + plan.dx).numpy(), minlength=81)
    expected = n / 81
    assert ((joint - expected) ** 2 / expected).sum() < chi2.ppf(0.999, df=80)
    assert abs(plan.flip.float().mean().item() - 0.5) < 0.02


# --- Normalizer --------------------------------------------------------------------------------------------


def test_normalizer_standardises_each_channel_of_uint8_images():
    images = _uint8_images(3, size=5)
    images[0, :, 0, 0], images[0, :, 0, 1] = 0, 255  # the ends of the range
    out = Normalizer(MEAN, STD, CPU)(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out.double(), _reference_normalize(images), atol=1e-5, rtol=1e-5)
    # A worked pixel: 255 in channel 0 -> (1 - 0.49) / 0.25 = 2.04; 0 in channel 2 -> -0.45 / 0.26.
    assert out[0, 0, 0, 1].item() == pytest.approx(2.04, abs=1e-5)
    assert out[0, 2, 0, 0].item() == pytest.approx(-0.45 / 0.26, abs=1e-5)


def test_normalizer_channels_last_gives_a_channels_last_tensor_with_the_same_values():
    images = _uint8_images(3, size=6)
    out = Normalizer(MEAN, STD, CPU, channels_last=True)(images)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    torch.testing.assert_close(out.double(), _reference_normalize(images), atol=1e-5, rtol=1e-5)
    assert Normalizer(MEAN, STD, CPU)(images).is_contiguous()


# --- ResidentDataset ---------------------------------------------------------------------------------------


def _dataset(n: int = 10) -> tuple[ResidentDataset, np.ndarray]:
    images = _uint8_images(n, seed=4).numpy()
    return ResidentDataset(images, np.arange(n), CPU), images  # labels are the image ids


def test_train_batches_yield_every_image_once_per_epoch_in_batches_with_a_smaller_last():
    dataset, _ = _dataset(10)
    batches = list(dataset.train_batches(4, seed=0, epoch=0, normalize=Normalizer(MEAN, STD, CPU)))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 32, 32), (4, 3, 32, 32), (2, 3, 32, 32)]
    ids = torch.cat([labels for _, labels in batches])
    assert sorted(ids.tolist()) == list(range(10))
    assert ids.tolist() != list(range(10))  # shuffled


def test_train_batches_pair_each_label_with_its_own_image_cropped_and_flipped_by_the_epoch_plan():
    dataset, images = _dataset(10)
    seed, epoch = 3, 1
    plan = EpochPlan.draw(10, seed, epoch)
    batches = list(dataset.train_batches(4, seed=seed, epoch=epoch, normalize=Normalizer(MEAN, STD, CPU)))
    x = torch.cat([x for x, _ in batches])
    ids = torch.cat([labels for _, labels in batches])
    assert torch.equal(ids, plan.order)
    source = torch.from_numpy(images)
    expected = torch.stack([_reference_crop_flip(source[int(ids[i])], int(plan.dy[i]), int(plan.dx[i]),
                                                 bool(plan.flip[i])) for i in range(10)])
    torch.testing.assert_close(x.double(), _reference_normalize(expected), atol=1e-5, rtol=1e-5)


def test_train_batches_without_augmentation_are_the_plans_order_of_untouched_images():
    dataset, images = _dataset(10)
    plan = EpochPlan.draw(10, 3, 1)
    batches = list(dataset.train_batches(4, seed=3, epoch=1, normalize=Normalizer(MEAN, STD, CPU), augment=False))
    ids = torch.cat([labels for _, labels in batches])
    assert torch.equal(ids, plan.order)  # the same order as with augmentation
    expected = torch.from_numpy(images)[plan.order]
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x.double(), _reference_normalize(expected), atol=1e-5, rtol=1e-5)


def test_train_batches_of_two_epochs_come_in_different_orders():
    dataset, _ = _dataset(20)
    normalize = Normalizer(MEAN, STD, CPU)
    orders = [torch.cat([labels for _, labels in dataset.train_batches(8, seed=0, epoch=e, normalize=normalize)])
              for e in (0, 1)]
    assert sorted(orders[0].tolist()) == sorted(orders[1].tolist()) == list(range(20))
    assert not torch.equal(orders[0], orders[1])


def test_eval_batches_yield_images_in_order_without_augmentation():
    dataset, images = _dataset(10)
    batches = list(dataset.eval_batches(4, Normalizer(MEAN, STD, CPU)))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert torch.cat([labels for _, labels in batches]).tolist() == list(range(10))
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x.double(), _reference_normalize(torch.from_numpy(images)), atol=1e-5, rtol=1e-5)


def test_resident_dataset_holds_uint8_images_and_int64_labels():
    dataset = ResidentDataset(_uint8_images(3).numpy(), np.array([2, 0, 1], dtype=np.uint8), CPU)
    assert len(dataset) == 3
    assert dataset.images.dtype == torch.uint8 and dataset.labels.dtype == torch.int64
    assert dataset.labels.tolist() == [2, 0, 1]
