"""Checksummed downloads and file verification.

A download streams into a temporary file beside its destination, hashing as it goes; only when the
sha256 and size match is the file moved into place, atomically. A mismatch deletes the temporary
file and raises :class:`ChecksumError`, so the cache never holds a partial or wrong file. Every download
states its size and stops past it, and has a deadline for the whole transfer, not only per read. Network
failures alone are retried with a back-off (the last one raises :class:`DownloadError`); a full disk or an
unwritable cache raises :class:`CacheWriteError` at once, and Ctrl-C is never swallowed.

Why not ``pooch.retrieve(known_hash=...)``: it verifies the hash after downloading, but it has no size limit
and no deadline for the whole transfer, and it is one more dependency; this loop is short enough to read.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from http.client import HTTPException, IncompleteRead
from pathlib import Path

from bigmodel_utils.data.manifest import DataError

CHUNK = 1 << 20
_verified: dict[tuple[str, int, int, str], bool] = {}


class ChecksumError(DataError, ValueError):
    """A file's bytes do not hash to the sha256 the manifest expects."""


class DownloadError(DataError, OSError):
    """A download failed after its retries (no network, server down, HTTP error)."""


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: str | Path, sha256: str) -> bool:
    """True when ``path`` exists and hashes to ``sha256`` (remembered per size and mtime)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256)
    if key not in _verified:
        _verified[key] = sha256_file(path) == sha256
    return _verified[key]


def verify_file(path: str | Path, sha256: str, what: str = "") -> Path:
    """Return ``path`` if its sha256 matches, else raise :class:`ChecksumError` saying what to do."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what or path}: file not found at {path}")
    if not file_matches(path, sha256):
        actual = sha256_file(path)
        raise ChecksumError(
            f"{what or path.name}: sha256 mismatch for {path} (expected {sha256[:12]}…, got "
            f"{actual[:12]}…). The file is damaged or is not the version the book was tested with: "
            "reinstall it ('make clean && make test' rebuilds the environment) and do not use it as is"
        )
    return path


class CacheWriteError(DataError, OSError):
    """The cache folder cannot be written (full disk, no permission): not a network error, so never retried."""


class _Deadline(Exception):
    """The whole download took longer than its deadline (a server that drips bytes slowly)."""


def _is_retryable(exc: BaseException) -> bool:
    """Network errors only: a server error or overload (5xx, 408, 429), a refused or dropped connection, a timeout,
    a truncated response. A 404, a bad checksum or a local disk error is reported at once."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException))


def _write(out, chunk: bytes, dest: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise CacheWriteError(f"cannot write {dest} ({exc.strerror or exc}): free some disk space, or point "
                              "BIGMODEL_DATA_DIR at a folder with room that you can write") from exc


def download(
    url: str,
    dest: str | Path,
    sha256: str,
    size: int,
    *,
    timeout: float = 30.0,
    deadline: float | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    quiet: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``, verified against ``sha256`` and ``size`` (bytes).

    A file already at ``dest`` with the right checksum is kept; one with the wrong checksum is replaced. The
    download stops as soon as the server sends more than ``size`` bytes. Args: ``timeout`` seconds for the
    connection and for each read; ``deadline`` seconds for the whole download, retries included (default 60 s
    plus 20 s a megabyte, i.e. at least 50 kB/s); ``retries`` attempts in all, for network errors only;
    ``backoff`` seconds before the first retry (doubling each time). The deadline is checked between reads,
    so one read (at most ``timeout`` seconds) can end past it. A full disk or a folder that cannot be written raises
    :class:`CacheWriteError` at once; Ctrl-C is never caught.
    """
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be the file's size in bytes, got {size!r}: every download states its size")
    deadline = 60.0 + 20.0 * size / 1e6 if deadline is None else deadline
    if deadline <= 0:
        raise ValueError(f"deadline must be positive, got {deadline}")
    dest = Path(dest)
    if dest.exists():
        if file_matches(dest, sha256):
            return dest
        if not quiet:
            print(f"{dest.name}: cached copy has the wrong checksum; downloading it again")
        dest.unlink()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheWriteError(f"cannot create {dest.parent} ({exc.strerror or exc}): point BIGMODEL_DATA_DIR at a "
                              "folder you can write") from exc

    last_error: Exception | None = None
    end = time.monotonic() + deadline
    for attempt in range(1, retries + 1):
        if time.monotonic() >= end:
            last_error = _Deadline(f"no time left of the deadline of {deadline:.0f} s")
            break
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            out = os.fdopen(fd, "wb")
        except OSError as exc:
            raise CacheWriteError(f"cannot write in {dest.parent} ({exc.strerror or exc}): point BIGMODEL_DATA_DIR "
                                  "at a folder you can write") from exc
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            received = 0
            try:
                with urllib.request.urlopen(url, timeout=min(timeout, end - time.monotonic())) as resp:
                    while True:
                        if time.monotonic() > end:
                            raise _Deadline(f"the download took longer than its deadline of {deadline:.0f} s "
                                            f"({received:,} of {size:,} bytes received)")
                        chunk = resp.read1(CHUNK)  # what has arrived: a slow server cannot hold a read past the deadline
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > size:
                            raise ChecksumError(
                                f"{dest.name}: the server sent more than the expected {size:,} bytes "
                                f"from {url}; refusing the file"
                            )
                        digest.update(chunk)
                        _write(out, chunk, dest)
                    if getattr(resp, "length", None):  # fewer bytes than its Content-Length: the connection broke
                        raise IncompleteRead(b"", resp.length)
            finally:
                try:
                    out.close()
                except OSError as exc:  # the last buffered bytes could not be written: a full disk
                    raise CacheWriteError(f"cannot write {dest} ({exc.strerror or exc}): free some disk space, or "
                                          "point BIGMODEL_DATA_DIR at a folder with room that you can write") from exc
            actual = digest.hexdigest()
            if actual != sha256 or received != size:
                raise ChecksumError(
                    f"{dest.name}: checksum mismatch after downloading {url} "
                    f"(expected sha256 {sha256[:12]}… and {size:,} bytes, "
                    f"got {actual[:12]}… and {received:,} bytes). The file was discarded; the source "
                    "may have changed or the download was tampered with: do not use it"
                )
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise CacheWriteError(f"cannot move the download into {dest} ({exc.strerror or exc})") from exc
            return dest
        except (ChecksumError, CacheWriteError):
            raise
        except Exception as exc:  # noqa: BLE001 - network errors are retried; KeyboardInterrupt is not caught
            last_error = exc
            if not _is_retryable(exc) or attempt == retries or time.monotonic() + backoff * 2 ** (attempt - 1) > end:
                break
            time.sleep(backoff * 2 ** (attempt - 1))
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(f"could not download {url} after {attempt} attempt(s): {last_error}") from last_error
