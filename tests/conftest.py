"""Shared fixtures: an isolated data cache and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for this test only, with the network allowed."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BIGMODEL_DATA_DIR", str(cache))
    monkeypatch.delenv("BIGMODEL_OFFLINE", raising=False)
    return cache


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve a temporary folder over HTTP on 127.0.0.1; yields (folder, base_url). Stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return _Handler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
