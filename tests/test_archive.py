"""cifarlab.data.archive: reading CIFAR-10 safely from generated archives, the official layout and hostile or
damaged ones."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from archives import (
    CLASS_NAMES,
    TRAIN_MEMBERS,
    expected_arrays,
    file_entry,
    link_entry,
    make_cifar_archive,
    make_objects,
)

from cifarlab.data.archive import read_archive
from cifarlab.errors import CifarlabError


def read_error(path: Path) -> str:
    """read_archive's error for `path`: it must name the archive and fit on one line."""
    with pytest.raises(CifarlabError) as info:
        read_archive(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


# --- reading ---------------------------------------------------------------------------------


def test_read_archive_gives_nchw_uint8_images_int64_labels_and_class_names(tiny_archive):
    arrays = read_archive(tiny_archive)
    assert arrays.x_train.shape == (60, 3, 32, 32) and arrays.x_train.dtype == np.uint8
    assert arrays.y_train.shape == (60,) and arrays.y_train.dtype == np.int64
    assert arrays.x_test.shape == (15, 3, 32, 32) and arrays.x_test.dtype == np.uint8
    assert arrays.y_test.shape == (15,) and arrays.y_test.dtype == np.int64
    assert arrays.class_names == CLASS_NAMES


def test_read_archive_keeps_labels_in_batch_order(tiny_archive):
    objects = make_objects()
    arrays = read_archive(tiny_archive)
    expected_train = [label for name in TRAIN_MEMBERS for label in objects[name]["labels"]]
    assert arrays.y_train.tolist() == expected_train
    assert arrays.y_test.tolist() == objects["test_batch"]["labels"]
    assert set(arrays.y_train.tolist()) == set(range(10))  # the generator covers every class


def test_read_archive_maps_r_g_b_planes_to_channels_of_a_known_pixel(tmp_path):
    red = (np.arange(1024) % 251).astype(np.uint8)  # differs from pixel to pixel
    row = np.concatenate([red, np.full(1024, 100, np.uint8), np.full(1024, 50, np.uint8)])

    def plant(objects):
        objects["data_batch_2"]["data"][3] = row

    arrays = read_archive(make_cifar_archive(tmp_path / "a.tar.gz", mutate=plant))
    image = arrays.x_train[12 + 3]  # batch 2 follows the 12 images of batch 1
    r, c = 5, 7
    assert image[0, r, c] == red[r * 32 + c] == 5 * 32 + 7
    assert image[0, 31, 0] == red[31 * 32] % 251
    assert (image[1] == 100).all() and (image[2] == 50).all()


def test_read_archive_reads_python2_pickles_like_the_official_archive(tmp_path):
    official = read_archive(make_cifar_archive(tmp_path / "py2.tar.gz", python2=True))
    reference = expected_arrays()
    np.testing.assert_array_equal(official.x_train, reference.x_train)
    np.testing.assert_array_equal(official.y_train, reference.y_train)
    np.testing.assert_array_equal(official.x_test, reference.x_test)
    assert official.class_names == CLASS_NAMES


# --- hostile or damaged archives -------------------------------------------------------------


def test_read_archive_refuses_a_truncated_file(tiny_archive, tmp_path):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(tiny_archive.read_bytes()[: tiny_archive.stat().st_size // 2])
    assert "not a readable .tar.gz archive" in read_error(truncated)


def test_read_archive_refuses_random_bytes(tmp_path):
    path = tmp_path / "random.tar.gz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    assert "not a readable .tar.gz archive" in read_error(path)


def test_read_archive_refuses_gzip_that_is_not_tar(tmp_path):
    path = tmp_path / "plain.tar.gz"
    path.write_bytes(gzip.compress(b"just some text, not a tar file\n" * 100))
    assert "not a readable .tar.gz archive" in read_error(path)


def test_read_archive_refuses_a_missing_path(tmp_path):
    assert "no such archive" in read_error(tmp_path / "absent.tar.gz")


@pytest.mark.parametrize("member", ["test_batch", "batches.meta", "data_batch_5"])
def test_read_archive_names_a_missing_member(tmp_path, member):
    path = make_cifar_archive(tmp_path / "a.tar.gz", members={member: None})
    message = read_error(path)
    assert "missing members" in message and f"cifar-10-batches-py/{member}" in message


@pytest.mark.parametrize(
    "entry",
    [
        file_entry("cifar-10-batches-py/../escape", b"x"),
        file_entry("../escape", b"x"),
        file_entry("/tmp/absolute", b"x"),
        link_entry("cifar-10-batches-py/evil", "/etc/passwd"),
        link_entry("cifar-10-batches-py/evil", "cifar-10-batches-py/test_batch", hard=True),
    ],
    ids=["dotdot-inside", "dotdot-top", "absolute", "symlink", "hardlink"],
)
def test_read_archive_refuses_an_unsafe_member(tmp_path, entry):
    path = make_cifar_archive(tmp_path / "a.tar.gz", extra=[entry])
    message = read_error(path)
    assert "unsafe member" in message and entry[0].name in message


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_read_archive_refuses_device_and_fifo_members(tmp_path, kind):
    info = tarfile.TarInfo("cifar-10-batches-py/dev")
    info.type = kind
    path = make_cifar_archive(tmp_path / "a.tar.gz", extra=[(info, b"")])
    assert "unsafe member" in read_error(path)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda b: b.update(data=b["data"][:, :3071]), "uint8 (N, 3072)"),
        (lambda b: b.update(data=b["data"].astype(np.int64)), "uint8 (N, 3072)"),
        (lambda b: b.update(data=b["data"].tolist()), "uint8 (N, 3072)"),
        (lambda b: b.update(labels=b["labels"][:-1]), "11 labels for 12 images"),
        (lambda b: b.update(labels=[10] + b["labels"][1:]), "labels must lie in 0..9"),
        (lambda b: b.update(labels=[-1] + b["labels"][1:]), "labels must lie in 0..9"),
        (lambda b: b.update(labels=["cat"] * 12), "list of integers"),
        (lambda b: b.pop("labels"), "'data' and 'labels'"),
    ],
    ids=["3071-columns", "int64-data", "list-data", "label-count", "label-10", "label-minus-1",
         "string-labels", "no-labels"],
)
def test_read_archive_refuses_a_malformed_batch(tmp_path, edit, expected):
    path = make_cifar_archive(
        tmp_path / "a.tar.gz", mutate=lambda objects: edit(objects["data_batch_3"])
    )
    message = read_error(path)
    assert "cifar-10-batches-py/data_batch_3" in message and expected in message


def test_read_archive_refuses_a_batch_pickled_as_a_list(tmp_path):
    path = make_cifar_archive(tmp_path / "a.tar.gz", mutate=lambda o: o.update(test_batch=[1, 2]))
    message = read_error(path)
    assert "cifar-10-batches-py/test_batch" in message and "expected a dict" in message


def test_read_archive_refuses_bytes_that_are_not_a_pickle(tmp_path):
    path = make_cifar_archive(tmp_path / "a.tar.gz", members={"data_batch_1": b"not a pickle"})
    assert "cifar-10-batches-py/data_batch_1" in read_error(path)


@pytest.mark.parametrize("names", [list(CLASS_NAMES[:9]), [1] * 10, None])
def test_read_archive_refuses_meta_without_ten_label_names(tmp_path, names):
    path = make_cifar_archive(
        tmp_path / "a.tar.gz", mutate=lambda o: o["batches.meta"].update(label_names=names)
    )
    message = read_error(path)
    assert "batches.meta" in message and "10 strings" in message


class _RunsShell:
    """Pickles as a call to os.system: what a hostile batch would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_read_archive_never_runs_a_pickled_call_to_os_system(tmp_path):
    marker = tmp_path / "executed"
    payload = pickle.dumps({"data": _RunsShell(f"touch '{marker}'"), "labels": []}, protocol=4)
    path = make_cifar_archive(tmp_path / "a.tar.gz", members={"data_batch_1": payload})
    message = read_error(path)
    assert "forbidden global" in message and "system" in message
    assert not marker.exists()
    # control: the same bytes through plain pickle do run the command, so the marker would show it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsShell(f"touch '{control}'")))
    assert control.exists()


@pytest.mark.parametrize(
    "global_", ["builtins\neval", "_codecs\nencode", "numpy\nload", "subprocess\nPopen"]
)
def test_read_archive_allows_no_global_beyond_array_reconstruction(tmp_path, global_):
    # protocol 2 by hand: GLOBAL module name, then an empty args tuple and REDUCE
    payload = b"\x80\x02c" + global_.encode() + b"\n)R."
    path = make_cifar_archive(tmp_path / "a.tar.gz", members={"test_batch": payload})
    module, name = global_.split("\n")
    assert f"forbidden global {module}.{name}" in read_error(path)
