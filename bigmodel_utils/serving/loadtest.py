"""A bounded load test on 127.0.0.1: the served model against the seed's naive service (chapter 11).

Both services run in their own process under the same WSGI server (waitress) with the same number of
threads, so the table measures what differs: the naive one calls ``model.predict`` per request on an unvalidated
``np.array(request.json[...])``, as the seed article does; the book's validates the input and runs a traced
``tf.function``. ``benchmarks/serving_load.py`` runs it from the command line.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class LoadResult:
    name: str
    clients: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # requests per second
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def naive_app(path: str | Path):
    """The seed's service, as written there but without debug mode: ``model.predict`` on whatever arrives."""
    from flask import Flask, jsonify, request

    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    model = keras.saving.load_model(path, compile=False)
    app = Flask("naive")

    @app.post("/models/digits/predict")
    def predict():
        x = np.array(request.json["instances"])[..., None]
        return jsonify({"predictions": model.predict(x, verbose=0).tolist()})

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app


@contextmanager
def running(app, threads: int = 8):
    """Serve ``app`` with waitress on a free port of 127.0.0.1 in a background thread; yield its base URL."""
    import logging

    import waitress.server

    # "Task queue depth is 1": waitress notes that a request waited for a free thread, which a load test
    # with as many clients as threads provokes on purpose; the latencies measure it
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)


def load_test(url: str, images: np.ndarray, name: str, clients: int = 8, requests: int = 800,
              warmup: int = 20, timeout: float = 30.0) -> LoadResult:
    """Send ``requests`` single-image predictions from ``clients`` threads; time each one.

    Each client keeps one HTTP/1.1 connection open (as browsers and HTTP libraries do) and sends its
    requests one after another; a failed request counts as an error and the client reconnects.
    """
    import http.client
    from urllib.parse import urlsplit

    if clients < 1 or requests < clients:
        raise ValueError(f"need at least one client and one request per client, got {clients} and {requests}")
    host, port = urlsplit(url).hostname, urlsplit(url).port
    bodies = [json.dumps({"instances": [np.asarray(img).reshape(8, 8).tolist()]}).encode() for img in images]
    headers = {"Content-Type": "application/json"}

    def send(connection, body: bytes) -> None:
        connection.request("POST", "/models/digits/predict", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")

    warm = http.client.HTTPConnection(host, port, timeout=timeout)
    for i in range(warmup):
        send(warm, bodies[i % len(bodies)])
    warm.close()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_client = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]

    def client(c: int) -> None:
        mine, connection = [], http.client.HTTPConnection(host, port, timeout=timeout)
        for i in range(per_client[c]):
            start = time.perf_counter()
            try:
                send(connection, bodies[(c * 7919 + i) % len(bodies)])
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                continue
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return LoadResult(name, clients, requests, errors[0], seconds, len(latencies) / seconds,
                      float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


@contextmanager
def process_serving(command: list[str], name: str = "service", startup_timeout: float = 120.0):
    """Run ``command``, a server started with ``--port 0`` that prints ``http://127.0.0.1:<port>/`` once it listens
    and answers ``GET /health``, in its own process; yield its base URL once it answers; stop it (and wait)
    afterwards, also when the block fails.

    The server picks its own free port and says which, so two servers started at once cannot race for one
    port; its output goes to a temporary file (a pipe nobody reads would fill up and block it).
    """
    import re
    import subprocess
    import tempfile
    import urllib.request

    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)

    def output() -> str:
        log.seek(0)
        return log.read()

    try:
        deadline = time.monotonic() + startup_timeout
        url = None
        while True:
            if url is None:
                found = re.search(r"http://127\.0\.0\.1:(\d+)/", output())
                url = f"http://127.0.0.1:{found.group(1)}" if found else None
            try:
                if url is not None:
                    with urllib.request.urlopen(url + "/health", timeout=2):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = "exited" if proc.poll() is not None else "still starting"
                raise RuntimeError(f"the {name} did not start ({state}): {output()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def serving_process(path: str | Path, naive: bool = False, threads: int = 8, startup_timeout: float = 120.0):
    """Run the service (or the naive one) for the digits model at ``path`` in its own process, as it would
    run in production, on a free port of 127.0.0.1; a context manager that yields its base URL.

    A separate process keeps the load-generating clients from competing with the server for Python's GIL.
    """
    import sys

    command = [sys.executable, "-m", "bigmodel_utils.serving.loadtest", "--model", str(path), "--port", "0",
               "--threads", str(threads)] + (["--naive"] if naive else [])
    return process_serving(command, "naive service" if naive else "service", startup_timeout)


def compare(path: str | Path, images: np.ndarray, clients: int = 8, requests: int = 800) -> list[LoadResult]:
    """The naive service and the book's, one after the other, each in its own waitress process with
    ``clients`` threads, the same requests from ``clients`` concurrent clients."""
    results = []
    for naive, name in ((True, "naive: model.predict per request"), (False, "served: validated, tf.function")):
        with serving_process(path, naive=naive, threads=clients) as url:
            results.append(load_test(url, images, name, clients, requests))
    return results


def _serve_main(argv: list[str] | None = None) -> int:
    """``python -m bigmodel_utils.serving.loadtest --model PATH --port N [--naive]``: one service, for the load test."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.serving.loadtest")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--naive", action="store_true", help="the seed's model.predict-per-request service")
    args = parser.parse_args(argv)
    if args.naive:
        app = naive_app(args.model)
    else:
        from bigmodel_utils.serving import create_app, load_served_model

        app = create_app([load_served_model(args.model, "digits")])
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # queueing is what a load test provokes
    from bigmodel_utils.serving.app import serve

    serve(app, "127.0.0.1", args.port, args.threads, name="the naive service" if args.naive else "the service")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_serve_main())
