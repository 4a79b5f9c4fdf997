"""cifarlab.data.split: the seeded train/validation split, channel statistics from the train part, and saving
and loading a split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from archives import CLASS_NAMES, expected_arrays, make_objects

from cifarlab.data.split import (
    SPLIT_ARRAY_NAMES,
    channel_stats,
    load_split,
    make_split,
    save_split,
    split_indices,
)
from cifarlab.errors import CifarlabError

# --- splitting -------------------------------------------------------------------------------


def test_split_indices_is_reproducible_for_a_seed_and_changes_with_it():
    train_a, val_a = split_indices(1000, 0.2, seed=3)
    train_b, val_b = split_indices(1000, 0.2, seed=3)
    np.testing.assert_array_equal(train_a, train_b)
    np.testing.assert_array_equal(val_a, val_b)
    _, val_c = split_indices(1000, 0.2, seed=4)
    assert set(val_c.tolist()) != set(val_a.tolist())


def test_split_indices_are_disjoint_sorted_and_cover_everything():
    train, val = split_indices(1000, 0.2, seed=0)
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()


@pytest.mark.parametrize(("n", "train", "val"), [(50_000, 40_000, 10_000), (60, 48, 12)])
def test_split_indices_sizes_follow_val_fraction(n, train, val):
    train_idx, val_idx = split_indices(n, 0.2, seed=0)
    assert (len(train_idx), len(val_idx)) == (train, val)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_split_indices_refuses_a_fraction_that_empties_a_part(fraction):
    with pytest.raises(CifarlabError, match="data.val_fraction"):
        split_indices(60, fraction, seed=0)


def test_make_split_keeps_images_with_their_labels_and_test_untouched():
    arrays = expected_arrays()
    split = make_split(arrays, 0.2, seed=0)
    assert (len(split.y_train), len(split.y_val)) == (48, 12)
    label_of = {x.tobytes(): y for x, y in zip(arrays.x_train, arrays.y_train, strict=True)}
    pairs = [*zip(split.x_train, split.y_train, strict=True),
             *zip(split.x_val, split.y_val, strict=True)]
    assert all(label_of[x.tobytes()] == y for x, y in pairs)
    seen = {x.tobytes() for x in [*split.x_train, *split.x_val]}
    assert seen == set(label_of)
    objects = make_objects()
    np.testing.assert_array_equal(split.x_test.reshape(15, 3072), objects["test_batch"]["data"])
    assert split.y_test.tolist() == objects["test_batch"]["labels"]
    assert split.class_names == CLASS_NAMES


def test_make_split_takes_mean_and_std_from_the_train_part_only():
    split = make_split(expected_arrays(), 0.2, seed=0)
    pixels = split.x_train / 255.0
    np.testing.assert_allclose(split.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(split.std, pixels.std(axis=(0, 2, 3)), rtol=1e-12)
    everything = np.concatenate([split.x_train, split.x_val]) / 255.0
    assert not np.allclose(split.mean, everything.mean(axis=(0, 2, 3)), rtol=1e-9, atol=0)


# --- channel statistics ----------------------------------------------------------------------


def test_channel_stats_match_numpy_mean_and_population_std_across_chunks():
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, 256, (50, 32, 32)),     # uniform
                  rng.integers(100, 120, (50, 32, 32)),   # narrow
                  rng.integers(0, 2, (50, 32, 32)) * 255],  # black or white
                 axis=1).astype(np.uint8)
    mean, std = channel_stats(x, chunk=7)  # 50 is not a multiple of 7: a partial last chunk
    np.testing.assert_allclose(mean, (x / 255.0).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, (x / 255.0).std(axis=(0, 2, 3)), rtol=1e-12)


def test_channel_stats_on_a_worked_example():
    x = np.zeros((2, 3, 4, 4), np.uint8)
    x[0, 0] = 255  # channel 0: half the pixels 1.0, half 0.0 -> mean 0.5, std 0.5
    x[:, 1] = 51   # channel 1: constant 0.2 -> std 0
    assert channel_stats(x) == ((0.5, 0.2, 0.0), (0.5, 0.0, 0.0))


# --- saving and loading a split --------------------------------------------------------------


def test_save_split_then_load_split_returns_the_same_split(tmp_path):
    split = make_split(expected_arrays(), 0.2, seed=0)
    meta = save_split(split, tmp_path / "split", seed=0, val_fraction=0.2)
    loaded = load_split(tmp_path / "split")
    for name in SPLIT_ARRAY_NAMES:
        original, back = getattr(split, name), getattr(loaded, name)
        assert back.dtype == original.dtype
        np.testing.assert_array_equal(back, original)
    assert (loaded.class_names, loaded.mean, loaded.std) == (CLASS_NAMES, split.mean, split.std)
    assert json.loads((tmp_path / "split" / "meta.json").read_text()) == meta
    assert meta["sizes"] == {"train": 48, "val": 12, "test": 15}
    assert (meta["seed"], meta["val_fraction"]) == (0, 0.2)


def test_content_sha256_is_stable_for_a_split_and_changes_with_the_seed(tmp_path):
    first = save_split(make_split(expected_arrays(), 0.2, seed=0), tmp_path / "a", seed=0,
                       val_fraction=0.2)
    again = save_split(make_split(expected_arrays(), 0.2, seed=0), tmp_path / "b", seed=0,
                       val_fraction=0.2)
    other = save_split(make_split(expected_arrays(), 0.2, seed=1), tmp_path / "c", seed=1,
                       val_fraction=0.2)
    assert first["content_sha256"] == again["content_sha256"]
    assert first["content_sha256"] != other["content_sha256"]


def test_load_split_says_to_run_the_split_stage_when_files_are_missing(tmp_path):
    with pytest.raises(CifarlabError, match=r"arrays\.npz: missing; run the `split` stage"):
        load_split(tmp_path)


def test_load_split_refuses_a_corrupt_arrays_file(tmp_path):
    save_split(make_split(expected_arrays(), 0.2, seed=0), tmp_path, seed=0, val_fraction=0.2)
    (tmp_path / "arrays.npz").write_bytes(b"garbage")
    with pytest.raises(CifarlabError, match=r"arrays\.npz: not a readable split.*`split` stage"):
        load_split(tmp_path)


def test_load_split_refuses_arrays_that_do_not_match_the_meta(tmp_path):
    save_split(make_split(expected_arrays(), 0.2, seed=0), tmp_path / "a", seed=0, val_fraction=0.2)
    save_split(make_split(expected_arrays(), 0.2, seed=1), tmp_path / "b", seed=1, val_fraction=0.2)
    (tmp_path / "a" / "arrays.npz").write_bytes((tmp_path / "b" / "arrays.npz").read_bytes())
    with pytest.raises(CifarlabError, match="content_sha256"):
        load_split(tmp_path / "a")
