"""JupyterLab starts on 127.0.0.1 and serves the chapters through its contents API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bigmodel_utils.paths import CHAPTERS_DIR


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jupyter_lab_serves_the_chapters(tmp_path):
    jupyter = Path(sys.executable).with_name("jupyter")
    assert jupyter.exists() or shutil.which("jupyter"), "jupyter is not installed in this environment"
    port, token = _free_port(), "bigmodel-test-token"
    cmd = [str(jupyter if jupyter.exists() else "jupyter"), "lab", "--no-browser", f"--notebook-dir={CHAPTERS_DIR}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
           "--ServerApp.port_retries=0"] + (["--allow-root"] if os.geteuid() == 0 else [])
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline, listing, last_error = time.monotonic() + 90, None, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents/", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    listing = json.load(resp)
                break
            except OSError as exc:
                last_error = exc
                time.sleep(0.5)
        assert listing is not None, f"JupyterLab did not answer within 90 s ({last_error})"
        names = {item["name"] for item in listing["content"]}
        assert "00_setup.ipynb" in names and "solutions" in names
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/api/contents/00_setup.ipynb", headers={"Authorization": f"token {token}"}), timeout=10) as resp:
            nb = json.load(resp)
        assert nb["type"] == "notebook" and nb["content"]["cells"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as resp:
            assert resp.status == 200 and b"JupyterLab" in resp.read()
    finally:
        if proc.poll() is not None:
            print(proc.stdout.read().decode(errors="replace")[-3000:])  # why it stopped
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
