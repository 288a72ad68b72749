"""Any bytes at either service (chapters 11 and 12) get a 4xx or a 2xx, never a 5xx, and the service keeps serving;
the same for the generation endpoints of both (chapter 14), whose streamed 200s must not hide an error either.

Two kinds of test:

- one explicit regression test per bug found (each failed with HTTP 500 before the fix): a pixel written as a
  400-digit integer, a body of tens of thousands of ``[``, the same nesting inside ``instances``, a review with a
  lone surrogate, a body that is not UTF-8, unknown methods and paths, chunked bodies over the limit;
- property-based tests (hypothesis) whose generators leave no value out: arbitrary JSON values (recursive
  lists and objects, integers of up to 4,000 digits, Python's parsing limit being 4,300, any float, any code
  point including lone surrogates, nesting up to 100,000 levels deep at the top and inside ``instances``),
  near misses of valid requests (predictions and generations), and arbitrary raw bytes, against both apps, both
  models and the GPT; and arbitrary methods, paths and ``Authorization`` headers. 2,500 examples in all; each
  must get a 2xx or a 4xx, and a stream must end with its ``done`` event.
"""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigmodel_utils.notebook import quiet_tensorflow

quiet_tensorflow()

from bigmodel_utils.registry import ModelCard, ModelRegistry  # noqa: E402
from bigmodel_utils.serving import create_app, load_served_generator  # noqa: E402
from bigmodel_utils.serving.hostile import hostile_bodies, hostile_generation_bodies  # noqa: E402
from bigmodel_utils.serving.loadtest import stop_in_thread  # noqa: E402
from bigmodel_utils.serving.maas import ApiKeys, Route, create_maas_app  # noqa: E402

LIMIT = 64 * 1024  # the apps' body limit in these tests
GOOD_IMAGE = [[0.5] * 8 for _ in range(8)]


@pytest.fixture(scope="module")
def gpt(saved_gpt):  # short answers: valid generation requests stay quick
    return load_served_generator(saved_gpt, max_tokens=8, max_seconds=2.0, max_prompt_chars=100)


@pytest.fixture(scope="module")
def app_client(served, gpt):
    return create_app(served, max_content_length=LIMIT, generators=[gpt]).test_client()


@pytest.fixture(scope="module")
def maas(saved_models, tmp_path_factory, gpt):
    registry = ModelRegistry(tmp_path_factory.mktemp("fuzz-registry"))
    card = dict(task="t", data="d", metrics={"accuracy": 0.5}, licence="MIT", intended_use="tests", limitations="none")
    registry.publish("digits", saved_models / "digits.keras", ModelCard(**card))
    registry.publish("reviews", saved_models / "reviews.keras", ModelCard(**card))
    keys = ApiKeys(tmp_path_factory.mktemp("fuzz-keys") / "keys.sqlite")
    key = keys.issue("fuzzer", quota=10**9, window=3600, token_quota=10**12)
    app = create_maas_app(registry, keys, {"digits": Route("digits", stable="1"), "reviews": Route("reviews", stable="1")},
                          max_content_length=LIMIT, generators=[gpt])
    return app.test_client(), {"Authorization": f"Bearer {key}"}


def _post(client, url, body: bytes, headers=None):
    return client.post(url, data=body, content_type="application/json", headers=headers or {})


def _assert_4xx_json(response, statuses=range(400, 500)):
    assert response.status_code in statuses, (response.status_code, response.data[:300])
    message = response.get_json()["error"]["message"]
    assert message and len(message) < 1000, message[:300]
    return message


def _targets(app_client, maas):
    client, auth = maas
    return [(app_client, "/models/digits/predict", {}), (app_client, "/models/reviews/predict", {}),
            (client, "/v1/models/digits/predict", auth), (client, "/v1/models/reviews/predict", auth)]


def _generate_targets(app_client, maas):
    client, auth = maas
    return [(app_client, "/models/gpt/generate", {}), (client, "/v1/models/gpt/generate", auth)]


def _all_targets(app_client, maas):
    return _targets(app_client, maas) + _generate_targets(app_client, maas)


# --- one regression test per bug ------------------------------------------------------------------------


def test_a_pixel_too_big_for_a_float_is_a_400(app_client, maas):
    image = json.dumps({"instances": [GOOD_IMAGE]}).replace("0.5", "1" + "0" * 400, 1).encode()
    for client, url, headers in _targets(app_client, maas)[::2]:
        assert "[0, 1]" in _assert_4xx_json(_post(client, url, image, headers), {400})


def test_json_nested_too_deeply_is_a_400(app_client, maas):
    for client, url, headers in _all_targets(app_client, maas):
        for body in (b"[" * 30_000, b'{"instances": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
                     b'{"instances": [' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"]}"):
            assert "nested" in _assert_4xx_json(_post(client, url, body, headers), {400})


def test_a_review_that_is_not_valid_unicode_is_a_400(app_client, maas):
    body = b'{"instances": ["\\ud800 good book"]}'  # a lone surrogate: valid JSON, not encodable text
    for client, url, headers in _targets(app_client, maas)[1::2]:
        assert "Unicode" in _assert_4xx_json(_post(client, url, body, headers), {400})


@pytest.mark.parametrize("body", [b'{"instances": ["\xff\xfe"]}', "{\"instances\": [\"好\"]}".encode("utf-16"),
                                  b"\x80" * 100])
def test_a_body_that_is_not_utf8_is_a_400(app_client, maas, body):
    for client, url, headers in _all_targets(app_client, maas):
        assert "UTF-8" in _assert_4xx_json(_post(client, url, body, headers), {400})


def test_unknown_methods_and_paths_are_json_4xx(app_client, maas):
    client, auth = maas
    for c, base, headers in ((app_client, "/models", {}), (client, "/v1/models", auth)):
        for method in ("PUT", "DELETE", "PATCH", "FOO"):
            _assert_4xx_json(c.open(f"{base}/digits/predict", method=method, headers=headers), {405})
        for path in ("/nowhere", f"{base}/digits/predict/extra", "/%ff%fe", "/" + "a" * 10_000,
                     f"{base}//digits/predict", f"{base}/digits//predict"):
            _assert_4xx_json(c.get(path, headers=headers), {404})
        response = c.get(f"{base}/digits/predict", headers=headers)
        assert response.status_code == 405 and "POST" in response.headers["Allow"]
        assert "use POST" in response.get_json()["error"]["message"]
        for method in ("GET", "PUT", "DELETE"):
            _assert_4xx_json(c.open(f"{base}/gpt/generate", method=method, headers=headers), {405})


def test_empty_and_huge_batches(app_client, maas):
    for client, url, headers in _targets(app_client, maas):
        _assert_4xx_json(_post(client, url, b'{"instances": []}', headers), {400})
        _assert_4xx_json(_post(client, url, b'{"instances": [' + b"0," * 1000 + b"0]}", headers), {413})
        _assert_4xx_json(_post(client, url, b"", headers), {400})


@pytest.mark.parametrize("field, value, words", [
    ("max_tokens", 10**400, "a huge integer"), ("seed", -(10**400), "a huge integer"), ("top_k", 10**4000, None),
    ("temperature", 10**400, "too large"), ("top_p", -(10**400), "too large"),
])
def test_a_generation_number_too_big_for_a_float_is_a_400_or_accepted(app_client, maas, field, value, words):
    body = json.dumps({"prompt": "这家店", "max_tokens": 3, field: value}).encode()
    for client, url, headers in _generate_targets(app_client, maas):
        response = _post(client, url, body, headers)
        if words is None:  # a top_k larger than the vocabulary keeps every token: a valid request
            assert response.status_code == 200 and response.get_json()["usage"]["generated_tokens"] >= 1
        else:
            assert words in _assert_4xx_json(response, {400})


def test_hostile_bodies_at_the_generation_endpoints(app_client, maas):
    bodies = hostile_generation_bodies(150, seed=1) + hostile_bodies(50, GOOD_IMAGE, seed=2)
    assert len({family for family, _ in bodies}) >= 6
    for client, url, headers in _generate_targets(app_client, maas):
        for family, body in bodies:
            assert _answered(_fires(client, url, body, headers)), family
    for client, url, headers in _generate_targets(app_client, maas):  # still generating
        assert _post(client, url, '{"prompt": "这", "max_tokens": 2}'.encode(), headers).status_code == 200


def _raw_http(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_chunked_bodies_over_the_limit_and_double_slashes_over_real_http(served):
    import threading

    import waitress.server

    server = waitress.server.create_server(create_app(served, max_content_length=LIMIT), host="127.0.0.1", port=0,
                                           threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        chunk = b"[" * 8192
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3 * LIMIT // len(chunk)))
        head = (b"POST /models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        assert _raw_http(server.effective_port, head + chunks + b"0\r\n\r\n") == 413
        small = b'{"instances": [' + json.dumps(GOOD_IMAGE).encode() + b"]}"
        ok = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
        assert _raw_http(server.effective_port, ok) == 200, "a chunked body under the limit is served"
        for line, status in ((b"GET //health", 200), (b"GET /models//digits", 404), (b"POST /models/digits//predict", 404)):
            # waitress reads "//health" as a host "health" and the path "/", the page; werkzeug would redirect the others
            assert _raw_http(server.effective_port, line + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n") == status
    finally:
        stop_in_thread(server, thread)  # closed from this thread, the server's loop would fail on closed sockets


# --- unbounded generators --------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=30)  # surrogates too
BIG_INTS = st.integers(0, 4000).map(lambda digits: 10**digits) | st.integers() | st.integers(-(10**30), 10**30)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.none() | st.booleans() | BIG_INTS | FLOATS | ANY_TEXT


JSON = st.recursive(SCALARS, lambda children: st.lists(children, max_size=12) | st.dictionaries(ANY_TEXT, children, max_size=6),
                    max_leaves=100)
PAYLOADS = (JSON | st.builds(lambda v: {"instances": v}, JSON) | st.builds(lambda v: {"instances": [v]}, JSON)
            | st.dictionaries(ANY_TEXT, JSON, max_size=4).map(lambda d: {"instances": [GOOD_IMAGE], **d}))


def _dumps(payload) -> bytes:  # ensure_ascii: lone surrogates become \udXXX escapes, as client libraries send them
    return json.dumps(payload).encode()


def _deep(value, depth: int, kind: str, where: str) -> bytes:
    """``value`` inside ``depth`` lists or objects (up to 100,000: written as bytes, too deep for Python objects)."""
    opener, closer = (b"[", b"]") if kind == "list" else (b'{"a": ', b"}")
    body = opener * depth + _dumps(value) + closer * depth
    return {"top": body, "instances": b'{"instances": ' + body + b"}",
            "instance": b'{"instances": [' + body + b"]}"}[where]


DEEP = st.builds(_deep, JSON, st.integers(0, 100_000), st.sampled_from(["list", "dict"]),
                 st.sampled_from(["top", "instances", "instance"]))


def _near_miss_image(draw):
    image = [row[:] for row in GOOD_IMAGE]
    r, c = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    image[r][c] = draw(SCALARS | JSON)
    if draw(st.booleans()):
        image = image[: draw(st.integers(0, 9))] + draw(st.lists(JSON, max_size=2))
    return {"instances": [image] * draw(st.integers(1, 3))}


NEAR_MISS = st.composite(_near_miss_image)()
TEXTS = st.lists(ANY_TEXT | SCALARS, min_size=0, max_size=20).map(lambda t: {"instances": t})
VALID_GENERATION = {"prompt": st.text(max_size=30) | ANY_TEXT, "max_tokens": st.integers(1, 8) | SCALARS,
                    "temperature": st.sampled_from([0, 0.01, 1, 10]) | st.floats(0, 10) | SCALARS,
                    "top_k": st.none() | st.integers(1, 300) | SCALARS, "top_p": st.none() | st.floats(0, 1) | SCALARS,
                    "seed": st.none() | st.integers(0, 2**32 - 1) | SCALARS, "stream": st.booleans() | SCALARS}
GENERATIONS = (st.fixed_dictionaries({}, optional=VALID_GENERATION)  # each field valid, near the edge, or anything
               | st.fixed_dictionaries({"prompt": st.text(max_size=20)},
                                       optional={k: v for k, v in VALID_GENERATION.items() if k != "prompt"})
               .flatmap(lambda d: st.dictionaries(ANY_TEXT, JSON, max_size=2).map(lambda extra: {**extra, **d})))


def _answered(status: int) -> bool:
    return 200 <= status < 300 or 400 <= status < 500  # not a 5xx, and no redirect either


def _fires(client, url, body, headers):
    response = _post(client, url, body, headers)
    assert _answered(response.status_code), (response.status_code, body[:200], response.data[:300])
    if response.status_code >= 400:
        _assert_4xx_json(response)
    elif response.mimetype == "text/event-stream":  # a 200 whose stream failed would be a 5xx in disguise
        events = response.get_data()
        assert b"event: error" not in events and events.endswith(b"\n\n"), events[-300:]
        assert events.rsplit(b"\n\n", 2)[-2].startswith(b"event: done"), events[-300:]
    return response.status_code


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=(PAYLOADS | NEAR_MISS | TEXTS | GENERATIONS).map(_dumps) | DEEP, target=st.integers(0, 5))
def test_arbitrary_json_never_gets_a_5xx(app_client, maas, body, target):
    client, url, headers = _all_targets(app_client, maas)[target]
    _fires(client, url, body, headers)


@FUZZ
@given(body=st.binary(max_size=2000) | st.builds(lambda a, b: a + b, PAYLOADS.map(_dumps) | DEEP, st.binary(max_size=50))
       | (PAYLOADS | GENERATIONS).map(lambda p: json.dumps(p, ensure_ascii=False).encode("utf-8", "surrogatepass")),
       target=st.integers(0, 5))
def test_arbitrary_bytes_never_get_a_5xx(app_client, maas, body, target):
    client, url, headers = _all_targets(app_client, maas)[target]
    _fires(client, url, body, headers)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
       path=st.text(st.characters(codec="ascii", exclude_characters="?#"), max_size=60),
       body=st.binary(max_size=200), auth=st.sampled_from([None, "Bearer ", "Bearer bm_x_y", "Basic abc", "good"]),
       which=st.sampled_from(["app", "maas"]))
def test_arbitrary_methods_paths_and_keys_never_get_a_5xx(app_client, maas, method, path, body, auth, which):
    client, good = (app_client, {}) if which == "app" else maas
    headers = dict(good) if auth == "good" else ({"Authorization": auth} if auth else {})
    # a leading "//" would be read by the test client as a host name; test_chunked_..._over_real_http sends those.
    # urllib drops tab, CR and LF from a URL (as browsers do), so "\n/" would turn into such a "//" too
    path = path.translate({ord(c): None for c in "\t\r\n"})
    response = client.open("/" + path.lstrip("/"), method=method, data=body, headers=headers,
                           content_type="application/json")
    assert _answered(response.status_code), (method, path, response.status_code, response.data[:300])


def test_the_services_still_answer_after_the_fuzzing(app_client, maas):
    body = json.dumps({"instances": [GOOD_IMAGE]}).encode()
    for client, url, headers in _targets(app_client, maas)[::2]:
        assert _post(client, url, body, headers).status_code == 200
    for client, url, headers in _generate_targets(app_client, maas):
        assert _post(client, url, b'{"prompt": "", "stream": true}', headers).status_code == 200
    assert app_client.get("/health").status_code == 200
