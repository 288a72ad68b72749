"""The Flask application factory of the book's model service (chapter 11).

``create_app([served_model, ...])`` returns a WSGI app with, for each model ``<name>``:

- ``POST /models/<name>/predict``: ``{"instances": [...]}`` in, ``{"model", "version", "predictions"}`` out;
- ``GET /models/<name>``: metadata (input schema, version, labels, metrics);

and, for each generator (chapter 14: chapter 13's GPT, :mod:`bigmodel_utils.serving.generation`) ``<name>``:

- ``POST /models/<name>/generate``: ``{"prompt", "max_tokens", ...}`` in; out either one JSON answer
  ``{"model", "version", "text", "finish_reason", "usage", "seed", "unknown_characters"}`` or, with
  ``"stream": true``, server-sent events: ``data: {"token": "好"}`` per token as it is drawn, then
  ``event: done`` with the answer's fields but the text. The request is validated before the stream starts,
  so a bad one is an ordinary JSON 4xx;

and ``GET /health``, ``GET /metrics`` (Prometheus text format) and ``GET /`` (a page to try the models).
Every error is JSON ``{"error": {"status", "message"}}`` with a 4xx status for anything the client can fix;
the body size is limited (``MAX_CONTENT_LENGTH``, a JSON 413); debug mode is never on. Serve it with a
production WSGI server: ``python -m bigmodel_utils.serving`` (waitress).
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import Any, Iterable

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException

from bigmodel_utils.serving.generation import GenerationRun, ServedGenerator
from bigmodel_utils.serving.served import ServedModel
from bigmodel_utils.serving.validation import BadRequest

log = logging.getLogger("bigmodel_utils.serving")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GENERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


MAX_MESSAGE = 500  # characters of an error message: one that quotes the client's input is cut, never echoed whole


def _error(status: int, message: str):
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    response = jsonify({"error": {"status": status, "message": message}})
    response.status_code = status
    return response


def read_json(req) -> Any:
    """The request's body as JSON, or :class:`BadRequest` (a 4xx) that says what to send instead.

    Stricter than Flask's ``request.get_json``, which answers a body nested too deeply with a 500 (Python's
    parser raises ``RecursionError``, not ``ValueError``) and decodes bytes that are not UTF-8 by replacing them,
    so the model would see other text than the client sent. The body's size is limited before it is read
    (``MAX_CONTENT_LENGTH``: a 413, chunked bodies included). Numbers that do not fit a float, and lone
    surrogates in strings, parse here and are refused by the validators, which say which value is wrong.
    """
    if not req.is_json:
        raise BadRequest("send JSON with the header Content-Type: application/json", status=415)
    body = req.get_data(cache=True)  # raises RequestEntityTooLarge (413) past MAX_CONTENT_LENGTH
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 (byte {error.start} is invalid): send JSON encoded as UTF-8") from None
    if not text.strip():
        raise BadRequest('the body is empty: send a JSON object such as {"instances": [...]}')
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply: an input is at most a few levels of lists") from None
    except ValueError as error:  # JSONDecodeError, and integers longer than Python's 4,300-digit limit
        raise BadRequest(f"the body is not valid JSON ({str(error)[:120]})") from None


def install_error_handlers(app: Flask, endpoints: str) -> None:
    """Every error as JSON: 404/405/413 with a message naming ``endpoints``, a logged 500 for bugs."""

    app.url_map.merge_slashes = False  # werkzeug would answer "//" with an HTML 308 redirect: a plain 404 instead

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        allowed = sorted(getattr(error, "valid_methods", None) or [])
        messages = {413: f"request body larger than {app.config['MAX_CONTENT_LENGTH']:,} bytes: send fewer or "
                         "smaller instances",
                    404: f"no such endpoint: {endpoints}",
                    405: f"method {request.method[:20]} not allowed here: use "
                         f"{' or '.join(m for m in allowed if m not in ('HEAD', 'OPTIONS')) or 'another method'}"}
        response = _error(error.code or 500, messages.get(error.code, error.description or error.name))
        if error.code == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):  # a bug, not the client's fault: log it, say nothing internal
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal error; it has been logged")


def event_stream(run: GenerationRun) -> Response:
    """``run`` as server-sent events: ``data: {"token": ...}`` per token as it is drawn, then ``event: done``.

    The body is produced while it is sent (a WSGI iterable), so each token leaves when it exists; closing the
    response (the end, or the client gone: the server stops iterating and closes it) closes the run, whose
    ``on_end`` callbacks then count and bill what was generated. An error in the middle, after the status line has
    gone, becomes an ``event: error`` (and a log entry), not a cut connection with no word.
    """

    def data(value) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")

    def events():
        try:
            for token in run:
                yield b"data: " + data({"token": token}) + b"\n\n"
            yield b"event: done\ndata: " + data(run.summary()) + b"\n\n"
        except Exception:
            log.exception("generation failed in the middle of a stream of %s", run.served.name)
            yield b'event: error\ndata: {"error": {"status": 500, "message": "internal error; it has been logged"}}\n\n'

    response = Response(events(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx and similar proxies: pass each event on, do not buffer
    response.call_on_close(run.close)
    return response


def answer_run(run: GenerationRun) -> Response:
    """The answer to a started generation: server-sent events if the request asked for a stream, else one JSON
    answer with the whole text (the run is closed either way, so its ``on_end`` callbacks count and bill it)."""
    if run.request.stream:
        return event_stream(run)
    try:
        text = "".join(run)
    finally:
        run.close()
    return jsonify(run.answer(text))


def create_app(models: Iterable[ServedModel], max_content_length: int = 1 << 20,
               generators: Iterable[ServedGenerator] = ()) -> Flask:
    """Build the service for ``models`` and ``generators`` (already loaded: loading happens once, before the first
    request). Names are unique across both: each is one ``/models/<name>``."""
    served: dict[str, ServedModel] = {}
    generating: dict[str, ServedGenerator] = {}
    for m in list(models) + list(generators):
        if m.name in served or m.name in generating:
            raise ValueError(f"two models are named {m.name!r}: give each a unique name")
        (generating if isinstance(m, ServedGenerator) else served)[m.name] = m
    if not served and not generating:
        raise ValueError("nothing to serve: pass at least one loaded model (see load_served_model) or generator "
                         "(see load_served_generator)")
    everything = {**served, **generating}
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=int(max_content_length), JSON_SORT_KEYS=False, DEBUG=False,
                      PROPAGATE_EXCEPTIONS=False)
    metrics_registry = CollectorRegistry()  # one per app: tests and several apps in a process never collide
    requests_total = Counter("bigmodel_requests", "HTTP requests by model, endpoint and status",
                             ["model", "endpoint", "status"], registry=metrics_registry)
    latency = Histogram("bigmodel_request_seconds", "Time to answer a prediction request",
                        ["model"], buckets=LATENCY_BUCKETS, registry=metrics_registry)
    predictions_total = Counter("bigmodel_predictions", "Instances predicted", ["model"], registry=metrics_registry)
    generated_total = Counter("bigmodel_generated_tokens", "Tokens generated (the end-of-text token included)",
                              ["model"], registry=metrics_registry)
    prompt_total = Counter("bigmodel_prompt_tokens", "Prompt tokens read by generators", ["model"],
                           registry=metrics_registry)
    generations_total = Counter("bigmodel_generations", "Generations by how they ended", ["model", "finish_reason"],
                                registry=metrics_registry)
    first_token = Histogram("bigmodel_time_to_first_token_seconds", "Time from a valid generation request to its "
                            "first token", ["model"], buckets=GENERATION_BUCKETS, registry=metrics_registry)
    generation_seconds = Histogram("bigmodel_generation_seconds", "Time from a valid generation request to its "
                                   "last token", ["model"], buckets=GENERATION_BUCKETS, registry=metrics_registry)
    page = resources.files("bigmodel_utils.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.after_request
    def count(response):
        model = (request.view_args or {}).get("name", "-")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        requests_total.labels(model if model in everything else "-", endpoint, str(response.status_code)).inc()
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    install_error_handlers(app, "GET /health, GET /models/<name>, POST /models/<name>/predict, "
                                "POST /models/<name>/generate")

    def unknown(name: str):
        return _error(404, f"no model named {name!r}; available: {sorted(everything)}")

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "models": {n: m.version for n, m in everything.items()}})

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(metrics_registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/models")
    def list_models():
        return jsonify({"models": [m.metadata() for m in everything.values()]})

    @app.get("/models/<name>")
    def metadata(name: str):
        if name not in everything:
            return unknown(name)
        return jsonify(everything[name].metadata())

    @app.post("/models/<name>/predict")
    def predict(name: str):
        if name in generating:
            return _error(404, f"{name!r} is a text generator: POST /models/{name}/generate")
        if name not in served:
            return unknown(name)
        start = time.perf_counter()
        model = served[name]
        try:
            answer = model.respond(read_json(request))
        except BadRequest as error:
            return _error(error.status, str(error))
        latency.labels(name).observe(time.perf_counter() - start)
        predictions_total.labels(name).inc(len(answer["predictions"]))
        return jsonify(answer)

    def observe(run: GenerationRun) -> None:  # however the run ends: finished, timed out, or the client gone
        name = run.served.name
        prompt_total.labels(name).inc(run.usage["prompt_tokens"])
        generated_total.labels(name).inc(run.generated_tokens)
        generations_total.labels(name, run.finish_reason).inc()
        if run.first_token_seconds is not None:
            first_token.labels(name).observe(run.first_token_seconds)
        generation_seconds.labels(name).observe(run.seconds)

    @app.post("/models/<name>/generate")
    def generate(name: str):
        if name in served:
            return _error(404, f"{name!r} is a classifier, not a generator: POST /models/{name}/predict")
        if name not in generating:
            return unknown(name)
        generator = generating[name]
        try:
            wanted = generator.validate(read_json(request))
        except BadRequest as error:
            return _error(error.status, str(error))
        run = generator.start(wanted)
        run.on_end.append(observe)
        return answer_run(run)

    return app


def create_server(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 8,
                  max_body: int = 1 << 20):
    """A waitress server for ``app`` (not started: ``.run()``; ``port=0``: a free port, ``.effective_port``).

    waitress buffers a whole body before the app sees it, so its own limit is set just above the app's
    ``MAX_CONTENT_LENGTH``: a client cannot make the server hold a gigabyte (waitress's default) to be refused.
    Streamed answers are not held back, so nothing is set for them: since waitress 1.3 ``send_bytes`` (the bytes
    it collects before sending, 18,000 before) is 1 and deprecated, since 2.1 the app's thread sends each chunk
    it yields straight to the socket, and ``TCP_NODELAY`` is on (no Nagle delay for small packets); the project
    requires waitress 3. ``tests/test_generation_service.py`` checks over real HTTP that the first token of a
    slow generation arrives long before the last.
    """
    import waitress.server

    return waitress.server.create_server(app, host=host, port=port, threads=threads,
                                         max_request_body_size=int(max_body) + 64 * 1024)


def serve(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 8, max_body: int = 1 << 20,
          name: str = "the service") -> None:
    """Run ``app`` under waitress (:func:`create_server`) until stopped; print the URL it listens on (``port=0``:
    a free port)."""
    server = create_server(app, host, port, threads, max_body)
    print(f"serving {name} on http://{host}:{server.effective_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
