"""A bounded load test on 127.0.0.1: the served model against the seed's naive service (chapter 11).

Both services run in their own process under the same WSGI server (waitress) with the same number of
threads, so the table measures what differs: the naive one calls ``model.predict`` per request on an unvalidated
``np.array(request.json[...])``, as the seed article does; the book's validates the input and runs a traced
``tf.function``. ``benchmarks/serving_load.py`` runs it from the command line.

Chapter 14 load-tests text generation the same way (:func:`generation_load_test`): streamed requests from
concurrent clients, timing the first token of each answer (time to first token) and counting the tokens that
arrive per second; :func:`kv_cache_comparison` serves the same GPT with and without its KV cache and measures both.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

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
    """Serve ``app`` with waitress, configured as ``serve`` configures it, on a free port of 127.0.0.1 in a
    background thread; yield its base URL."""
    import logging

    from bigmodel_utils.serving.app import create_server

    # "Task queue depth is 1": waitress notes that a request waited for a free thread, which a load test
    # with as many clients as threads provokes on purpose; the latencies measure it
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = create_server(app, "127.0.0.1", 0, threads, app.config.get("MAX_CONTENT_LENGTH") or 1 << 20)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop_in_thread(server, thread)


def stop_in_thread(server, thread: threading.Thread, timeout: float = 10.0) -> None:
    """Stop a waitress ``server`` whose loop runs in ``thread``, in order: first its worker threads (they finish
    their requests, which still need the loop), then, inside the loop's own thread, every socket (the listening one,
    the connections clients kept open, the loop's wake-up pipe), which ends the loop. Closing them from another
    thread while the loop waits on them and the workers write to them fails with "Bad file descriptor"."""
    from waitress import wasyncore

    server.task_dispatcher.shutdown(timeout=timeout)
    # waitress keeps a server's sockets in server._map (no public name); close_all empties it, and the loop ends
    if thread.is_alive():
        try:
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
        except OSError:  # the wake-up pipe is gone: the loop is ending anyway
            pass
        thread.join(timeout=timeout)
    if thread.is_alive():  # the loop did not answer: close from here, as a last resort
        server.close()
        thread.join(timeout=timeout)
    else:  # whatever the loop left open (nothing, unless it had died); no thread waits on it any more
        wasyncore.close_all(server._map, ignore_all=True)


def _run_clients(client, clients: int) -> float:
    """Run ``client(c)`` for ``c`` in ``range(clients)``, each in its own thread, all at once; the wall time."""
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


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

    seconds = _run_clients(client, clients)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return LoadResult(name, clients, requests, errors[0], seconds, len(latencies) / seconds,
                      float(np.percentile(ms, 50)), float(np.percentile(ms, 99)))


def iter_events(lines: Iterable[bytes]) -> Iterator[tuple[str, Any]]:
    """Server-sent events from a stream's lines (an HTTP response, or ``io.BytesIO(body)``), as they arrive:
    ``(event, data)`` with ``event`` ``"message"`` when the server named none and ``data`` parsed as JSON."""
    event, data = "message", []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:  # a blank line ends an event
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, json.loads("\n".join(data))


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


@dataclass
class GenerationLoadResult:
    name: str
    clients: int
    requests: int
    errors: int
    seconds: float
    tokens: int  # tokens received by all clients
    ttft_p50_ms: float  # time to first token: from sending a request to its first token event
    ttft_p95_ms: float
    tokens_per_second: float  # all clients together: tokens / seconds
    tokens_per_second_per_client: float  # each client's tokens / its time, averaged over the clients
    finish_reasons: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def generation_load_test(url: str, name: str, prompts: list[str], clients: int = 1, requests: int = 8,
                         max_tokens: int = 40, temperature: float = 1.0, seed: int = 0, prefix: str = "",
                         headers: dict[str, str] | None = None, warmup: int = 1,
                         timeout: float = 60.0) -> GenerationLoadResult:
    """Send ``requests`` streamed generation requests to ``{url}{prefix}/models/{name}/generate`` from ``clients``
    threads; time each one's first token and count the tokens that arrive.

    Request ``i`` continues ``prompts[i % len(prompts)]`` with ``seed + i``, so two services that generate alike
    (the GPT with and without its KV cache) get the same work. Each client keeps one HTTP/1.1 connection and sends
    its requests one after another; a request that fails, or whose stream ends without its ``done`` event, is an
    error. Only a service on this machine is load-tested (``url`` on 127.0.0.1). ``prefix="/v1"`` and
    ``headers={"Authorization": ...}`` test the MaaS.
    """
    import http.client
    from urllib.parse import urlsplit

    if clients < 1 or requests < clients:
        raise ValueError(f"need at least one client and one request per client, got {clients} and {requests}")
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    host, port = urlsplit(url).hostname, urlsplit(url).port
    if host not in LOOPBACK:
        raise ValueError(f"the load test runs against a service on this machine (127.0.0.1), not {host!r}")
    target = f"{prefix}/models/{name}/generate"
    sent = {"Content-Type": "application/json", **(headers or {})}

    def one(connection, i: int) -> tuple[float | None, int, str]:
        """(seconds to the first token, tokens, finish_reason) of request ``i``; raises OSError if it failed."""
        body = json.dumps({"prompt": prompts[i % len(prompts)], "max_tokens": max_tokens, "temperature": temperature,
                           "seed": seed + i, "stream": True}).encode()
        start = time.perf_counter()
        connection.request("POST", target, body=body, headers=sent)
        response = connection.getresponse()
        if response.status != 200:
            response.read()
            raise OSError(f"HTTP {response.status}")
        first, tokens, finish = None, 0, None
        for event, data in iter_events(response):
            if event == "message":
                first = time.perf_counter() - start if first is None else first
                tokens += 1
            elif event == "done":
                finish = data["finish_reason"]
            else:
                raise OSError(f"the stream reported {event}: {data}")
        if finish is None:
            raise OSError("the stream ended without its done event")
        return first, tokens, finish

    warm = http.client.HTTPConnection(host, port, timeout=timeout)
    for i in range(warmup):  # requests after the measured ones: their own seeds
        one(warm, requests + i)
    warm.close()
    firsts: list[float] = []
    per_client: list[float] = []
    finishes: dict[str, int] = {}
    counts = {"errors": 0, "tokens": 0}
    lock = threading.Lock()
    shares = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]
    offsets = np.cumsum([0] + shares)

    def client(c: int) -> None:
        mine_first, mine_tokens, mine_errors, mine_finish = [], 0, 0, []
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        began = time.perf_counter()
        for i in range(int(offsets[c]), int(offsets[c + 1])):
            try:
                first, tokens, finish = one(connection, i)
            except (OSError, http.client.HTTPException, ValueError):
                mine_errors += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                continue
            mine_tokens += tokens
            mine_finish.append(finish)
            if first is not None:
                mine_first.append(first)
        busy = time.perf_counter() - began
        connection.close()
        with lock:
            firsts.extend(mine_first)
            counts["errors"] += mine_errors
            counts["tokens"] += mine_tokens
            per_client.append(mine_tokens / busy if busy > 0 else 0.0)
            for f in mine_finish:
                finishes[f] = finishes.get(f, 0) + 1

    seconds = _run_clients(client, clients)
    ms = np.array(firsts) * 1000 if firsts else np.array([np.nan])
    return GenerationLoadResult(name, clients, requests, counts["errors"], seconds, counts["tokens"],
                                float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                                counts["tokens"] / seconds, float(np.mean(per_client)), dict(sorted(finishes.items())))


def generation_serving_process(stem: str | Path, threads: int = 8, max_tokens: int = 200, max_seconds: float = 60.0,
                               startup_timeout: float = 120.0):
    """Serve the GPT saved at ``stem`` twice, as ``gpt`` (KV cache) and ``gpt_nocache``, in its own process on a
    free port of 127.0.0.1; a context manager that yields the base URL."""
    import sys

    command = [sys.executable, "-m", "bigmodel_utils.serving.loadtest", "--gpt", str(stem), "--port", "0",
               "--threads", str(threads), "--max-tokens", str(max_tokens), "--max-seconds", str(max_seconds)]
    return process_serving(command, "generation service", startup_timeout)


def _generators(stem: str | Path, max_tokens: int, max_seconds: float) -> list:
    from bigmodel_utils.serving.generation import load_served_generator, without_cache

    cached = load_served_generator(stem, "gpt", max_tokens=max_tokens, max_seconds=max_seconds)
    return [cached, without_cache(cached)]


def kv_cache_comparison(stem: str | Path, prompts: list[str], clients=(1, 8), requests_per_client: int = 4,
                        max_tokens: int = 100, temperature: float = 1.0, seed: int = 0, max_seconds: float = 60.0,
                        process: bool = True) -> list[GenerationLoadResult]:
    """The GPT at ``stem`` served with its KV cache (``gpt``) and without (``gpt_nocache``) by one waitress service,
    each load-tested with every number of ``clients`` (``requests_per_client`` streamed requests each, the same
    prompts and seeds for both, so both generate the same tokens). ``process=True`` runs the service in its own
    process (clients and server do not share Python's GIL, as in production); ``False`` in a thread of this one
    (quicker to start: tests). ``max_seconds`` is generous so that no answer is cut short by time."""
    counts = [int(c) for c in clients]
    threads = max(counts)
    results = []

    def measure(url: str) -> None:
        for name in ("gpt", "gpt_nocache"):
            for c in counts:
                results.append(generation_load_test(url, name, prompts, c, c * requests_per_client, max_tokens,
                                                    temperature, seed))

    if process:
        with generation_serving_process(stem, threads, max(max_tokens, 1), max_seconds) as url:
            measure(url)
    else:
        from bigmodel_utils.serving import create_app

        with running(create_app([], generators=_generators(stem, max(max_tokens, 1), max_seconds)), threads) as url:
            measure(url)
    return results


def _serve_main(argv: list[str] | None = None) -> int:
    """``python -m bigmodel_utils.serving.loadtest (--model PATH [--naive] | --gpt STEM) --port N``: one service,
    for a load test (``--gpt``: the GPT as ``gpt`` and ``gpt_nocache``)."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.serving.loadtest")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", type=Path, help="chapter 05's digits CNN (.keras)")
    what.add_argument("--gpt", type=Path, help="chapter 13's GPT (STEM of STEM.weights.h5 and STEM.json)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--naive", action="store_true", help="the seed's model.predict-per-request service")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.naive and args.model is None:
        parser.error("--naive serves the digits model: give --model")
    if args.naive:
        app = naive_app(args.model)
    elif args.gpt is not None:
        from bigmodel_utils.serving import create_app

        app = create_app([], generators=_generators(args.gpt, args.max_tokens, args.max_seconds))
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
