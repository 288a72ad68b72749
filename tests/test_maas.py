"""Chapter 12: the model registry, the multi-model service (keys, quotas, canary) and federated averaging."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.federated import average_weights, class_skewed_split, federated_averaging
from bigmodel_utils.registry import ModelCard, Registry, TamperedModelError
from bigmodel_utils.serving.maas import ApiKeys, Route, create_maas_app


def _card(**overrides):
    fields = dict(task="digit classification", data="scikit-learn digits", metrics={"test_accuracy": 0.5},
                  licence="MIT", intended_use="teaching", limitations="8x8 images only")
    return ModelCard(**{**fields, **overrides})


@pytest.fixture
def registry(tmp_path, saved_models):
    reg = Registry(tmp_path / "registry")
    reg.publish("digits", saved_models / "digits.keras", _card())
    reg.publish("digits", saved_models / "digits.keras", _card(metrics={"test_accuracy": 0.6}))
    return reg


def test_publish_list_fetch(registry, saved_models):
    assert registry.versions("digits") == ["1", "2"]
    card = registry.card("digits")
    assert card.version == "2" and card.metrics == {"test_accuracy": 0.6} and len(card.sha256) == 64
    path, card1 = registry.fetch("digits", 1)
    assert path.read_bytes() == (saved_models / "digits.keras").read_bytes() and card1.version == "1"
    assert [(c.name, c.version) for c in registry.list()] == [("digits", "1"), ("digits", "2")]
    assert "**licence**: MIT" in card.to_markdown()


def test_a_tampered_or_missing_file_is_refused(registry):
    path, _ = registry.fetch("digits", 2)
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


def test_keys_are_stored_hashed_and_checked(monkeypatch):
    keys = ApiKeys()
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


def test_quota_windows():
    now = [0.0]
    keys = ApiKeys(clock=lambda: now[0])
    key_id = keys.check(keys.issue("bob", quota=2, window=10))
    assert keys.admit(key_id, 1) is None and keys.admit(key_id, 3) is None
    assert keys.admit(key_id, 1) == pytest.approx(10.0)
    now[0] = 10.5
    assert keys.admit(key_id, 1) is None
    assert keys.usage(key_id) | {} == {"owner": "bob", "quota": 2, "window_seconds": 10.0, "used_in_window": 1,
                                       "requests": 3, "instances": 5, "rejected": 1}


@pytest.fixture
def maas(registry):
    keys = ApiKeys()
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
    assert usage["owner"] == "alice" and usage["requests"] == 402 and usage["instances"] == 402
    limited = {"Authorization": f"Bearer {small}"}
    assert [client.post(url, json=body, headers=limited).status_code for _ in range(3)] == [200, 200, 429]
    refused = client.post(url, json=body, headers=limited)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    cards = client.get("/v1/models", headers=auth).get_json()["models"]
    assert {(c["version"], c["role"]) for c in cards} == {("1", "stable"), ("2", "canary")}
    assert client.get("/v1/models").status_code == 401


def test_the_service_refuses_a_tampered_registry(registry):
    path, _ = registry.fetch("digits", 1)
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
