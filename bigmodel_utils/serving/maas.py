"""Model-as-a-Service on top of chapter 11's service: registry models, API keys, quotas, metering, canary (chapter 12).

``create_maas_app(registry, keys, routes)`` serves registered models under ``/v1``:

- ``POST /v1/models/<name>/predict``: routed to the stable version, or to the canary version for a share of
  requests; ``POST /v1/models/<name>/versions/<version>/predict`` asks for one version;
- ``GET /v1/models``: the model cards; ``GET /v1/usage``: the caller's usage; ``GET /v1/canary/<name>``: the
  observed split.

Every ``/v1`` request needs an API key (``Authorization: Bearer <key>``): missing or wrong → 401. Keys are
stored only as salted SHA-256 hashes and compared in constant time. Each key has a quota of requests per
time window: over it → 429 with ``Retry-After``. Models are fetched from the registry (sha256 checked) and
loaded once.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, jsonify, request

from bigmodel_utils.serving.app import _error, install_error_handlers
from bigmodel_utils.serving.models import BadRequest, load_served_model

KEY_PREFIX = "bm"


@dataclass
class _Key:
    owner: str
    salt: str
    digest: str
    quota: int
    window: float
    window_start: float = 0.0
    used_in_window: int = 0
    usage: dict[str, int] = field(default_factory=lambda: {"requests": 0, "instances": 0, "rejected": 0})


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


class ApiKeys:
    """API keys: :meth:`issue` returns ``bm_<id>_<secret>`` once; only a salted hash of the secret is kept.

    :meth:`check` looks the key up by its public id and compares hashes with :func:`hmac.compare_digest`,
    whose time does not depend on where two strings differ (so response times leak nothing about a key).
    Quotas are per key: ``quota`` requests per ``window`` seconds, counted in fixed windows.
    """

    def __init__(self, clock=time.monotonic):
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def issue(self, owner: str, quota: int = 100, window: float = 60.0) -> str:
        if not owner or not isinstance(owner, str):
            raise ValueError("a key needs an owner (who to call about its usage)")
        if not isinstance(quota, int) or quota < 1 or window <= 0:
            raise ValueError(f"quota must be a positive integer and window positive, got {quota!r}, {window!r}")
        key_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(24), secrets.token_hex(16)
        with self._lock:
            self._keys[key_id] = _Key(owner, salt, _digest(salt, secret), quota, float(window))
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def stored(self) -> dict[str, dict[str, Any]]:
        """What is kept on the server: owner, salt, hash, quota. Never the key itself."""
        return {k: {"owner": v.owner, "salt": v.salt, "sha256": v.digest, "quota": v.quota, "window": v.window}
                for k, v in self._keys.items()}

    def check(self, presented: str | None) -> str | None:
        """The key's id if ``presented`` is a valid key, else None."""
        if not isinstance(presented, str) or presented.count("_") < 2:
            return None
        prefix, key_id, secret = presented.split("_", 2)
        entry = self._keys.get(key_id)
        # compare against a dummy hash for unknown ids too, so both paths take the same time
        expected = entry.digest if entry else _digest("unknown", "unknown")
        actual = _digest(entry.salt if entry else "unknown", secret)
        return key_id if hmac.compare_digest(actual, expected) and entry and prefix == KEY_PREFIX else None

    def admit(self, key_id: str, instances: int) -> float | None:
        """Count one request; None if within quota, else the seconds until the window resets (a 429)."""
        with self._lock:
            entry = self._keys[key_id]
            now = self._clock()
            if now - entry.window_start >= entry.window:
                entry.window_start, entry.used_in_window = now, 0
            if entry.used_in_window >= entry.quota:
                entry.usage["rejected"] += 1
                return max(0.0, entry.window - (now - entry.window_start))
            entry.used_in_window += 1
            entry.usage["requests"] += 1
            entry.usage["instances"] += instances
            return None

    def usage(self, key_id: str) -> dict[str, Any]:
        with self._lock:
            entry = self._keys[key_id]
            return {"owner": entry.owner, "quota": entry.quota, "window_seconds": entry.window,
                    "used_in_window": entry.used_in_window, **entry.usage}


@dataclass
class Route:
    """Where requests for a model name go: ``stable``, and ``canary`` for a ``canary_share`` of them."""

    kind: str
    stable: str
    canary: str | None = None
    canary_share: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError(f"canary_share must be between 0 and 1, got {self.canary_share!r}")
        if self.canary_share and not self.canary:
            raise ValueError("a canary share needs a canary version")


def create_maas_app(registry, keys: ApiKeys, routes: dict[str, Route], max_content_length: int = 1 << 20,
                    seed: int = 0) -> Flask:
    """The multi-model service: every version named in ``routes`` is fetched (sha256 checked) and loaded once."""
    loaded: dict[tuple[str, str], Any] = {}
    cards: dict[tuple[str, str], Any] = {}
    for name, route in routes.items():
        for version in filter(None, (route.stable, route.canary)):
            path, card = registry.fetch(name, version)
            # answers name the registry's version; the file's sha256 is on the card
            loaded[(name, card.version)] = load_served_model(path, route.kind, name=name, version=card.version,
                                                             metrics=card.metrics)
            cards[(name, card.version)] = card
    split = {name: {v: 0 for (n, v) in loaded if n == name} for name in routes}
    rng = random.Random(seed)
    lock = threading.Lock()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=int(max_content_length), DEBUG=False, PROPAGATE_EXCEPTIONS=False)
    install_error_handlers(app, "GET /v1/models, GET /v1/usage, POST /v1/models/<name>/predict")

    def caller() -> str | None:
        header = request.headers.get("Authorization", "")
        return keys.check(header[7:].strip() if header.startswith("Bearer ") else None)

    def serve(name: str, version: str | None):
        key_id = caller()
        if key_id is None:
            return _error(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'")
        if name not in routes:
            return _error(404, f"no model named {name!r}; available: {sorted(routes)}")
        if version is None:
            route = routes[name]
            with lock:
                version = route.canary if route.canary and rng.random() < route.canary_share else route.stable
        if (name, version) not in loaded:
            served_versions = sorted(v for (n, v) in loaded if n == name)
            return _error(404, f"{name!r} version {version!r} is not served; served versions: {served_versions}")
        if not request.is_json:
            return _error(415, "send JSON with the header Content-Type: application/json")
        payload = request.get_json(silent=True)
        if payload is None:
            return _error(400, "the body is not valid JSON")
        n = len(payload["instances"]) if isinstance(payload, dict) and isinstance(payload.get("instances"), list) else 0
        wait = keys.admit(key_id, n)
        if wait is not None:
            response = _error(429, f"quota of {keys.usage(key_id)['quota']} requests per window used up; "
                                   f"retry in {wait:.0f} s")
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        try:
            answer = loaded[(name, version)].respond(payload)
        except BadRequest as error:
            return _error(error.status, str(error))
        with lock:
            split[name][version] += 1
        return jsonify(answer)

    @app.post("/v1/models/<name>/predict")
    def predict(name):
        return serve(name, None)

    @app.post("/v1/models/<name>/versions/<version>/predict")
    def predict_version(name, version):
        return serve(name, version)

    @app.get("/v1/models")
    def models():
        if caller() is None:
            return _error(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'")
        return jsonify({"models": [{**card.__dict__, "role": "stable" if routes[n].stable == v else "canary"}
                                   for (n, v), card in cards.items()]})

    @app.get("/v1/usage")
    def usage():
        key_id = caller()
        if key_id is None:
            return _error(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'")
        return jsonify(keys.usage(key_id))

    @app.get("/v1/canary/<name>")
    def canary(name):
        if caller() is None:
            return _error(401, "a valid API key is required: send the header 'Authorization: Bearer <key>'")
        if name not in routes:
            return _error(404, f"no model named {name!r}")
        with lock:
            counts = dict(split[name])
        total = sum(counts.values())
        return jsonify({"requests": counts, "canary_share_observed":
                        (counts.get(routes[name].canary, 0) / total) if total and routes[name].canary else 0.0,
                        "canary_share_configured": routes[name].canary_share})

    return app
