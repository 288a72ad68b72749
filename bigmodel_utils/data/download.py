"""Checksummed downloads and file verification.

A download streams into a temporary file beside its destination, hashing as it goes; only when the
sha256 (and size) match is the file moved into place, atomically. A mismatch deletes the temporary
file and raises :class:`ChecksumError`, so the cache never holds a partial or wrong file. Network
failures are retried with a back-off; the last one raises :class:`DownloadError`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from bigmodel_utils.data.registry import DataError

CHUNK = 1 << 20
_verified: dict[tuple[str, int, int, str], bool] = {}


class ChecksumError(DataError, ValueError):
    """A file's bytes do not hash to the sha256 the registry expects."""


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


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException, OSError))


def download(
    url: str,
    dest: str | Path,
    sha256: str,
    size: int | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    quiet: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``, verified against ``sha256`` (and ``size``).

    A file already at ``dest`` with the right checksum is kept; one with the wrong checksum is
    replaced. Args: ``timeout`` per connection attempt in seconds, ``retries`` attempts in all
    for network errors, ``backoff`` seconds before the first retry (doubling each time).
    """
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    dest = Path(dest)
    if dest.exists():
        if file_matches(dest, sha256):
            return dest
        if not quiet:
            print(f"{dest.name}: cached copy has the wrong checksum; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)

    last_error: BaseException | None = None
    for attempt in range(1, retries + 1):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    received += len(chunk)
                    if size is not None and received > size:
                        raise ChecksumError(
                            f"{dest.name}: the server sent more than the expected {size:,} bytes "
                            f"from {url}; refusing the file"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != sha256 or (size is not None and received != size):
                raise ChecksumError(
                    f"{dest.name}: checksum mismatch after downloading {url} "
                    f"(expected sha256 {sha256[:12]}… and {size if size is not None else '?'} bytes, "
                    f"got {actual[:12]}… and {received:,} bytes). The file was discarded; the source "
                    "may have changed or the download was tampered with: do not use it"
                )
            os.replace(tmp, dest)
            return dest
        except ChecksumError:
            raise
        except BaseException as exc:  # noqa: BLE001 - decide below whether to retry
            last_error = exc
            if not _is_retryable(exc) or attempt == retries:
                break
            time.sleep(backoff * 2 ** (attempt - 1))
        finally:
            tmp.unlink(missing_ok=True)
    if isinstance(last_error, KeyboardInterrupt):
        raise last_error
    raise DownloadError(f"could not download {url} after {attempt} attempt(s): {last_error}") from last_error
