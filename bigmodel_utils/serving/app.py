"""The Flask application factory of the book's model service (chapter 11).

``create_app([served_model, ...])`` returns a WSGI app with, for each model ``<name>``:

- ``POST /models/<name>/predict``: ``{"instances": [...]}`` in, ``{"model", "version", "predictions"}`` out;
- ``GET /models/<name>``: metadata (input schema, version, labels, metrics);

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

from bigmodel_utils.serving.models import BadRequest, ServedModel

log = logging.getLogger("bigmodel_utils.serving")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


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


def create_app(models: Iterable[ServedModel], max_content_length: int = 1 << 20) -> Flask:
    """Build the service for ``models`` (already loaded: loading happens once, before the first request)."""
    served = {}
    for m in models:
        if m.name in served:
            raise ValueError(f"two models are named {m.name!r}: give each a unique name")
        served[m.name] = m
    if not served:
        raise ValueError("nothing to serve: pass at least one loaded model (see load_served_model)")
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=int(max_content_length), JSON_SORT_KEYS=False, DEBUG=False,
                      PROPAGATE_EXCEPTIONS=False)
    registry = CollectorRegistry()  # one per app: tests and several apps in a process never collide
    requests_total = Counter("bigmodel_requests", "HTTP requests by model, endpoint and status",
                             ["model", "endpoint", "status"], registry=registry)
    latency = Histogram("bigmodel_request_seconds", "Time to answer a prediction request",
                        ["model"], buckets=LATENCY_BUCKETS, registry=registry)
    predictions_total = Counter("bigmodel_predictions", "Instances predicted", ["model"], registry=registry)
    page = resources.files("bigmodel_utils.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.after_request
    def count(response):
        model = (request.view_args or {}).get("name", "-")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        requests_total.labels(model if model in served else "-", endpoint, str(response.status_code)).inc()
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    install_error_handlers(app, "GET /health, GET /models/<name>, POST /models/<name>/predict")

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/health")
    def health():
        return jsonify({"status": "ok", "models": {n: m.version for n, m in served.items()}})

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/models")
    def list_models():
        return jsonify({"models": [m.metadata() for m in served.values()]})

    @app.get("/models/<name>")
    def metadata(name: str):
        if name not in served:
            return _error(404, f"no model named {name!r}; available: {sorted(served)}")
        return jsonify(served[name].metadata())

    @app.post("/models/<name>/predict")
    def predict(name: str):
        if name not in served:
            return _error(404, f"no model named {name!r}; available: {sorted(served)}")
        start = time.perf_counter()
        model = served[name]
        try:
            answer = model.respond(read_json(request))
        except BadRequest as error:
            return _error(error.status, str(error))
        latency.labels(name).observe(time.perf_counter() - start)
        predictions_total.labels(name).inc(len(answer["predictions"]))
        return jsonify(answer)

    return app


def serve(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 8, max_body: int = 1 << 20,
          name: str = "the service") -> None:
    """Run ``app`` under waitress until stopped; print the URL it listens on (``port=0``: a free port).

    waitress buffers a whole body before the app sees it, so its own limit is set just above the app's
    ``MAX_CONTENT_LENGTH``: a client cannot make the server hold a gigabyte (waitress's default) to be refused.
    """
    import waitress.server

    server = waitress.server.create_server(app, host=host, port=port, threads=threads,
                                           max_request_body_size=int(max_body) + 64 * 1024)
    print(f"serving {name} on http://{host}:{server.effective_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
