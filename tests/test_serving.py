"""The model service (chapter 11): answers, validation, size limits, metrics, robustness, concurrency."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigmodel_utils.notebook import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

from bigmodel_utils.serving import create_app, load_served_model  # noqa: E402
from bigmodel_utils.serving.__main__ import main as serve_main  # noqa: E402
from bigmodel_utils.data import sha256_file  # noqa: E402
from bigmodel_utils.serving.loadtest import stop_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def client(served):
    app = create_app(served, max_content_length=64 * 1024)
    assert not app.debug
    return app.test_client()


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8)).round(4)


def _offline(saved_models, images):
    model = keras.saving.load_model(saved_models / "digits.keras")
    return keras.ops.convert_to_numpy(model(images[..., None].astype("float32"), training=False))


def test_health_models_and_metadata(client, saved_models):
    health = client.get("/health").get_json()
    version = sha256_file(saved_models / "digits.keras")[:12]
    assert health["status"] == "ok" and health["models"]["digits"] == version
    meta = client.get("/models/digits").get_json()
    assert meta["version"] == version and meta["labels"] == [str(i) for i in range(10)]
    assert "8 lists of 8 numbers" in meta["input"]["instances"] and meta["metrics"] == {"test_accuracy": 0.5}
    assert {m["name"] for m in client.get("/models").get_json()["models"]} == {"digits", "reviews"}


def test_digit_predictions_equal_offline_predictions(client, saved_models):
    images = _images(5)
    body = client.post("/models/digits/predict", json={"instances": images.tolist()}).get_json()
    got = np.array([p["probabilities"] for p in body["predictions"]])
    assert np.allclose(got, _offline(saved_models, images), atol=1e-5)
    assert [p["class"] for p in body["predictions"]] == got.argmax(1).tolist()
    assert body["model"] == "digits" and len(body["version"]) == 12


def test_review_predictions(client):
    body = client.post("/models/reviews/predict", json={"instances": ["很好", "质量太差了"]}).get_json()
    assert [p["label"] in ("negative", "positive") for p in body["predictions"]] == [True, True]
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-6 for p in body["predictions"])


GOOD = _images(1).tolist()[0]


@pytest.mark.parametrize("payload, status, words", [
    ({}, 400, "missing field"),
    ({"instances": []}, 400, "non-empty"),
    ({"instances": "image"}, 400, "non-empty list"),
    ({"instances": [GOOD], "extra": 1}, 400, "unknown field"),
    ([GOOD], 400, "JSON object"),
    ({"instances": [GOOD[:7]]}, 400, "list of 8 rows"),
    ({"instances": [[row[:5] for row in GOOD]]}, 400, "8 numbers"),
    ({"instances": [[[True] * 8] * 8]}, 400, "expected a number, got bool"),
    ({"instances": [[["0.5"] * 8] * 8]}, 400, "got str"),
    ({"instances": [[[None] * 8] * 8]}, 400, "got NoneType"),
    ({"instances": [[[255] * 8] * 8]}, 400, "lie in [0, 1]"),
    ({"instances": [[[-1e308] * 8] * 8]}, 400, "lie in [0, 1]"),
    ({"instances": [GOOD] * 17}, 413, "at most 16"),
])
def test_bad_digit_payloads_get_a_4xx_that_says_what_to_do(client, payload, status, words):
    response = client.post("/models/digits/predict", json=payload)
    assert response.status_code == status
    assert words in response.get_json()["error"]["message"]


@pytest.mark.parametrize("body", ['{"instances": [[[NaN, 0, 0, 0, 0, 0, 0, 0]]]}', '{"instances": [[[Infinity]]]}'])
def test_nan_and_infinity_are_refused(client, body):
    image = [[0.0] * 8 for _ in range(8)]
    text = json.dumps({"instances": [image]}).replace("0.0", "NaN" if "NaN" in body else "Infinity", 1)
    response = client.post("/models/digits/predict", data=text, content_type="application/json")
    assert response.status_code == 400 and "NaN and infinity" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("payload, status, words", [
    ({"instances": [3]}, 400, "expected a string"),
    ({"instances": ["   "]}, 400, "empty"),
    ({"instances": ["好" * 101]}, 413, "at most 100"),
])
def test_bad_review_payloads(client, payload, status, words):
    response = client.post("/models/reviews/predict", json=payload)
    assert response.status_code == status and words in response.get_json()["error"]["message"]


def test_protocol_errors_are_json(client):
    cases = [
        (client.post("/models/digits/predict", data="{not json", content_type="application/json"), 400, "not valid JSON"),
        (client.post("/models/digits/predict", data="instances=1"), 415, "Content-Type: application/json"),
        (client.post("/models/nope/predict", json={"instances": [GOOD]}), 404, "available"),
        (client.get("/models/digits/predict"), 405, "not allowed"),
        (client.get("/nowhere"), 404, "no such endpoint"),
        (client.post("/models/digits/predict", data=b"[" + b"0," * 40_000 + b"0]", content_type="application/json"),
         413, "larger than 65,536 bytes"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.data[:200])
        assert response.is_json and words in response.get_json()["error"]["message"]


def test_metrics_count_requests_and_latency(client):
    client.post("/models/digits/predict", json={"instances": [GOOD, GOOD]})
    client.post("/models/digits/predict", json={})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bigmodel_requests_total{endpoint="/models/<name>/predict",model="digits",status="200"}' in text
    assert 'status="400"' in text and "bigmodel_request_seconds_bucket" in text
    assert 'bigmodel_predictions_total{model="digits"}' in text


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'id="grid"' in html and "/models/${model}/predict" in html and "innerHTML" not in html


def test_loading_refuses_what_it_should_not_load(saved_models, tmp_path):
    with pytest.raises(FileNotFoundError, match="run chapter 05"):
        load_served_model(tmp_path / "missing.keras", "digits")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="never pickle"):
        load_served_model(tmp_path / "model.pkl", "digits")
    with pytest.raises(ValueError, match="kind"):
        load_served_model(saved_models / "digits.keras", "speech")
    with pytest.raises(ValueError, match="nothing to serve"):
        create_app([])


def test_the_command_line_says_when_there_is_nothing_to_serve(tmp_path, capsys):
    assert serve_main(["--digits", str(tmp_path / "a.keras"), "--reviews", str(tmp_path / "b.keras")]) == 2
    assert "no model to serve" in capsys.readouterr().err


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=10) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON, model=st.sampled_from(["digits", "reviews"]))
def test_random_json_never_gets_a_5xx(client, payload, model):
    response = client.post(f"/models/{model}/predict", data=json.dumps(payload), content_type="application/json")
    assert response.status_code < 500, response.data[:300]
    assert response.status_code == 200 or response.get_json()["error"]["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.lists(st.lists(st.lists(st.floats(-1e6, 1e6) | st.integers(-300, 300), min_size=7, max_size=9),
                                 min_size=7, max_size=9), min_size=1, max_size=3),
       body=st.binary(max_size=200))
def test_near_miss_images_and_random_bytes_never_get_a_5xx(client, images, body):
    response = client.post("/models/digits/predict", json={"instances": images})
    assert response.status_code < 500
    assert client.post("/models/digits/predict", data=body, content_type="application/json").status_code < 500
    assert client.get("/health").status_code == 200  # still answering


def test_eight_threads_get_the_offline_answers(served, saved_models):
    import waitress.server

    app = create_app(served)
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=8)
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    images = _images(32, seed=1)
    expected = _offline(saved_models, images)
    failures = []

    def client_thread(t):
        for i in range(200):
            k = (t * 200 + i) % len(images)
            data = json.dumps({"instances": [images[k].tolist()]}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/models/digits/predict", data=data,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    got = np.array(json.loads(response.read())["predictions"][0]["probabilities"])
            except (urllib.error.URLError, OSError) as error:
                failures.append(f"thread {t} request {i}: {error}")
                return
            if not np.allclose(got, expected[k], atol=1e-5):
                failures.append(f"thread {t} request {i}: wrong answer")

    try:
        threads = [threading.Thread(target=client_thread, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        stop_in_thread(server, thread)  # closed from this thread, the server's loop would fail on closed sockets
    assert not failures, failures[:5]


@pytest.mark.slow
def test_the_command_line_serves_under_waitress(saved_models):
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bigmodel_utils.serving", "--digits", str(saved_models / "digits.keras"),
                             "--reviews", str(saved_models / "reviews.keras"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start: {proc.stdout.read()[-2000:]}") from None
                time.sleep(0.5)
        assert set(health["models"]) == {"digits", "reviews"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/models/digits/predict",
                                         data=json.dumps({"instances": [GOOD]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Server"] == "waitress"
            assert len(json.loads(response.read())["predictions"]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_default_model_paths_follow_the_chapters(tmp_path, monkeypatch):
    import os
    import time

    from bigmodel_utils import paths
    from bigmodel_utils.serving import default_model_path

    monkeypatch.setattr(paths, "model_path", lambda name: tmp_path / name)
    assert default_model_path("digits").name == "digits_cnn.keras"
    assert default_model_path("digits", smoke=True).name == "digits_cnn_smoke.keras"
    assert default_model_path("reviews").name == "reviews_zh_bilstm.keras"  # none saved yet
    (tmp_path / "reviews_zh_gru.keras").write_bytes(b"x")
    (tmp_path / "reviews_zh_lstm.keras").write_bytes(b"x")
    old = time.time() - 100
    os.utime(tmp_path / "reviews_zh_gru.keras", (old, old))
    assert default_model_path("reviews").name == "reviews_zh_lstm.keras"  # the newest
    with pytest.raises(ValueError):
        default_model_path("speech")


@pytest.mark.slow
def test_the_load_test_runs_both_services_and_stops_them(saved_models, processes_mentioning):
    from bigmodel_utils.serving.loadtest import compare, load_test

    images = _images(10)
    results = compare(saved_models / "digits.keras", images, clients=2, requests=20)
    assert [r.name.split(":")[0] for r in results] == ["naive", "served"]
    for r in results:
        assert r.errors == 0 and r.requests == 20 and r.throughput > 0 and 0 < r.p50_ms <= r.p99_ms
    with pytest.raises(ValueError, match="at least one client"):
        load_test("http://127.0.0.1:1", images, "x", clients=0)
    assert not processes_mentioning(f"--model {saved_models}"), "a service process was left running"
