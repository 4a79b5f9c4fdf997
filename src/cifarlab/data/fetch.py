"""Fetch the CIFAR-10 archive: download it (and verify its MD5) or copy a local one, atomically."""

from __future__ import annotations

import hashlib
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from cifarlab.data.archive import check_archive_layout
from cifarlab.errors import CifarlabError, one_line
from cifarlab.io import atomic_path

URL_SCHEMES = ("http", "https", "ftp", "file")

DOWNLOAD_TIMEOUT_S = 60

CHUNK_BYTES = 1 << 20

PROGRESS_EVERY_S = 5.0

PROGRESS_EVERY_FRACTION = 0.1

# Said after a download that failed on the way (no network, a proxy, a mirror gone): the way round it.
LOCAL_ARCHIVE = ("to use a copy of the archive instead, run `dvc exp run -S data.source=PATH/cifar-10-python.tar.gz` "
                 "or set data.source in params.yaml to its path")


def is_url(source: str) -> bool:
    """True when `source` is an http, https, ftp or file URL (else it is a local path)."""
    return urllib.parse.urlparse(source).scheme.lower() in URL_SCHEMES


def fetch_archive(source: str, dest: Path, expected_md5: str | None) -> dict:
    """Download (URL) or copy (local path) the archive to `dest`, atomically, and record checksums.

    A download whose md5 differs from `expected_md5` is refused; a local archive named by the user
    is trusted as named, so its md5 is recorded but not checked (`checksum_verified` is False). Either
    must be a readable .tar.gz with the official members, or it is refused here, by its own name,
    rather than one stage later by the name of its copy.
    """
    dest = Path(dest)
    if is_url(source):
        sums = _download(source, dest, expected_md5)
        verified = expected_md5 is not None
    else:
        sums = _copy_local(Path(source), dest)
        verified = False
    return {"source": source, **sums, "checksum_verified": verified}


def _download(url: str, dest: Path, expected_md5: str | None) -> dict:
    try:
        # raising inside atomic_path removes the temporary file: an earlier dest stays as it was
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
        with response, atomic_path(dest) as tmp:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sums = _copy_hashing(response, tmp, total=total, label=url)
            if total is not None and sums["bytes"] != total:
                raise CifarlabError(
                    f"data.source: download of {url} stopped after {sums['bytes']} of {total} bytes"
                )
            if expected_md5 is not None and sums["md5"] != expected_md5.lower():
                raise CifarlabError(
                    f"data.md5: {url} has md5 {sums['md5']}, expected {expected_md5}; "
                    "fix data.md5 or data.source"
                )
            check_archive_layout(tmp, shown_as=f"data.source: {url}")
    except urllib.error.HTTPError as err:
        raise CifarlabError(
            f"data.source: cannot download {url}: HTTP {err.code} {one_line(err.reason)}; {LOCAL_ARCHIVE}"
        ) from None
    except urllib.error.URLError as err:
        reason = one_line(err.reason)
        raise CifarlabError(f"data.source: cannot download {url}: {reason}; {LOCAL_ARCHIVE}") from None
    except (OSError, ValueError) as err:  # resets, timeouts, malformed URLs, an unwritable dest
        raise CifarlabError(
            f"data.source: cannot download {url} to {dest}: {one_line(err)}; {LOCAL_ARCHIVE}"
        ) from None
    return sums


def _copy_local(path: Path, dest: Path) -> dict:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise CifarlabError(f"data.source: {path} {what}; expected a .tar.gz archive or a URL")
    with open(path, "rb") as src, atomic_path(dest) as tmp:
        sums = _copy_hashing(src, tmp, total=None, label=None)
        check_archive_layout(tmp, shown_as=f"data.source: {path}")
    return sums


def _copy_hashing(src: IO[bytes], tmp: Path, *, total: int | None, label: str | None) -> dict:
    """Copy `src` to `tmp` in chunks, hashing as it goes; report progress on stderr if `label`."""
    md5, sha256, done = hashlib.md5(), hashlib.sha256(), 0
    start = last_time = time.monotonic()
    last_fraction = 0.0
    with open(tmp, "wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            out.write(chunk)
            md5.update(chunk)
            sha256.update(chunk)
            done += len(chunk)
            if label is None:
                continue
            # one line per ~10% or per few seconds, so a log stays readable whatever the chunk size
            now = time.monotonic()
            fraction = done / total if total else 0.0
            if (now - last_time >= PROGRESS_EVERY_S
                    or fraction - last_fraction >= PROGRESS_EVERY_FRACTION):
                _progress(label, done, total)
                last_time, last_fraction = now, fraction
    if label is not None:
        print(f"downloaded {label}: {done / 1e6:.1f} MB in {time.monotonic() - start:.1f} s",
              file=sys.stderr)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "bytes": done}


def _progress(label: str, done: int, total: int | None) -> None:
    of = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else " MB"
    print(f"downloading {label}: {done / 1e6:.1f}{of}", file=sys.stderr)
