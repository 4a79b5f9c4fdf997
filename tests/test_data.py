"""cifarlab.data: fetching, safe reading, splitting and saving CIFAR-10, on generated archives."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from archives import (
    CLASS_NAMES,
    TRAIN_MEMBERS,
    file_entry,
    link_entry,
    make_cifar_archive,
    make_objects,
    md5_of,
)

from cifarlab import data
from cifarlab.data import (
    CifarArrays,
    channel_stats,
    fetch_archive,
    is_url,
    load_split,
    make_split,
    read_archive,
    save_split,
    split_indices,
)
from cifarlab.errors import CifarlabError


def read_error(path: Path) -> str:
    """read_archive's error for `path`: it must name the archive and fit on one line."""
    with pytest.raises(CifarlabError) as info:
        read_archive(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def tiny_arrays(seed: int = 0) -> CifarArrays:
    """The arrays of a generated archive, built by hand from the generator's objects."""
    objects = make_objects(seed=seed)
    return CifarArrays(
        x_train=np.concatenate([objects[n]["data"] for n in TRAIN_MEMBERS]).reshape(-1, 3, 32, 32),
        y_train=np.concatenate([objects[n]["labels"] for n in TRAIN_MEMBERS]).astype(np.int64),
        x_test=objects["test_batch"]["data"].reshape(-1, 3, 32, 32),
        y_test=np.array(objects["test_batch"]["labels"], dtype=np.int64),
        class_names=CLASS_NAMES,
    )


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
    reference = tiny_arrays()
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
    arrays = tiny_arrays()
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
    split = make_split(tiny_arrays(), 0.2, seed=0)
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
    split = make_split(tiny_arrays(), 0.2, seed=0)
    meta = save_split(split, tmp_path / "split", seed=0, val_fraction=0.2)
    loaded = load_split(tmp_path / "split")
    for name in data.SPLIT_ARRAY_NAMES:
        original, back = getattr(split, name), getattr(loaded, name)
        assert back.dtype == original.dtype
        np.testing.assert_array_equal(back, original)
    assert (loaded.class_names, loaded.mean, loaded.std) == (CLASS_NAMES, split.mean, split.std)
    assert json.loads((tmp_path / "split" / "meta.json").read_text()) == meta
    assert meta["sizes"] == {"train": 48, "val": 12, "test": 15}
    assert (meta["seed"], meta["val_fraction"]) == (0, 0.2)


def test_content_sha256_is_stable_for_a_split_and_changes_with_the_seed(tmp_path):
    first = save_split(make_split(tiny_arrays(), 0.2, seed=0), tmp_path / "a", seed=0,
                       val_fraction=0.2)
    again = save_split(make_split(tiny_arrays(), 0.2, seed=0), tmp_path / "b", seed=0,
                       val_fraction=0.2)
    other = save_split(make_split(tiny_arrays(), 0.2, seed=1), tmp_path / "c", seed=1,
                       val_fraction=0.2)
    assert first["content_sha256"] == again["content_sha256"]
    assert first["content_sha256"] != other["content_sha256"]


def test_load_split_says_to_run_the_split_stage_when_files_are_missing(tmp_path):
    with pytest.raises(CifarlabError, match=r"arrays\.npz: missing; run the `split` stage"):
        load_split(tmp_path)


def test_load_split_refuses_a_corrupt_arrays_file(tmp_path):
    save_split(make_split(tiny_arrays(), 0.2, seed=0), tmp_path, seed=0, val_fraction=0.2)
    (tmp_path / "arrays.npz").write_bytes(b"garbage")
    with pytest.raises(CifarlabError, match=r"arrays\.npz: not a readable split.*`split` stage"):
        load_split(tmp_path)


def test_load_split_refuses_arrays_that_do_not_match_the_meta(tmp_path):
    save_split(make_split(tiny_arrays(), 0.2, seed=0), tmp_path / "a", seed=0, val_fraction=0.2)
    save_split(make_split(tiny_arrays(), 0.2, seed=1), tmp_path / "b", seed=1, val_fraction=0.2)
    (tmp_path / "a" / "arrays.npz").write_bytes((tmp_path / "b" / "arrays.npz").read_bytes())
    with pytest.raises(CifarlabError, match="content_sha256"):
        load_split(tmp_path / "a")


# --- fetching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [("https://x.org/a.tar.gz", True), ("http://x/a", True), ("ftp://x/a", True),
     ("file:///tmp/a.tar.gz", True), ("/tmp/a.tar.gz", False), ("data/a.tar.gz", False),
     ("C:\\data\\a.tar.gz", False)],
)
def test_is_url_recognises_download_schemes_only(source, expected):
    assert is_url(source) is expected


def test_fetch_local_file_is_copied_with_checksums_recorded(tiny_archive, tmp_path):
    dest = tmp_path / "out" / "cifar.tar.gz"
    record = fetch_archive(str(tiny_archive), dest, expected_md5="0" * 32)  # local: not checked
    content = tiny_archive.read_bytes()
    assert dest.read_bytes() == content
    assert record == {
        "source": str(tiny_archive),
        "md5": md5_of(tiny_archive),
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "checksum_verified": False,
    }


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p.mkdir() or p], ids=["absent", "dir"])
def test_fetch_refuses_a_local_source_that_is_not_a_file(tmp_path, make):
    source = make(tmp_path / "nothing")
    with pytest.raises(CifarlabError, match=f"data.source: {source}"):
        fetch_archive(str(source), tmp_path / "dest.tar.gz", expected_md5=None)
    assert not (tmp_path / "dest.tar.gz").exists()


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda good, tmp: good[: len(good) // 2], "not a readable .tar.gz archive"),
        (lambda good, tmp: gzip.compress(b"not a tar file\n" * 100), "not a readable .tar.gz archive"),
        (lambda good, tmp: make_cifar_archive(tmp / "other.tar.gz", members={"test_batch": None}).read_bytes(),
         "missing members"),
    ],
    ids=["truncated", "gzip-not-tar", "member-missing"],
)
def test_fetch_refuses_a_damaged_local_archive_by_its_own_name_and_keeps_the_earlier_copy(
        tiny_archive, tmp_path, damage, expected):
    source = tmp_path / "mine.tar.gz"
    source.write_bytes(damage(tiny_archive.read_bytes(), tmp_path))
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"earlier copy")
    with pytest.raises(CifarlabError) as info:
        fetch_archive(str(source), dest, expected_md5=None)
    assert str(info.value).startswith(f"data.source: {source}: {expected}")
    assert dest.read_bytes() == b"earlier copy"


def test_fetch_refuses_a_download_that_is_not_the_archive_and_keeps_the_earlier_one(tmp_path):
    page = tmp_path / "page.html"  # what a proxy or a moved URL serves instead
    page.write_bytes(b"<html>moved</html>")
    dest = tmp_path / "dest.tar.gz"
    dest.write_bytes(b"earlier download")
    with pytest.raises(CifarlabError, match=f"data.source: {page.as_uri()}: not a readable .tar.gz archive"):
        fetch_archive(page.as_uri(), dest, expected_md5=None)
    assert dest.read_bytes() == b"earlier download"


def test_fetch_url_with_the_right_md5_is_verified(tiny_archive, tmp_path):
    dest = tmp_path / "dest.tar.gz"
    record = fetch_archive(tiny_archive.as_uri(), dest, expected_md5=md5_of(tiny_archive))
    assert record["checksum_verified"] is True
    assert dest.read_bytes() == tiny_archive.read_bytes()


def test_fetch_url_with_a_wrong_md5_fails_and_leaves_dest_untouched(tiny_archive, tmp_path):
    dest = tmp_path / "dest.tar.gz"
    dest.write_bytes(b"earlier download")
    url, wrong = tiny_archive.as_uri(), "0123456789abcdef0123456789abcdef"
    with pytest.raises(CifarlabError) as info:
        fetch_archive(url, dest, expected_md5=wrong)
    message = str(info.value)
    assert "data.md5" in message and url in message
    assert wrong in message and md5_of(tiny_archive) in message
    assert dest.read_bytes() == b"earlier download"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "dest.tar.gz"]


@pytest.fixture
def no_proxy(monkeypatch):
    """Keep local URLs away from any proxy set in the environment."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_fetch_unreachable_url_names_data_source(tmp_path, no_proxy):
    url = "http://127.0.0.1:9/x.tar.gz"  # the discard port: nothing listens, refused at once
    with pytest.raises(CifarlabError, match=f"data.source: cannot download {url}"):
        fetch_archive(url, tmp_path / "dest.tar.gz", expected_md5=None)
    assert not (tmp_path / "dest.tar.gz").exists()


@pytest.fixture
def http_server(tiny_archive, no_proxy):
    """Local HTTP: /cifar.tar.gz serves the tiny archive; /short sends less than it promises."""
    body = tiny_archive.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/cifar.tar.gz":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/short":
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"only this")
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_http_download_is_verified_with_rate_limited_progress(
    http_server, tiny_archive, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(data, "CHUNK_BYTES", 1024)  # hundreds of chunks for a tiny archive
    dest = tmp_path / "dest.tar.gz"
    record = fetch_archive(f"{http_server}/cifar.tar.gz", dest, md5_of(tiny_archive))
    assert record["checksum_verified"] is True and dest.read_bytes() == tiny_archive.read_bytes()
    lines = capsys.readouterr().err.splitlines()
    assert tiny_archive.stat().st_size // 1024 > 100
    assert 2 <= len(lines) <= 12  # about one per 10%, plus the summary; never one per chunk


def test_fetch_http_error_names_data_source_and_status(http_server, tmp_path):
    url = f"{http_server}/missing.tar.gz"
    with pytest.raises(CifarlabError, match=f"data.source: cannot download {url}: HTTP 404"):
        fetch_archive(url, tmp_path / "dest.tar.gz", expected_md5=None)


def test_fetch_refuses_a_download_shorter_than_announced(http_server, tmp_path):
    dest = tmp_path / "dest.tar.gz"
    with pytest.raises(CifarlabError, match="stopped after 9 of 100000 bytes"):
        fetch_archive(f"{http_server}/short", dest, expected_md5=None)
    assert not dest.exists()
