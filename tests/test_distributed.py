"""The local multi-worker launcher (chapter 09): clean runs, failing workers, time-outs, no orphans."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from bigmodel_utils.distributed import WorkerError, free_ports, launch_workers, tf_config


needs_proc = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError):
        free_ports(0)


def test_tf_config_names_the_cluster_and_the_task():
    config = tf_config(["127.0.0.1:1000", "127.0.0.1:1001"], 1)
    assert config == {"cluster": {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"]}, "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError, match="index"):
        tf_config(["127.0.0.1:1000"], 1)
    with pytest.raises(ValueError, match="host:port"):
        tf_config(["localhost"], 0)


def test_each_worker_gets_its_own_tf_config():
    code = "import json, os; c = json.loads(os.environ['TF_CONFIG']); print('INDEX', c['task']['index'], len(c['cluster']['worker']))"
    results = launch_workers([sys.executable, "-c", code], n_workers=3, timeout=60)
    assert [r.returncode for r in results] == [0, 0, 0]
    assert [r.output.strip() for r in results] == ["INDEX 0 3", "INDEX 1 3", "INDEX 2 3"]


@pytest.mark.slow
def test_two_workers_train_together_and_exit_cleanly(tmp_path, processes_mentioning):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "bigmodel_utils.distributed", "worker", "--out", str(out), "--smoke"]
    results = launch_workers(args, n_workers=2, timeout=240)
    assert [r.returncode for r in results] == [0, 0]
    reports = [json.loads((out / f"worker-{i}.json").read_text()) for i in range(2)]
    assert all(r["replicas"] == 2 and r["workers"] == 2 for r in reports)
    # one model, mirrored: both workers hold the same weights, so they agree exactly
    assert reports[0]["test_accuracy"] == reports[1]["test_accuracy"]
    assert reports[0]["losses"] == pytest.approx(reports[1]["losses"], rel=1e-6)
    assert reports[0]["losses"][-1] < reports[0]["losses"][0]
    assert not processes_mentioning(str(out))


@needs_proc
@pytest.mark.slow
def test_a_crashing_worker_stops_the_others_with_a_clear_error(tmp_path, processes_mentioning):
    out = tmp_path / "crash"
    args = [sys.executable, "-m", "bigmodel_utils.distributed", "worker", "--out", str(out), "--smoke", "--fail"]
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"(?s)worker 1 of 2 exited with code 1.*failing on purpose") as info:
        launch_workers(args, n_workers=2, timeout=240)
    assert time.monotonic() - start < 60, "worker 0 waits for its peer forever: the launcher must stop it"
    assert "other workers were stopped" in str(info.value)
    assert not processes_mentioning(str(out)), "a worker process was left behind"
    assert not (out / "worker-0.json").exists()


@needs_proc
@pytest.mark.slow
def test_a_hanging_cluster_times_out_and_leaves_nothing_behind(tmp_path, processes_mentioning):
    marker = f"hang-{os.getpid()}-{tmp_path.name}"
    # each worker also starts a child of its own: stopping must take the whole process group
    code = ("import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', '{marker}']); "
            "print('waiting for a peer', flush=True); time.sleep(120)")
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"(?s)still running after 2 s.*waiting for a peer"):
        launch_workers([sys.executable, "-c", code, marker], n_workers=2, timeout=2)
    assert time.monotonic() - start < 20
    assert not processes_mentioning(marker)


@needs_proc
@pytest.mark.slow
def test_a_child_that_ignores_term_is_killed_before_launch_workers_returns(tmp_path, processes_mentioning):
    # the worker goes at the first TERM; what it started does not, and must not outlive launch_workers
    marker, ready = f"deaf-{os.getpid()}-{tmp_path.name}", tmp_path / "ready"
    child = (f"import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             f"pathlib.Path({str(ready)!r}).touch(); time.sleep(120)")
    code = ("import os, subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-c', {child!r}, '{marker}']); "
            f"[time.sleep(0.05) for _ in range(200) if not os.path.exists({str(ready)!r})]; "
            "print('waiting for a peer', flush=True); time.sleep(120)")
    with pytest.raises(WorkerError, match=r"(?s)still running after 4 s.*waiting for a peer"):  # the child was ready
        launch_workers([sys.executable, "-c", code, marker], n_workers=1, timeout=4)
    assert not processes_mentioning(marker), "a child of a stopped worker is still running"


def test_bad_arguments_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match="command line"):
        launch_workers([])
    with pytest.raises(ValueError, match="n_workers"):
        launch_workers([sys.executable, "-c", "pass"], n_workers=0)
    with pytest.raises(ValueError, match="timeout"):
        launch_workers([sys.executable, "-c", "pass"], timeout=0)


@pytest.mark.slow
def test_a_worker_without_tf_config_says_how_to_start_it(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "bigmodel_utils.distributed", "worker", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "TF_CONFIG is not set" in proc.stderr and "launch_workers" in proc.stderr
