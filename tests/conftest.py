"""Shared fixtures: an isolated data cache, a real HTTP server on 127.0.0.1, headless Chromium, and each
parallel worker's share of the cores.

Test isolation: a test run never reads or writes the learner's own cache (``~/.cache/bigmodel``, or
``$XDG_CACHE_HOME/bigmodel``, or the ``$BIGMODEL_DATA_DIR`` the learner set). Before anything is collected,
``BIGMODEL_DATA_DIR`` points at a new, empty folder for this run, which every test and every notebook kernel
inherits; it is removed at the end. At the end of the run the learner's cache must be exactly as it was
(``pytest_sessionfinish`` fails the run otherwise; ``tests/test_zz_isolation.py`` checks it as a test too).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

LEARNER_CACHE: Path | None = None  # the cache a learner's own runs use: must be untouched by the tests
LEARNER_SNAPSHOT: dict | None = None
TEST_CACHE: Path | None = None  # this run's cache


def learner_cache_dir() -> Path:
    """Where ``bigmodel_utils.paths.data_dir`` would point without the tests' override (not created)."""
    override = os.environ.get("BIGMODEL_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "bigmodel"


def snapshot(folder: Path) -> dict | None:
    """Every file and folder under ``folder`` (files with size and modification time); None if it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def threads_per_worker(cores: int, workers: int) -> int:
    """The threads each of ``workers`` parallel test processes may use on ``cores`` cores (at least one)."""
    return max(1, cores // max(1, workers))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_the_cores(environ=os.environ) -> None:
    """Under pytest-xdist, each worker, and every notebook kernel and server it starts, uses its share of the
    cores instead of all of them: TensorFlow's and OpenMP's thread pools sized to cores // workers (a variable
    already set wins). On 2 cores, two chapters run side by side finish sooner so (measured: chapters 04 and 06
    at once, 61 s with the default pools, 44 s with one thread each, the same recorded results)."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if workers < 2:
        return
    for name in THREAD_VARIABLES:
        environ.setdefault(name, str(threads_per_worker(available_cores(), workers)))


def pytest_configure(config):
    global LEARNER_CACHE, LEARNER_SNAPSHOT, TEST_CACHE
    share_the_cores()
    LEARNER_CACHE = learner_cache_dir()
    LEARNER_SNAPSHOT = snapshot(LEARNER_CACHE)
    TEST_CACHE = Path(tempfile.mkdtemp(prefix="bigmodel-test-cache-"))
    # one id for the whole run, inherited by pytest-xdist's workers: the SMOKE timings of this run belong together
    os.environ.setdefault("BIGMODEL_TEST_RUN", time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}")
    os.environ["BIGMODEL_DATA_DIR"] = str(TEST_CACHE)  # inherited by notebook kernels and server processes


def pytest_sessionfinish(session, exitstatus):
    """Fail the run, whatever ran, if the learner's cache changed (the test in test_zz_isolation.py says where)."""
    if LEARNER_CACHE is not None and snapshot(LEARNER_CACHE) != LEARNER_SNAPSHOT:
        print(f"\nerror: the test run changed the learner's cache {LEARNER_CACHE}: something wrote outside "
              "BIGMODEL_DATA_DIR")
        session.exitstatus = 1


def pytest_unconfigure(config):
    if TEST_CACHE is not None:
        shutil.rmtree(TEST_CACHE, ignore_errors=True)


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder for this test only, with the network allowed."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BIGMODEL_DATA_DIR", str(cache))
    monkeypatch.delenv("BIGMODEL_OFFLINE", raising=False)
    return cache


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a browser that drops a request it no longer needs
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_folder(root: Path):
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_root(tmp_path):
    """Serve a temporary folder over HTTP on 127.0.0.1; yields (folder, base_url). Stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as url:
        yield root, url


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@contextlib.contextmanager
def headless_chromium(window_size: str = "1200,800", timeout: float = 30):
    """Headless Chromium driven by Selenium, for the browser tests (one per test module: start-up costs seconds).

    No other machine can be reached: host names do not resolve and every request not to this machine goes to a
    proxy that is not there (loopback addresses are never proxied). Every request is logged (the DevTools
    "performance" log), so a test can check what a page asked for. Without Chromium the test is skipped, and
    fails under CI (``make test`` installs it with ``make browser``)."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium not installed: `make browser` (Debian/Ubuntu: apt install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={window_size}",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(timeout)
    driver.set_script_timeout(timeout)
    try:
        yield driver
    finally:
        driver.quit()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory) -> Path:
    """A folder with two small saved models for the service tests (chapter 11): ``digits.keras`` (the book's
    CNN, narrow) and ``reviews.keras`` (raw text in, P(positive) out), plus ``digits.metrics.json``."""
    import json

    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from bigmodel_utils.models import build_digits_cnn

    folder = tmp_path_factory.mktemp("served")
    keras.utils.set_random_seed(0)
    build_digits_cnn((8, 8, 1), filters=(4, 8), dense=16).save(folder / "digits.keras")
    vectorize = keras.layers.TextVectorization(split="character", output_sequence_length=16)
    vectorize.adapt(["这本书写得非常好", "质量太差了", "很好", "不好"])
    text = keras.Input((1,), dtype="string")
    x = vectorize(keras.layers.Reshape(())(text))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(vectorize.vocabulary_size(), 4)(x))
    keras.Model(text, keras.layers.Dense(1, activation="sigmoid")(x)).save(folder / "reviews.keras")
    (folder / "digits.metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    return folder


@pytest.fixture(scope="module")
def served(saved_models):
    """The two saved models of :func:`saved_models` loaded as the service loads them (chapter 11's tests)."""
    from bigmodel_utils.serving import load_served_model

    return [load_served_model(saved_models / "digits.keras", "digits", max_batch=16),
            load_served_model(saved_models / "reviews.keras", "reviews", max_batch=16, max_text_length=100)]


def _processes_mentioning(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker`` (Linux /proc; zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (entry / "status").read_text().splitlines() if line.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmdline and "Z" not in state.split()[1:2]:
            found.append(int(entry.name))
    return found


@pytest.fixture
def processes_mentioning():
    """``processes_mentioning(marker)``: the live processes whose command line contains ``marker`` (Linux only)."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs Linux /proc")
    return _processes_mentioning


GPT_TEXTS = ["这家店的菜很好吃，服务也很好。", "这本书写得非常好，值得一读。", "质量太差了，不会再买。",
             "店里的环境不错，价格也不贵。", "快递很快，包装很好，东西也不错。"]


@pytest.fixture(scope="session")
def saved_gpt(tmp_path_factory) -> Path:
    """The stem of a tiny GPT saved as chapter 13 saves it (``gpt_tiny.weights.h5`` + ``gpt_tiny.json``), for the
    generation service's tests (chapter 14). Its ``[SEP]`` embedding is zero, so the end-of-text token scores
    exactly 0: greedy decoding never ends a text (some other token scores more), sampling sometimes does."""
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from bigmodel_utils.models.bert import CharTokenizer
    from bigmodel_utils.models.gpt import build_gpt, save_gpt

    keras.utils.set_random_seed(0)
    tokenizer = CharTokenizer.fit(GPT_TEXTS, max_size=200, min_count=1)
    model = build_gpt(len(tokenizer), 32, 16, 1, 2)
    tokens = model.get_layer("embeddings").tokens.embeddings
    table = keras.ops.convert_to_numpy(tokens).copy()
    table[tokenizer.sep_id] = 0.0
    tokens.assign(table)
    stem = tmp_path_factory.mktemp("gpt") / "gpt_tiny"
    save_gpt(model, tokenizer, stem, {"texts": len(GPT_TEXTS)}, {"held_out_loss": 3.5})
    return stem
