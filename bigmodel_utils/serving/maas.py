"""Model-as-a-Service on top of chapter 11's service: registry models, API keys, quotas, metering, canary (chapter 12).

``create_maas_app(registry, keys, routes)`` serves registered models under ``/v1``:

- ``POST /v1/models/<name>/predict``: routed to the stable version, or to the canary version for a share of
  requests; ``POST /v1/models/<name>/versions/<version>/predict`` asks for one version;
- ``POST /v1/models/<name>/generate``: text from a generator (chapter 14: chapter 13's GPT), as chapter 11's
  service answers it (one JSON answer, or server-sent events with ``"stream": true``), metered in tokens;
- ``GET /v1/models``: the model cards; ``GET /v1/usage``: the caller's usage; ``GET /v1/canary/<name>``: the
  observed split.

Every ``/v1`` request needs an API key (``Authorization: Bearer <key>``): missing or wrong → 401. Keys are
stored only as salted SHA-256 hashes and compared in constant time, in a SQLite file that several server
processes share and that survives a restart (:class:`ApiKeys`). Each key has a quota of requests per time
window: over it → 429 with ``Retry-After``. Models are fetched from the registry (sha256 checked on the
bytes that are loaded) and loaded once. ``python -m bigmodel_utils.serving.maas`` serves it under waitress.

What is charged (a decision, documented in chapter 12): every authenticated prediction request counts
against the key's quota *before* its body is read, valid or not, because reading and parsing a body is work
too: otherwise an abuser could send unlimited malformed requests for free. Billing (``instances``) counts
only the instances that were validated and predicted.

Generation is metered in tokens (chapter 14): a request costs its prompt's tokens plus those generated
(``tokens``). A key may also have a token quota per window (``token_quota``, same window as its requests):
once a generation request is valid, its most expensive outcome (prompt + ``max_tokens``) is reserved, and refused
with a 429 if that would pass the quota, so concurrent streams cannot overrun it together; when the answer ends
(finished, timed out, or the client gone in the middle of a stream) the tokens actually used are billed and the
rest of the reservation is given back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from flask import Flask, jsonify, request

from bigmodel_utils.serving.app import _error, answer_run, install_error_handlers, read_json
from bigmodel_utils.serving.generation import GenerationRun, ServedGenerator
from bigmodel_utils.serving.served import KINDS, load_served_model
from bigmodel_utils.serving.validation import BadRequest

KEY_PREFIX = "bm"
log = logging.getLogger("bigmodel_utils.serving.maas")
_USAGE = ("requests", "instances", "invalid", "rejected", "tokens")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, salt TEXT NOT NULL, digest TEXT NOT NULL,
    quota INTEGER NOT NULL, window REAL NOT NULL, window_start REAL NOT NULL DEFAULT 0,
    used_in_window INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    instances INTEGER NOT NULL DEFAULT 0, invalid INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    token_quota INTEGER, tokens_in_window INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0)
"""
# columns added since chapter 12 first created key stores: a store made then gets them when it is opened
_ADDED_COLUMNS = {"token_quota": "INTEGER", "tokens_in_window": "INTEGER NOT NULL DEFAULT 0",
                  "tokens": "INTEGER NOT NULL DEFAULT 0"}


def _digest(salt: str, secret: str) -> str:
    # the secret is 192 random bits, so one salted SHA-256 suffices (a slow password hash protects guessable secrets)
    return hashlib.sha256((salt + secret).encode("utf-8", "replace")).hexdigest()


_UNKNOWN_SALT = "unknown"
_UNKNOWN_DIGEST = _digest(_UNKNOWN_SALT, "unknown")  # computed once: a known and an unknown id cost one hash each


class KeyStoreBusy(RuntimeError):
    """The key store stayed locked by other server processes for longer than the busy timeout (a 503)."""


class ApiKeys:
    """API keys in a SQLite file: :meth:`issue` returns ``bm_<id>_<secret>`` once; only a salted hash is kept.

    :meth:`check` looks the key up by its public id and compares hashes with :func:`hmac.compare_digest`,
    whose time does not depend on where two strings differ (so response times leak nothing about a key).
    Quotas are per key: ``quota`` requests per ``window`` seconds, counted in fixed windows of the wall clock
    (``time.time``, the same in every process). Keys and usage live in ``path`` (WAL mode): several server
    processes share one file, every update is one transaction (``BEGIN IMMEDIATE``: a quota of N is N across
    all of them), and a restart loses nothing. ``path=None``: a private temporary file, for one process.
    Each thread has its own connection; a store locked for longer than ``busy_timeout`` seconds raises
    :class:`KeyStoreBusy` (the service answers 503 with ``Retry-After``: the server is busy, not the request bad).
    A key may also have a quota of ``token_quota`` generated and prompt tokens per window (chapter 14):
    :meth:`admit_tokens` reserves, :meth:`meter_tokens` settles. A store written before tokens were metered is
    migrated when opened (the missing columns are added, in one transaction).
    """

    def __init__(self, path: str | Path | None = None, clock=time.time, busy_timeout: float = 5.0):
        self._scratch = None
        if path is None:
            import tempfile

            self._scratch = tempfile.TemporaryDirectory(prefix="bigmodel-keys-")
            path = Path(self._scratch.name) / "keys.sqlite"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            db = self._db()
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            if set(_ADDED_COLUMNS) - {row[1] for row in db.execute("PRAGMA table_info(keys)")}:
                self._transaction(self._migrate)  # only then: a store opened to be read needs no write lock
        except sqlite3.DatabaseError as error:
            self.close()
            raise ValueError(f"{self.path} is not a key store ({error}): pass a new file name, or the file "
                             "`python -m bigmodel_utils.serving.maas issue` wrote") from None

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        columns = {row[1] for row in db.execute("PRAGMA table_info(keys)")}  # read under the write lock: no race
        for name, definition in _ADDED_COLUMNS.items():
            if name not in columns:
                db.execute(f"ALTER TABLE keys ADD COLUMN {name} {definition}")

    def now(self) -> float:
        """The store's clock (``time.time``, the same in every process, unless a test passed another)."""
        return self._clock()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(str(self.path), timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def _transaction(self, fn):
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock now: no other process or thread interleaves
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as error:
            raise KeyStoreBusy(f"the key store {self.path.name} is busy or cannot be written ({error})") from error
        return result

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.OperationalError as error:
            raise KeyStoreBusy(f"the key store {self.path.name} is busy or cannot be read ({error})") from error

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
        if self._scratch is not None:
            self._scratch.cleanup()

    def issue(self, owner: str, quota: int = 100, window: float = 60.0, token_quota: int | None = None) -> str:
        """A new key for ``owner``: ``quota`` requests and (None: no limit) ``token_quota`` tokens per ``window`` s."""
        if not owner or not isinstance(owner, str):
            raise ValueError("a key needs an owner (who to call about its usage)")
        if isinstance(quota, bool) or not isinstance(quota, int) or quota < 1 or not window > 0:
            raise ValueError(f"quota must be a positive integer and window positive, got {quota!r}, {window!r}")
        if token_quota is not None and (isinstance(token_quota, bool) or not isinstance(token_quota, int)
                                        or token_quota < 1):
            raise ValueError(f"token_quota must be a positive integer or None (no limit), got {token_quota!r}")
        key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(24), secrets.token_hex(16)  # 64-bit ids
        self._transaction(lambda db: db.execute(
            "INSERT INTO keys (id, owner, salt, digest, quota, window, token_quota) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key_id, owner, salt, _digest(salt, secret), quota, float(window), token_quota)))
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def stored(self) -> dict[str, dict[str, Any]]:
        """What is kept on the server: owner, salt, hash, quotas. Never the key itself."""
        rows = self._read("SELECT id, owner, salt, digest, quota, window, token_quota FROM keys")
        return {r[0]: {"owner": r[1], "salt": r[2], "sha256": r[3], "quota": r[4], "window": r[5], "token_quota": r[6]}
                for r in rows}

    def check(self, presented: str | None) -> str | None:
        """The key's id if ``presented`` is a valid key, else None."""
        if not isinstance(presented, str) or presented.count("_") < 2 or len(presented) > 200:
            return None
        prefix, key_id, secret = presented.split("_", 2)
        rows = self._read("SELECT salt, digest FROM keys WHERE id = ?", (key_id,))
        entry = rows[0] if rows else None
        # one hash and one constant-time comparison for unknown ids too, so both paths take the same time
        salt, expected = entry if entry else (_UNKNOWN_SALT, _UNKNOWN_DIGEST)
        actual = _digest(salt, secret)
        return key_id if hmac.compare_digest(actual, expected) and entry and prefix == KEY_PREFIX else None

    def _window(self, db: sqlite3.Connection, key_id: str) -> tuple:
        """``(now, window_start, window, used_in_window, quota, tokens_in_window, token_quota)``, a new window
        (nothing used yet) when the key's last one has ended."""
        start, window, used, quota, tokens_used, token_quota = db.execute(
            "SELECT window_start, window, used_in_window, quota, tokens_in_window, token_quota FROM keys WHERE id = ?",
            (key_id,)).fetchone()
        now = self._clock()
        if now - start >= window:
            start, used, tokens_used = now, 0, 0
        return now, start, window, used, quota, tokens_used, token_quota

    def admit(self, key_id: str) -> float | None:
        """Charge one request to the key's quota; None if within quota, else the seconds until its window ends."""

        def admit(db):
            now, start, window, used, quota, tokens_used, _ = self._window(db, key_id)
            if used >= quota:
                db.execute("UPDATE keys SET window_start = ?, used_in_window = ?, tokens_in_window = ?, "
                           "rejected = rejected + 1 WHERE id = ?", (start, used, tokens_used, key_id))
                return max(0.0, window - (now - start))
            db.execute("UPDATE keys SET window_start = ?, used_in_window = ?, tokens_in_window = ?, "
                       "requests = requests + 1 WHERE id = ?", (start, used + 1, tokens_used, key_id))
            return None

        return self._transaction(admit)

    def admit_tokens(self, key_id: str, tokens: int) -> float | None:
        """Reserve ``tokens`` (a generation's most: prompt + ``max_tokens``) of the key's token quota in this window.

        None if they fit (or the key has no token quota); else, counted as ``rejected``, the seconds until the
        window ends. Settle every reservation with :meth:`meter_tokens` once the generation has ended.
        """

        def admit(db):
            now, start, window, used, _, tokens_used, token_quota = self._window(db, key_id)
            if token_quota is not None and tokens_used + tokens > token_quota:
                db.execute("UPDATE keys SET window_start = ?, used_in_window = ?, tokens_in_window = ?, "
                           "rejected = rejected + 1 WHERE id = ?", (start, used, tokens_used, key_id))
                return max(0.0, window - (now - start))
            db.execute("UPDATE keys SET window_start = ?, used_in_window = ?, tokens_in_window = ? WHERE id = ?",
                       (start, used, tokens_used + int(tokens), key_id))
            return None

        return self._transaction(admit)

    def meter_tokens(self, key_id: str, used: int, reserved: int = 0, reserved_at: float | None = None) -> None:
        """Bill the ``used`` tokens of a generation that reserved ``reserved`` at time ``reserved_at`` (:meth:`now`,
        read after :meth:`admit_tokens`) and give the rest back, if its window is still the current one (an
        ended window's reservations went with it; the total ``tokens`` is billed either way)."""

        def meter(db):
            (start,) = db.execute("SELECT window_start FROM keys WHERE id = ?", (key_id,)).fetchone()
            same_window = 1 if reserved_at is None or start <= reserved_at else 0
            db.execute("UPDATE keys SET tokens = tokens + ?, tokens_in_window = CASE WHEN ? THEN "
                       "MAX(0, tokens_in_window + ?) ELSE tokens_in_window END WHERE id = ?",
                       (int(used), same_window, int(used) - int(reserved), key_id))

        self._transaction(meter)

    def meter(self, key_id: str, instances: int = 0, invalid: bool = False) -> None:
        """After an admitted request: bill its validated ``instances``, or count it ``invalid`` (a 4xx)."""
        self._transaction(lambda db: db.execute(
            "UPDATE keys SET instances = instances + ?, invalid = invalid + ? WHERE id = ?",
            (int(instances), int(invalid), key_id)))

    def usage(self, key_id: str) -> dict[str, Any]:
        """The key's quotas and counts; ``tokens_in_window`` includes the reservations of answers still running."""
        rows = self._read("SELECT owner, quota, window, used_in_window, token_quota, tokens_in_window, "
                          f"{', '.join(_USAGE)} FROM keys WHERE id = ?", (key_id,))
        if not rows:
            raise KeyError(f"no key with id {key_id!r}")
        row = rows[0]
        return {"owner": row[0], "quota": row[1], "window_seconds": row[2], "used_in_window": row[3],
                "token_quota": row[4], "tokens_in_window": row[5], **dict(zip(_USAGE, row[6:]))}


def _version(value: Any, what: str) -> str | None:
    """Registry versions are "1", "2", ..., as in URLs (the registry's own rule); an int is converted."""
    from bigmodel_utils.registry import check_version

    if value is None:
        return None
    try:
        return check_version(value)
    except ValueError:
        raise ValueError(f"{what} must be a registry version such as \"1\" (or 1), got {value!r}") from None


@dataclass
class Route:
    """Where requests for a model name go: ``stable``, and ``canary`` for a ``canary_share`` of them.

    Versions are kept as strings (``Route("digits", stable=1)`` means ``"1"``), the type of the registry's
    versions and of the version in a URL. ``pins`` maps a version to the sha256 the deployment expects: kept
    here, outside the registry's folder, it catches a file *and* card rewritten together, which the card's own
    hash cannot (chapter 12).
    """

    kind: str
    stable: str
    canary: str | None = None
    canary_share: float = 0.0
    pins: dict[str, str] | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        self.stable = _version(self.stable, "stable")
        if self.stable is None:
            raise ValueError("a route needs a stable version")
        self.canary = _version(self.canary, "canary")
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError(f"canary_share must be between 0 and 1, got {self.canary_share!r}")
        if self.canary_share and not self.canary:
            raise ValueError("a canary share needs a canary version")
        self.pins = {_version(v, "a pinned version"): str(h).lower() for v, h in (self.pins or {}).items()}

    def versions(self) -> list[str]:
        return [v for v in (self.stable, self.canary) if v is not None]


UNAUTHORISED = "a valid API key is required: send the header 'Authorization: Bearer <key>'"
ENDPOINTS = ("GET /health, GET /v1/models, GET /v1/usage, GET /v1/canary/<name>, POST /v1/models/<name>/predict, "
             "POST /v1/models/<name>/versions/<version>/predict, POST /v1/models/<name>/generate")


def create_maas_app(registry, keys: ApiKeys, routes: dict[str, Route], max_content_length: int = 1 << 20,
                    seed: int = 0, generators: Iterable[ServedGenerator] | None = None) -> Flask:
    """The multi-model service: every version named in ``routes`` is fetched (sha256 checked) and loaded once;
    ``generators`` (loaded, :func:`~bigmodel_utils.serving.generation.load_served_generator`) answer
    ``POST /v1/models/<name>/generate``, metered in tokens. Names are unique across routes and generators."""
    import shutil
    import tempfile

    generating: dict[str, ServedGenerator] = {}
    for g in generators or ():
        if g.name in routes or g.name in generating:
            raise ValueError(f"two models are named {g.name!r}: give each route and generator a unique name")
        generating[g.name] = g
    loaded: dict[tuple[str, str], Any] = {}
    cards: dict[tuple[str, str], Any] = {}
    for name, route in routes.items():
        for version in route.versions():
            scratch = tempfile.mkdtemp(prefix="bigmodel-maas-")  # private (0700): the verified copy is loaded
            try:
                path, card = registry.fetch(name, version, into=scratch, expected_sha256=route.pins.get(version))
                # answers name the registry's version; the file's sha256 is on the card
                loaded[(name, card.version)] = load_served_model(path, route.kind, name=name, version=card.version,
                                                                 metrics=card.metrics)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            cards[(name, card.version)] = card
    split = {name: {v: 0 for (n, v) in loaded if n == name} for name in routes}
    rng = random.Random(seed)
    lock = threading.Lock()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=int(max_content_length), DEBUG=False, PROPAGATE_EXCEPTIONS=False)
    install_error_handlers(app, ENDPOINTS)

    @app.errorhandler(KeyStoreBusy)
    def busy(error: KeyStoreBusy):  # the server's state, not the request: 503 and when to come back
        log.warning("%s", error)
        response = _error(503, "the service is busy: retry in a few seconds")
        response.headers["Retry-After"] = "2"
        return response

    def meter(key_id: str, **counts) -> None:  # a failure to bill never replaces the answer: it is logged
        try:
            keys.meter(key_id, **counts)
        except KeyStoreBusy:
            log.exception("could not meter a request of key %s: %s", key_id, counts)

    def caller() -> str | None:
        header = request.headers.get("Authorization", "")
        return keys.check(header[7:].strip() if header.startswith("Bearer ") else None)

    def quota_exceeded(message: str, wait: float):
        response = _error(429, message)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response

    def admitted():
        """``(key id, None)`` for a caller with a valid key and requests left, else ``(None, the 401 or 429)``.
        The request is charged here, before its body is read: parsing is work too."""
        key_id = caller()
        if key_id is None:
            return None, _error(401, UNAUTHORISED)
        wait = keys.admit(key_id)
        if wait is not None:
            return None, quota_exceeded(f"quota of {keys.usage(key_id)['quota']} requests per window used up; "
                                        f"retry in {wait:.0f} s", wait)
        return key_id, None

    def serve(name: str, version: str | None):
        key_id, refusal = admitted()
        if refusal is not None:
            return refusal
        try:
            if name in generating:
                raise BadRequest(f"{name!r} is a text generator: POST /v1/models/{name}/generate", status=404)
            if name not in routes:
                raise BadRequest(f"no model named {name!r}; available: {sorted(routes)}", status=404)
            if version is None:
                route = routes[name]
                with lock:
                    version = route.canary if route.canary and rng.random() < route.canary_share else route.stable
            if (name, version) not in loaded:
                served_versions = sorted(v for (n, v) in loaded if n == name)
                raise BadRequest(f"{name!r} version {version!r} is not served; served versions: {served_versions}",
                                 status=404)
            answer = loaded[(name, version)].respond(read_json(request))
        except BadRequest as error:
            meter(key_id, invalid=True)
            return _error(error.status, str(error))
        except Exception:  # a 413 from the body limit, or a bug: still counted as an invalid request
            meter(key_id, invalid=True)
            raise
        meter(key_id, instances=len(answer["predictions"]))
        with lock:
            split[name][version] += 1
        return jsonify(answer)

    @app.post("/v1/models/<name>/generate")
    def generate(name):
        key_id, refusal = admitted()  # a request like any other: charged before the body is read
        if refusal is not None:
            return refusal
        try:
            if name not in generating:
                where = f": POST /v1/models/{name}/predict" if name in routes else f"; available: {sorted(generating)}"
                raise BadRequest(f"no generator named {name!r}{where}", status=404)
            run = generating[name].start(generating[name].validate(read_json(request)))
        except BadRequest as error:
            meter(key_id, invalid=True)
            return _error(error.status, str(error))
        except Exception:  # a 413 from the body limit, or a bug: still counted as an invalid request
            meter(key_id, invalid=True)
            raise
        most = run.usage["prompt_tokens"] + run.request.max_tokens
        wait = keys.admit_tokens(key_id, most)
        if wait is not None:
            usage = keys.usage(key_id)
            quota, left = usage["token_quota"], max(0, usage["token_quota"] - usage["tokens_in_window"])
            if most > quota:
                message = (f"this request may use up to {most} tokens ({run.usage['prompt_tokens']} of prompt + "
                           f"max_tokens {run.request.max_tokens}), more than the key's token quota of {quota} per "
                           "window: send a shorter prompt or a smaller max_tokens")
            else:
                message = (f"token quota of {quota} per window: {left} left, and this request may use up to {most} "
                           f"({run.usage['prompt_tokens']} of prompt + max_tokens {run.request.max_tokens}); ask for "
                           f"fewer max_tokens or retry in {wait:.0f} s")
            return quota_exceeded(message, wait)
        reserved_at = keys.now()

        def bill(ended: GenerationRun) -> None:  # however it ended: the client may have gone in the middle
            try:
                keys.meter_tokens(key_id, ended.usage["total_tokens"], reserved=most, reserved_at=reserved_at)
            except KeyStoreBusy:
                log.exception("could not meter the %s tokens of key %s", ended.usage["total_tokens"], key_id)

        run.on_end.append(bill)
        return answer_run(run)

    @app.get("/health")
    def health():  # for load balancers and start-up checks: no key needed, nothing about keys said
        return jsonify({"status": "ok"})

    @app.post("/v1/models/<name>/predict")
    def predict(name):
        return serve(name, None)

    @app.post("/v1/models/<name>/versions/<version>/predict")
    def predict_version(name, version):
        return serve(name, version)

    @app.get("/v1/models")
    def models():
        if caller() is None:
            return _error(401, UNAUTHORISED)
        return jsonify({"models": [{**card.__dict__, "role": "stable" if routes[n].stable == v else "canary"}
                                   for (n, v), card in cards.items()]
                        + [{**g.metadata(), "role": "generator"} for g in generating.values()]})

    @app.get("/v1/usage")
    def usage():
        key_id = caller()
        if key_id is None:
            return _error(401, UNAUTHORISED)
        return jsonify(keys.usage(key_id))

    @app.get("/v1/canary/<name>")
    def canary(name):
        if caller() is None:
            return _error(401, UNAUTHORISED)
        if name not in routes:
            return _error(404, f"no model named {name!r}")
        with lock:
            counts = dict(split[name])
        total = sum(counts.values())
        return jsonify({"requests": counts, "canary_share_observed":
                        (counts.get(routes[name].canary, 0) / total) if total and routes[name].canary else 0.0,
                        "canary_share_configured": routes[name].canary_share})

    return app


def _parse_route(text: str) -> tuple[str, Route]:
    """``NAME=KIND:STABLE`` or ``NAME=KIND:STABLE:CANARY:SHARE`` (e.g. ``digits-cnn=digits:1:2:0.2``)."""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or len(parts) not in (2, 4):
        raise ValueError(f"a route is NAME=KIND:STABLE or NAME=KIND:STABLE:CANARY:SHARE, got {text!r}")
    if len(parts) == 2:
        return name, Route(parts[0], stable=parts[1])
    return name, Route(parts[0], stable=parts[1], canary=parts[2], canary_share=float(parts[3]))


def maas_process(registry_root: str | Path, keys_file: str | Path, routes: list[str], threads: int = 4):
    """``python -m bigmodel_utils.serving.maas serve`` in its own process on a free port of 127.0.0.1: a context
    manager that yields the base URL once it answers and stops the process afterwards (chapter 12, tests)."""
    import sys

    from bigmodel_utils.serving.loadtest import process_serving

    command = [sys.executable, "-m", "bigmodel_utils.serving.maas", "serve", "--registry", str(registry_root),
               "--keys", str(keys_file), "--port", "0", "--threads", str(threads)]
    for route in routes:
        command += ["--route", route]
    return process_serving(command, "MaaS server")


def main(argv: list[str] | None = None) -> int:
    """``python -m bigmodel_utils.serving.maas issue|usage|serve``: keys in a SQLite file, the service under waitress."""
    import argparse
    import logging
    import sys

    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.serving.maas", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="issue a key; prints it once (only its hash is stored)")
    issue.add_argument("--keys", type=Path, required=True, help="the key store (a SQLite file; created if missing)")
    issue.add_argument("--owner", required=True)
    issue.add_argument("--quota", type=int, default=100, help="requests per window")
    issue.add_argument("--window", type=float, default=60.0, help="seconds")
    issue.add_argument("--token-quota", type=int, default=None,
                       help="prompt + generated tokens per window (default: no limit)")
    usage = commands.add_parser("usage", help="print every key's usage as JSON")
    usage.add_argument("--keys", type=Path, required=True)
    serve = commands.add_parser("serve", help="serve registered models with waitress")
    serve.add_argument("--registry", type=Path, default=None, help="the model registry's folder (for --route)")
    serve.add_argument("--keys", type=Path, required=True, help="the key store, shared by every server process")
    serve.add_argument("--route", action="append", default=[], metavar="NAME=KIND:STABLE[:CANARY:SHARE]")
    serve.add_argument("--generator", action="append", default=[], metavar="NAME=STEM",
                       help="a GPT chapter 13 saved (STEM.weights.h5 + STEM.json), served at /v1/models/NAME/generate")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001, help="0: any free port (the URL is printed)")
    serve.add_argument("--threads", type=int, default=8)
    serve.add_argument("--max-body", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    try:
        if args.command == "usage" and not args.keys.is_file():
            raise ValueError(f"no key store at {args.keys}: issue a key first")
        keys = ApiKeys(args.keys)
        if args.command == "issue":
            print(keys.issue(args.owner, quota=args.quota, window=args.window, token_quota=args.token_quota))
            return 0
        if args.command == "usage":
            import json

            print(json.dumps({key_id: keys.usage(key_id) for key_id in keys.stored()}, indent=1))
            return 0
        routes = dict(_parse_route(r) for r in args.route)
        stems = [g.partition("=") for g in args.generator]
        if any(not name or not stem for name, _, stem in stems):
            raise ValueError(f"a generator is NAME=STEM (e.g. gpt=models/gpt_zh), got {args.generator}")
        if not routes and not stems:
            raise ValueError("nothing to serve: give at least one --route or --generator")
        if routes and args.registry is None:
            raise ValueError("--route serves models from a registry: give its folder with --registry")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bigmodel_utils.registry import ModelRegistry
    from bigmodel_utils.serving.app import serve
    from bigmodel_utils.serving.generation import load_served_generator

    try:
        generators = [load_served_generator(stem, name=name) for name, _, stem in stems]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app = create_maas_app(ModelRegistry(args.registry) if routes else None, keys, routes,
                          max_content_length=args.max_body, generators=generators)
    serve(app, args.host, args.port, args.threads, args.max_body,
          name=f"{sorted(routes) + [g.name for g in generators]} under /v1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
