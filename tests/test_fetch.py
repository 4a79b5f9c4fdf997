"""cifarlab.data.fetch: copying a local archive or downloading one, verified, and refusing what is not the
archive while keeping the earlier copy."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading

import pytest
from archives import make_cifar_archive, md5_of

from cifarlab.data import fetch
from cifarlab.data.fetch import fetch_archive, is_url
from cifarlab.errors import CifarlabError


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


def test_fetch_unreachable_url_names_data_source_and_how_to_use_a_local_archive(tmp_path, no_proxy):
    url = "http://127.0.0.1:9/x.tar.gz"  # the discard port: nothing listens, refused at once
    with pytest.raises(CifarlabError, match=f"data.source: cannot download {url}") as info:
        fetch_archive(url, tmp_path / "dest.tar.gz", expected_md5=None)
    assert "dvc exp run -S data.source=PATH/cifar-10-python.tar.gz" in str(info.value)
    assert "\n" not in str(info.value)
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
    monkeypatch.setattr(fetch, "CHUNK_BYTES", 1024)  # hundreds of chunks for a tiny archive
    # No line may come from the clock: a slow machine would print one every 5 s, which is not what this
    # tests; only the 10% steps count here.
    monkeypatch.setattr(fetch, "PROGRESS_EVERY_S", float("inf"))
    dest = tmp_path / "dest.tar.gz"
    record = fetch_archive(f"{http_server}/cifar.tar.gz", dest, md5_of(tiny_archive))
    assert record["checksum_verified"] is True and dest.read_bytes() == tiny_archive.read_bytes()
    lines = capsys.readouterr().err.splitlines()
    assert tiny_archive.stat().st_size // 1024 > 100
    assert 10 <= len(lines) <= 12  # one per 10% and the summary; never one per chunk


def test_fetch_http_error_names_data_source_and_status(http_server, tmp_path):
    url = f"{http_server}/missing.tar.gz"
    with pytest.raises(CifarlabError, match=f"data.source: cannot download {url}: HTTP 404"):
        fetch_archive(url, tmp_path / "dest.tar.gz", expected_md5=None)


def test_fetch_refuses_a_download_shorter_than_announced(http_server, tmp_path):
    dest = tmp_path / "dest.tar.gz"
    with pytest.raises(CifarlabError, match="stopped after 9 of 100000 bytes"):
        fetch_archive(f"{http_server}/short", dest, expected_md5=None)
    assert not dest.exists()
