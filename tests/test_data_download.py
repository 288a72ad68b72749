"""The download path against a real HTTP server on 127.0.0.1: good, corrupted, unreachable."""

from __future__ import annotations

import importlib
import json
import socket
import subprocess
import sys

import pytest

from bigmodel_utils.data import (
    ChecksumError,
    DataManifest,
    DownloadError,
    OfflineError,
    download,
    fetch,
    sha256_file,
)
from conftest import sha256_bytes

PAYLOAD = b"digit,label\n" + b"0,1\n" * 5000


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_good_file_is_downloaded_verified_and_cached(http_root, data_cache):
    root, base = http_root
    (root / "good.csv").write_bytes(PAYLOAD)
    dest = data_cache / "sub" / "good.csv"
    got = download(f"{base}/good.csv", dest, sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True)
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(data_cache) == ["good.csv"]  # no temporary file left
    (root / "good.csv").unlink()  # a cache hit must not touch the network
    assert download(f"{base}/good.csv", dest, sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True) == dest


def test_corrupted_download_is_rejected_and_leaves_nothing(http_root, data_cache):
    root, base = http_root
    (root / "bad.csv").write_bytes(PAYLOAD[:-1] + b"X")  # one byte flipped
    dest = data_cache / "bad.csv"
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        download(f"{base}/bad.csv", dest, sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True, backoff=0)
    assert not dest.exists()
    assert _leftovers(data_cache) == []


def test_oversize_download_is_cut_off(http_root, data_cache):
    root, base = http_root
    (root / "big.bin").write_bytes(PAYLOAD * 4)
    with pytest.raises(ChecksumError, match="more than the expected"):
        download(f"{base}/big.bin", data_cache / "big.bin", sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True)
    assert _leftovers(data_cache) == []


def test_corrupt_cached_file_is_replaced(http_root, data_cache):
    root, base = http_root
    (root / "f.csv").write_bytes(PAYLOAD)
    dest = data_cache / "f.csv"
    data_cache.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"damaged")
    download(f"{base}/f.csv", dest, sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True)
    assert sha256_file(dest) == sha256_bytes(PAYLOAD)


def test_unreachable_server_retries_then_raises(data_cache):
    url = f"http://127.0.0.1:{_free_port()}/nothing.csv"  # nobody listens there
    with pytest.raises(DownloadError, match="after 2 attempt"):
        download(url, data_cache / "x.csv", "0" * 64, 10, retries=2, backoff=0, timeout=2, quiet=True)
    assert _leftovers(data_cache) == []


def test_http_404_is_not_retried(http_root, data_cache):
    _, base = http_root
    with pytest.raises(DownloadError, match="after 1 attempt"):
        download(f"{base}/missing.csv", data_cache / "m.csv", "0" * 64, 10, retries=3, backoff=0, quiet=True)


@pytest.mark.parametrize("kwargs", [{"retries": 0}, {"timeout": 0}, {"size": None}, {"size": -1}, {"deadline": 0}])
def test_download_rejects_bad_arguments(kwargs, data_cache):
    with pytest.raises(ValueError):
        download("http://127.0.0.1/x", data_cache / "x", "0" * 64, **{"size": 10, **kwargs})


def _manifest(tmp_path, url: str, sha: str, size, filename="tiny/tiny.csv") -> DataManifest:
    manifest = {
        "datasets": [
            {
                "name": "tiny",
                "description": "a tiny test file",
                "licence": "CC0",
                "offline": False,
                "offline_alternative": "digits",
                "source": {"kind": "url", "files": [{"url": url, "filename": filename, "sha256": sha, "size": size}]},
            }
        ]
    }
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(manifest))
    return DataManifest(path)


def test_fetch_downloads_then_uses_cache(http_root, data_cache, tmp_path):
    root, base = http_root
    (root / "tiny.csv").write_bytes(PAYLOAD)
    manifest = _manifest(tmp_path, f"{base}/tiny.csv", sha256_bytes(PAYLOAD), len(PAYLOAD))
    (path,) = fetch("tiny", manifest, quiet=True)
    assert path == data_cache / "tiny" / "tiny.csv" and path.read_bytes() == PAYLOAD


def test_fetch_offline_names_dataset_and_alternative(data_cache, tmp_path):
    manifest = _manifest(tmp_path, f"http://127.0.0.1:{_free_port()}/tiny.csv", "0" * 64, 10)
    with pytest.raises(OfflineError) as err:
        fetch("tiny", manifest, retries=1, timeout=2, quiet=True)
    message = str(err.value)
    assert "'tiny'" in message and "'digits'" in message and "fetch tiny" in message
    assert _leftovers(data_cache) == []


def test_fetch_with_offline_flag_never_touches_network(data_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGMODEL_OFFLINE", "1")
    manifest = _manifest(tmp_path, "http://127.0.0.1:9/never", "0" * 64, 10)
    with pytest.raises(OfflineError, match="BIGMODEL_OFFLINE"):
        fetch("tiny", manifest, quiet=True)


def _cli(*args, env_extra=None, cwd=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "bigmodel_utils.data", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_unknown_name_is_one_clear_line(data_cache):
    proc = _cli("fetch", "mnsit")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown data set 'mnsit'") and "'mnist'" in lines[0]


def test_cli_offline_fetch_is_one_clear_line(data_cache):
    proc = _cli("fetch", "mnist", env_extra={"BIGMODEL_OFFLINE": "1"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'mnist'" in lines[0] and "'digits'" in lines[0]
    assert _leftovers(data_cache) == []


def test_cli_list_and_verify(data_cache):
    listing = _cli("list")
    assert listing.returncode == 0 and "reviews_zh" in listing.stdout and "mnist" in listing.stdout
    verified = _cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "corrupt" not in verified.stdout.split("\n\n")[0]


def test_cli_corrupted_download_is_one_clear_line(http_root, data_cache, tmp_path):
    root, base = http_root
    (root / "tiny.csv").write_bytes(PAYLOAD + b"tampered")
    manifest = _manifest(tmp_path, f"{base}/tiny.csv", sha256_bytes(PAYLOAD), len(PAYLOAD) + 100)
    proc = _cli("--manifest", str(manifest.path), "fetch", "tiny")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tiny.csv: checksum mismatch"), proc.stderr
    assert _leftovers(data_cache) == []


def test_cli_verify_flags_a_corrupt_cached_file(http_root, data_cache, tmp_path):
    manifest = _manifest(tmp_path, "http://127.0.0.1:9/unused", sha256_bytes(PAYLOAD), len(PAYLOAD))
    (data_cache / "tiny").mkdir(parents=True)
    (data_cache / "tiny" / "tiny.csv").write_bytes(b"not the right bytes")
    proc = _cli("--manifest", str(manifest.path), "verify")
    assert proc.returncode == 1 and "corrupt" in proc.stdout


# --- a server that misbehaves ------------------------------------------------------------------------------


@pytest.fixture
def bad_server():
    """A server on 127.0.0.1 whose paths misbehave: /drip (one byte every 0.2 s), /short (Content-Length larger
    than what it sends), /flaky (500, then 200), /gone (404); ``hits`` counts the requests per path."""
    import http.server
    import threading
    import time

    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - the http.server API
            hits[self.path] = hits.get(self.path, 0) + 1
            if self.path == "/gone":
                self.send_error(404)
            elif self.path == "/flaky" and hits[self.path] == 1:
                self.send_error(500)
            elif self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD)))
                self.end_headers()
                for byte in PAYLOAD[:200]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(PAYLOAD) + (1000 if self.path == "/short" else 0)))
                self.end_headers()
                self.wfile.write(PAYLOAD)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_drip_hits_the_whole_download_deadline(bad_server, data_cache):
    import time

    base, _ = bad_server
    start = time.monotonic()
    with pytest.raises(DownloadError, match="deadline"):  # every read arrives well within the 30 s read timeout
        download(f"{base}/drip", data_cache / "d.csv", sha256_bytes(PAYLOAD), len(PAYLOAD), deadline=2, retries=3,
                 backoff=0, quiet=True)
    assert time.monotonic() - start < 6, "the deadline covers the whole download"
    assert _leftovers(data_cache) == []


def test_a_truncated_response_is_retried_then_refused(bad_server, data_cache):
    base, hits = bad_server
    with pytest.raises(DownloadError, match="after 2 attempt"):
        download(f"{base}/short", data_cache / "s.csv", sha256_bytes(PAYLOAD), len(PAYLOAD) + 1000, retries=2,
                 backoff=0, timeout=5, quiet=True)
    assert hits["/short"] == 2 and _leftovers(data_cache) == []


def test_a_server_error_then_success_is_retried(bad_server, data_cache):
    base, hits = bad_server
    got = download(f"{base}/flaky", data_cache / "f.csv", sha256_bytes(PAYLOAD), len(PAYLOAD), backoff=0, quiet=True)
    assert got.read_bytes() == PAYLOAD and hits["/flaky"] == 2


def test_a_wrong_hash_and_a_404_are_not_retried(bad_server, data_cache):
    base, hits = bad_server
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        download(f"{base}/ok", data_cache / "o.csv", "0" * 64, len(PAYLOAD), backoff=0, quiet=True)
    with pytest.raises(DownloadError, match="after 1 attempt"):
        download(f"{base}/gone", data_cache / "g.csv", "0" * 64, 10, backoff=0, quiet=True)
    assert hits == {"/ok": 1, "/gone": 1} and _leftovers(data_cache) == []


def test_a_full_disk_is_reported_at_once_and_not_retried(bad_server, data_cache, monkeypatch):
    from bigmodel_utils.data import CacheWriteError
    download_module = importlib.import_module("bigmodel_utils.data.download")

    base, hits = bad_server

    class FullDisk:
        def __init__(self, real):
            self.real = real

        def write(self, data):
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.real.close()

    real_fdopen = download_module.os.fdopen
    monkeypatch.setattr(download_module.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(CacheWriteError, match="free some disk space"):
        download(f"{base}/ok", data_cache / "full.csv", sha256_bytes(PAYLOAD), len(PAYLOAD), retries=3, backoff=0,
                 quiet=True)
    assert hits == {"/ok": 1}, "a disk error is not a network error: not retried"
    assert _leftovers(data_cache) == []


def test_ctrl_c_is_not_wrapped(bad_server, data_cache, monkeypatch):
    download_module = importlib.import_module("bigmodel_utils.data.download")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(download_module.urllib.request, "urlopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download(f"{bad_server[0]}/ok", data_cache / "k.csv", sha256_bytes(PAYLOAD), len(PAYLOAD), quiet=True)
    assert _leftovers(data_cache) == []


@pytest.mark.parametrize("filename", ["/etc/passwd", "../outside.csv", "a/../../b", "a\\b", ".hidden", "a//b", 7])
def test_manifest_file_names_cannot_escape_the_cache(tmp_path, filename):
    from bigmodel_utils.data import ManifestError

    with pytest.raises(ManifestError, match="relative path inside the cache"):
        _manifest(tmp_path, "http://127.0.0.1/x", "0" * 64, 10, filename=filename)


@pytest.mark.parametrize("size", [None, "10", -5, True])
def test_manifest_url_files_state_their_size(tmp_path, size):
    from bigmodel_utils.data import ManifestError

    with pytest.raises(ManifestError, match="needs its 'size'"):
        _manifest(tmp_path, "http://127.0.0.1/x", "0" * 64, size)


def test_the_books_manifest_gives_every_download_a_size():
    entries = [e for e in DataManifest() if e.source_kind == "url"]
    assert entries and all(isinstance(f.size, int) and f.size > 0 for e in entries for f in e.files)
