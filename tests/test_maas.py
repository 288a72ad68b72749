"""Chapter 12: the model registry, the multi-model service (keys, quotas, canary) and federated averaging."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from bigmodel_utils.federated import average_weights, class_skewed_split, federated_averaging
from bigmodel_utils.data import sha256_file
from bigmodel_utils.registry import ModelCard, ModelRegistry, TamperedModelError
from bigmodel_utils.serving.maas import ApiKeys, Route, create_maas_app


def _card(**overrides):
    fields = dict(task="digit classification", data="scikit-learn digits", metrics={"test_accuracy": 0.5},
                  licence="MIT", intended_use="teaching", limitations="8x8 images only")
    return ModelCard(**{**fields, **overrides})


@pytest.fixture
def registry(tmp_path, saved_models):
    reg = ModelRegistry(tmp_path / "registry")
    reg.publish("digits", saved_models / "digits.keras", _card())
    reg.publish("digits", saved_models / "digits.keras", _card(metrics={"test_accuracy": 0.6}))
    return reg


def test_publish_list_fetch(registry, saved_models):
    assert registry.versions("digits") == ["1", "2"]
    card = registry.card("digits")
    assert card.version == "2" and card.metrics == {"test_accuracy": 0.6} and len(card.sha256) == 64
    path, card1 = registry.fetch("digits", 1)
    assert path.read_bytes() == (saved_models / "digits.keras").read_bytes() and card1.version == "1"
    assert registry.path("digits", 1) == registry.root / "digits" / "1" / "model.keras" != path, "fetch returns a copy"
    assert [(c.name, c.version) for c in registry.list()] == [("digits", "1"), ("digits", "2")]
    assert "**licence**: MIT" in card.to_markdown()


def test_a_tampered_or_missing_file_is_refused(registry):
    path = registry.path("digits", 2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TamperedModelError, match="changed after publishing"):
        registry.fetch("digits", 2)
    path.unlink()
    with pytest.raises(TamperedModelError, match="missing"):
        registry.fetch("digits", 2)
    registry.fetch("digits", 1)  # the other version is untouched


def test_registry_errors_say_what_to_do(registry, tmp_path):
    with pytest.raises(KeyError, match="registered: \\['digits'\\]"):
        registry.card("speech")
    with pytest.raises(KeyError, match="versions: \\['1', '2'\\]"):
        registry.card("digits", 7)
    with pytest.raises(ValueError, match="lower-case"):
        registry.publish("Digits CNN", tmp_path / "x.keras", _card())
    with pytest.raises(FileNotFoundError, match="save the model first"):
        registry.publish("digits", tmp_path / "missing.keras", _card())
    with pytest.raises(ValueError, match="limitations"):
        _card(limitations=" ")
    with pytest.raises(ValueError, match="metrics"):
        _card(metrics={})


def test_keys_are_stored_hashed_and_checked(monkeypatch, tmp_path):
    keys = ApiKeys(tmp_path / "keys.sqlite")
    key = keys.issue("alice", quota=3)
    stored = keys.stored()
    assert key.startswith("bm_") and all(key.split("_", 2)[2] not in str(v) for v in stored.values())
    key_id = keys.check(key)
    assert key_id in stored
    assert keys.check(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.check(None) is None and keys.check("bm_nothing_here") is None and keys.check("garbage") is None
    calls = []
    import hmac

    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    keys.check(key)
    keys.check("bm_unknown_secret")
    assert len(calls) == 2, "known and unknown ids both go through the constant-time comparison"
    with pytest.raises(ValueError):
        keys.issue("", quota=1)
    secret = key.split("_", 2)[2].encode()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite*"))  # the database and its WAL file
    assert key_id.encode() in on_disk, "the check looks where the keys are"
    assert secret not in on_disk, "the key is not on disk in plain text"


def test_quota_windows():
    now = [0.0]
    keys = ApiKeys(clock=lambda: now[0])
    key_id = keys.check(keys.issue("bob", quota=2, window=10))
    assert keys.admit(key_id) is None and keys.admit(key_id) is None
    keys.meter(key_id, instances=4)
    keys.meter(key_id, invalid=True)
    assert keys.admit(key_id) == pytest.approx(10.0)
    now[0] = 10.5
    assert keys.admit(key_id) is None
    keys.meter(key_id, instances=1)
    assert keys.usage(key_id) == {"owner": "bob", "quota": 2, "window_seconds": 10.0, "used_in_window": 1,
                                  "requests": 3, "instances": 5, "invalid": 1, "rejected": 1,
                                  "token_quota": None, "tokens_in_window": 0, "tokens": 0}  # tokens: chapter 14


@pytest.fixture
def maas(registry, tmp_path):
    keys = ApiKeys(tmp_path / "keys.sqlite")
    good, small = keys.issue("alice", quota=1000), keys.issue("carol", quota=2, window=3600)
    app = create_maas_app(registry, keys, {"digits": Route("digits", stable="1", canary="2", canary_share=0.25)})
    return app.test_client(), good, small


IMAGE = [[0.0] * 8 for _ in range(8)]


def test_keys_quotas_routing_and_canary(maas):
    client, good, small = maas
    url = "/v1/models/digits/predict"
    body = {"instances": [IMAGE]}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers={"Authorization": "Bearer bm_x_y"}).status_code == 401
    auth = {"Authorization": f"Bearer {good}"}
    versions = [client.post(url, json=body, headers=auth).get_json()["version"] for _ in range(400)]
    assert set(versions) == {"1", "2"}, "both versions answered"
    split = client.get("/v1/canary/digits", headers=auth).get_json()
    assert sum(split["requests"].values()) == 400
    assert 0.19 < split["canary_share_observed"] < 0.31
    pinned = client.post("/v1/models/digits/versions/1/predict", json=body, headers=auth)
    assert pinned.status_code == 200
    assert client.post("/v1/models/digits/versions/9/predict", json=body, headers=auth).status_code == 404
    assert client.post("/v1/models/speech/predict", json=body, headers=auth).status_code == 404
    assert client.post(url, json={"instances": [[[5] * 8] * 8]}, headers=auth).status_code == 400
    usage = client.get("/v1/usage", headers=auth).get_json()
    # 404 and 400 requests count against the quota (parsing is work) but bill no instances
    assert usage["owner"] == "alice" and usage["requests"] == 404 and usage["instances"] == 401
    assert usage["invalid"] == 3
    limited = {"Authorization": f"Bearer {small}"}
    assert [client.post(url, json=body, headers=limited).status_code for _ in range(3)] == [200, 200, 429]
    refused = client.post(url, json=body, headers=limited)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    cards = client.get("/v1/models", headers=auth).get_json()["models"]
    assert {(c["version"], c["role"]) for c in cards} == {("1", "stable"), ("2", "canary")}
    assert client.get("/v1/models").status_code == 401


def test_the_service_refuses_a_tampered_registry(registry):
    path = registry.path("digits", 1)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(TamperedModelError):
        create_maas_app(registry, ApiKeys(), {"digits": Route("digits", stable="1")})
    with pytest.raises(ValueError, match="canary version"):
        Route("digits", stable="1", canary_share=0.5)


def test_class_skewed_split_and_weighted_average():
    labels = np.repeat(np.arange(10), 20)
    parts = class_skewed_split(labels, n_clients=5, shards_per_client=2, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200)), "every example once"
    assert all(len(set(labels[p])) <= 3 for p in parts), "each client sees only a few classes"
    w = average_weights([[np.ones(2)], [np.zeros(2)]], [3, 1])
    assert np.allclose(w[0], 0.75)
    with pytest.raises(ValueError):
        average_weights([[np.ones(2)]], [0])
    with pytest.raises(ValueError):
        class_skewed_split(labels[:5], n_clients=5, shards_per_client=2)


def test_federated_averaging_learns_from_separate_clients():
    from bigmodel_utils.compress import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    parts = class_skewed_split(y, n_clients=2, shards_per_client=1)  # one class per client

    def build():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])

    def accuracy(model):
        return float((keras.ops.convert_to_numpy(model(x)).argmax(1) == y).mean())

    _, scores = federated_averaging(build, [(x[p], y[p]) for p in parts], rounds=8, learning_rate=0.5,
                                    evaluate=accuracy)
    assert len(scores) == 8 and scores[-1] > 0.9, scores


# --- the registry refuses what it should not trust (each of these failed on the old registry) ------------


@pytest.mark.parametrize("name", ["digits\n", "../digits", "digits/1", "Digits", "", "d" * 65, 7])
def test_names_are_matched_in_full(registry, saved_models, name):
    with pytest.raises(ValueError, match="lower-case"):
        registry.publish(name, saved_models / "digits.keras", _card())
    with pytest.raises(ValueError, match="lower-case"):
        registry.versions(name)


def _rewrite_card(registry, **changes):
    card_file = registry.root / "digits" / "2" / "card.json"
    data = json.loads(card_file.read_text())
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    card_file.write_text(json.dumps(data))


@pytest.mark.parametrize("changes, words", [
    ({"file": "/etc/passwd"}, "names the file '/etc/passwd'"),
    ({"file": "../../1/model.keras"}, "names the file '../../1/model.keras'"),
    ({"file": "model.pkl"}, "names the file 'model.pkl'"),
    ({"owner": "mallory"}, "unknown field(s) ['owner']"),
    ({"licence": None}, "missing field(s) ['licence']"),
    ({"metrics": "high"}, "measured metrics"),
    ({"version": 2}, "'version' is a string"),
    ({"name": "other"}, "the card says 'other'"),
])
def test_a_bad_card_is_a_clear_error(registry, changes, words):
    from bigmodel_utils.registry import CardError

    _rewrite_card(registry, **changes)
    with pytest.raises(CardError, match=re.escape(words)):
        registry.fetch("digits", 2)
    with pytest.raises(CardError):
        registry.card("digits", 2)
    registry.fetch("digits", 1)  # the other version is untouched


def test_a_card_that_is_not_json_is_a_clear_error(registry):
    from bigmodel_utils.registry import CardError

    (registry.root / "digits" / "2" / "card.json").write_text("[" * 50_000)
    with pytest.raises(CardError, match="not valid JSON"):
        registry.card("digits", 2)


def test_a_crashed_publish_does_not_block_the_next(registry, saved_models, monkeypatch):
    import shutil

    real = shutil.copyfile

    def crash(src, dst, **kwargs):
        real(src, dst, **kwargs)
        with open(dst, "r+b") as f:
            f.truncate(100)  # half-written, as when the process dies or the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", crash)
    with pytest.raises(OSError, match="No space"):
        registry.publish("digits", saved_models / "digits.keras", _card())
    monkeypatch.setattr(shutil, "copyfile", real)
    assert registry.versions("digits") == ["1", "2"], "nothing half-published is listed"
    assert sorted(p.name for p in (registry.root / "digits").iterdir()) == ["1", "2"], "nothing left behind"
    (registry.root / "digits" / "3").mkdir()  # what the old registry left after a crash: a folder with no card
    (registry.root / "digits" / "3" / "model.keras").write_bytes(b"half")
    card = registry.publish("digits", saved_models / "digits.keras", _card())
    assert card.version == "4" and registry.versions("digits") == ["1", "2", "4"]
    registry.fetch("digits", 4)


def test_fetch_loads_the_bytes_it_hashed_and_checks_a_pinned_hash(registry, tmp_path):
    copy, card = registry.fetch("digits", 2, into=tmp_path / "mine")
    assert copy.parent == tmp_path / "mine" and sha256_file(copy) == card.sha256
    default, _ = registry.fetch("digits", 2)
    assert (default.parent.stat().st_mode & 0o077) == 0, "the default folder is private"
    # an attacker who can write the registry replaces the file and its card together: the card's hash agrees...
    original = registry.path("digits", 1).read_bytes()
    evil = original + b"\0"
    registry.path("digits", 1).write_bytes(evil)
    _rewrite_card_1 = registry.root / "digits" / "1" / "card.json"
    data = json.loads(_rewrite_card_1.read_text())
    data["sha256"] = hashlib.sha256(evil).hexdigest()
    _rewrite_card_1.write_text(json.dumps(data))
    registry.fetch("digits", 1)  # passes: the hash beside the file proves integrity, not authenticity
    # ...but the hash the deployment kept elsewhere does not
    with pytest.raises(TamperedModelError, match="pinned"):
        registry.fetch("digits", 1, expected_sha256=hashlib.sha256(original).hexdigest())


# --- routes, keys in SQLite, metering --------------------------------------------------------------------


def test_route_versions_are_one_type(registry, tmp_path):
    keys = ApiKeys(tmp_path / "keys.sqlite")
    auth = {"Authorization": f"Bearer {keys.issue('dora', quota=100)}"}
    route = Route("digits", stable=1, canary=2, canary_share=0.5)  # ints, as a registry's versions might be given
    assert (route.stable, route.canary) == ("1", "2")
    client = create_maas_app(registry, keys, {"digits": route}).test_client()
    statuses = {client.post("/v1/models/digits/predict", json={"instances": [IMAGE]}, headers=auth).status_code
                for _ in range(20)}
    assert statuses == {200}, "an int version must not turn every request into a 404"
    for bad in ("latest", 1.5, True, "-1"):
        with pytest.raises(ValueError, match="registry version"):
            Route("digits", stable=bad)
    with pytest.raises(ValueError, match="kind"):
        Route("speech", stable="1")


def test_an_abuser_pays_for_refused_requests(maas):
    client, _, small = maas  # carol: 2 requests an hour
    limited = {"Authorization": f"Bearer {small}"}
    bodies = [b"[" * 30_000, b'{"instances": [' + b"0," * 5000 + b"0]}"]
    statuses = [client.post("/v1/models/digits/predict", data=b, content_type="application/json",
                            headers=limited).status_code for b in bodies * 2]
    assert statuses == [400, 413, 429, 429], "malformed requests use up the quota too"
    usage = client.get("/v1/usage", headers=limited).get_json()
    assert (usage["requests"], usage["invalid"], usage["instances"], usage["rejected"]) == (2, 2, 0, 2)


def test_keys_and_usage_survive_a_restart(tmp_path):
    keys = ApiKeys(tmp_path / "keys.sqlite")
    key = keys.issue("erin", quota=3, window=3600)
    key_id = keys.check(key)
    for _ in range(4):
        keys.admit(key_id)
    keys.close()
    again = ApiKeys(tmp_path / "keys.sqlite")
    assert again.check(key) == key_id, "the key is still valid"
    assert again.usage(key_id)["requests"] == 3 and again.usage(key_id)["rejected"] == 1
    assert again.admit(key_id) is not None, "the window's count survived too"
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ValueError, match="not a key store"):
        ApiKeys(tmp_path / "junk.sqlite")


def _post_http(url, key, body=None):
    import urllib.error
    import urllib.request

    data = json.dumps(body or {"instances": [IMAGE]}).encode()
    req = urllib.request.Request(f"{url}/v1/models/digits/predict", data=data,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_two_server_processes_share_one_quota_and_a_restart_loses_nothing(registry, tmp_path, processes_mentioning):
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from bigmodel_utils.serving.maas import maas_process

    keys_file = tmp_path / "shared-keys.sqlite"
    proc = subprocess.run([sys.executable, "-m", "bigmodel_utils.serving.maas", "issue", "--keys", str(keys_file),
                           "--owner", "frank", "--quota", "25", "--window", "3600"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    with ExitStack() as stack:
        urls = [stack.enter_context(maas_process(registry.root, keys_file, ["digits=digits:1"])) for _ in range(2)]
        with ThreadPoolExecutor(8) as pool:  # 40 requests at once, alternating between the two processes
            statuses = list(pool.map(lambda i: _post_http(urls[i % 2], key), range(40)))
    assert statuses.count(200) == 25 and statuses.count(429) == 15, statuses
    assert not processes_mentioning(str(keys_file)), "a server process was left running"
    with maas_process(registry.root, keys_file, ["digits=digits:1"]) as url:  # a restart
        assert _post_http(url, key) == 429, "the quota used before the restart is still used"
    keys = ApiKeys(keys_file)
    usage = keys.usage(keys.check(key))
    assert (usage["requests"], usage["instances"], usage["rejected"]) == (25, 25, 16)
    assert not processes_mentioning(str(keys_file)), "a server process was left running"


def test_the_command_line_says_what_is_wrong(tmp_path):
    from bigmodel_utils.serving.maas import main

    assert main(["usage", "--keys", str(tmp_path / "none.sqlite")]) == 2
    assert main(["serve", "--registry", str(tmp_path), "--keys", str(tmp_path / "k.sqlite"), "--route", "digits"]) == 2


def test_a_locked_key_store_is_a_503_and_a_failed_meter_keeps_the_answer(registry, tmp_path, monkeypatch):
    import sqlite3

    from bigmodel_utils.serving.maas import KeyStoreBusy

    keys = ApiKeys(tmp_path / "keys.sqlite", busy_timeout=0.2)
    auth = {"Authorization": f"Bearer {keys.issue('gina', quota=100)}"}
    client = create_maas_app(registry, keys, {"digits": Route("digits", stable="1")}).test_client()
    other = sqlite3.connect(tmp_path / "keys.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for longer than the busy timeout
    busy = client.post("/v1/models/digits/predict", json={"instances": [IMAGE]}, headers=auth)
    assert busy.status_code == 503 and busy.headers["Retry-After"] and "busy" in busy.get_json()["error"]["message"]
    other.execute("ROLLBACK")
    assert client.post("/v1/models/digits/predict", json={"instances": [IMAGE]}, headers=auth).status_code == 200
    assert keys.admit(keys.check(auth["Authorization"][7:])) is None, "no transaction was left open"

    def fail(*args, **kwargs):
        raise KeyStoreBusy("disk full")

    monkeypatch.setattr(keys, "meter", fail)
    answer = client.post("/v1/models/digits/predict", json={"instances": [IMAGE]}, headers=auth)
    assert answer.status_code == 200 and len(answer.get_json()["predictions"]) == 1
