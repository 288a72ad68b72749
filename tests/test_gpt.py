"""Chapter 13's GPT: the causal property, the parameter formula, NumPy = Keras, the KV cache, samplers vs
keras-hub, generation's edge cases, and save/load with a checksum."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bigmodel_utils.models.bert import CharTokenizer
from bigmodel_utils.models.gpt import (KVCache, build_gpt, forward_numpy, generate, gpt_shape, kv_cache_bytes,
                                       load_gpt, matmul_params, mean_nll, ngram_perplexity, numpy_weights, repeated_ngram_share,
                                       sampler, sampling_probabilities, save_gpt, token_stream, windows)
from bigmodel_utils.models.transformer import keras

CONTEXT = 24


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.fit(["今天天气很好。", "这本书写得非常好，值得一读。", "质量太差了。"] * 3, max_size=40)


@pytest.fixture(scope="module")
def model(tokenizer):
    keras.utils.set_random_seed(1)
    return build_gpt(len(tokenizer), CONTEXT, d_model=16, n_layers=2, n_heads=2)


@pytest.fixture(scope="module")
def weights(model):
    return numpy_weights(model)


def _ids(tokenizer, n, seed=0):
    return np.random.default_rng(seed).integers(5, len(tokenizer), (2, n))


def test_parameter_count_equals_the_formula_of_chapter_01(model):
    assert model.count_params() == gpt_shape(model).params()
    shape = gpt_shape(model)
    # every parameter but the position table and the final norm (the token table counts once, as the output layer)
    assert matmul_params(model) == model.count_params() - shape.max_positions * shape.d_model - 2 * shape.d_model


def test_changing_a_token_never_changes_the_logits_before_it(model, tokenizer):
    a = _ids(tokenizer, CONTEXT)
    for t in (0, 5, CONTEXT - 1):
        b = a.copy()
        b[:, t] = (b[:, t] - 5 + 1) % (len(tokenizer) - 5) + 5
        la, lb = (keras.ops.convert_to_numpy(model(x)) for x in (a, b))
        assert t == 0 or np.abs(la[:, :t] - lb[:, :t]).max() == 0.0
        assert np.abs(la[:, t:] - lb[:, t:]).max() > 1e-6  # and the later logits do change


def test_numpy_forward_equals_keras_and_the_cache_equals_recomputation(model, weights, tokenizer):
    ids = _ids(tokenizer, CONTEXT, seed=2)
    full = forward_numpy(weights, ids)
    assert np.abs(full - keras.ops.convert_to_numpy(model(ids))).max() < 1e-5
    cache = KVCache.empty(weights, batch=2)
    parts = [forward_numpy(weights, ids[:, :3], cache)] + [forward_numpy(weights, ids[:, i:i + 1], cache)
                                                           for i in range(3, CONTEXT)]
    assert np.abs(np.concatenate(parts, axis=1) - full).max() < 1e-5
    assert cache.length == CONTEXT
    layers, heads, head_size = 2, 2, 8
    assert cache.nbytes == kv_cache_bytes(layers, heads, head_size, CONTEXT, batch=2, bytes_per_value=4)
    with pytest.raises(ValueError, match="exceed the model's context"):
        forward_numpy(weights, ids[:, :1], cache)


def test_mean_nll_is_the_float64_cross_entropy_of_the_models_logits(model, tokenizer):
    # against the plain definition: float64 log-softmax of the eager call's logits, 7 rows in batches of 3 (a
    # shorter last batch), then the same through Keras's own loss
    rng = np.random.default_rng(3)
    x, y = rng.integers(5, len(tokenizer), (7, 10)), rng.integers(5, len(tokenizer), (7, 10))
    logits = keras.ops.convert_to_numpy(model(x, training=False)).astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    want = -np.take_along_axis(log_p, y[..., None], -1).mean()
    assert mean_nll(model, x, y, batch=3) == pytest.approx(want, rel=1e-6)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits.astype("float32"))
    assert mean_nll(model, x, y) == pytest.approx(float(keras_loss), rel=1e-5)
    with pytest.raises(ValueError, match="one row of targets"):
        mean_nll(model, x, y[:5])


def test_kv_cache_bytes_rejects_nonsense():
    assert kv_cache_bytes(12, 12, 64, 1024, 1, 2) == 2 * 12 * 12 * 64 * 1024 * 2
    with pytest.raises(ValueError, match="positions"):
        kv_cache_bytes(1, 1, 1, 0)


def _keras_hub_draws(sampler_obj, logits, n):
    from keras import ops

    probs = sampler_obj.compute_probabilities(ops.convert_to_tensor(np.tile(logits, (n, 1)).astype("float32")))
    return np.asarray(ops.convert_to_numpy(sampler_obj.get_next_token(probs)))


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, None, None), (0.7, None, None), (1.0, 5, None),
                                                      (1.0, None, 0.6), (1.5, None, 0.9)])
def test_samplers_draw_what_keras_hub_draws(temperature, top_k, top_p):
    import keras_hub

    logits = np.random.default_rng(3).normal(scale=2.0, size=30)
    if top_k:
        hub = keras_hub.samplers.TopKSampler(k=top_k, temperature=temperature, seed=0)
    elif top_p:
        hub = keras_hub.samplers.TopPSampler(p=top_p, temperature=temperature, seed=0)
    else:
        hub = keras_hub.samplers.RandomSampler(temperature=temperature, seed=0)
    ours = sampling_probabilities(logits, temperature, top_k, top_p)
    n = 40_000
    theirs = np.bincount(_keras_hub_draws(hub, logits, n), minlength=len(logits)) / n
    assert set(np.flatnonzero(theirs)) <= set(np.flatnonzero(ours)), "keras-hub drew a token we exclude"
    assert 0.5 * np.abs(theirs - ours).sum() < 0.015  # total variation: sampling noise is about 0.01 here
    draws = [sampler(temperature, top_k, top_p)(logits, np.random.default_rng(i)) for i in range(2000)]
    mine = np.bincount(draws, minlength=len(logits)) / 2000
    assert 0.5 * np.abs(mine - ours).sum() < 0.06


def test_greedy_is_keras_hubs_and_top_p_edge_cases():
    import keras_hub

    logits = np.random.default_rng(4).normal(size=(8, 30))
    from keras import ops
    hub = keras_hub.samplers.GreedySampler()
    expected = ops.convert_to_numpy(hub.get_next_token(hub.compute_probabilities(ops.convert_to_tensor(logits.astype("float32")))))
    assert [int(np.argmax(row)) for row in logits] == list(expected)
    p = sampling_probabilities(np.array([3.0, 2.0, 1.0]), top_p=1e-9)
    assert p.tolist() == [1.0, 0.0, 0.0]  # the most probable token is always kept
    assert np.allclose(sampling_probabilities(np.array([0.0, 0.0]), top_p=1.0), [0.5, 0.5])
    for bad in (dict(temperature=0.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)):
        with pytest.raises(ValueError):
            sampling_probabilities(np.zeros(3), **bad)


def test_generation_with_and_without_the_cache_gives_the_same_text(weights, tokenizer):
    long_prompt = "这本书写得非常好，值得一读。" * 4  # 57 characters: longer than the context of 24
    for prompt in ("", "今天", long_prompt):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = generate(weights, tokenizer, prompt, 40, sampler(1.0), np.random.default_rng(5), use_cache=True,
                         stop_at_end=False)
            b = generate(weights, tokenizer, prompt, 40, sampler(1.0), np.random.default_rng(5), use_cache=False,
                         stop_at_end=False)
        said = [str(w.message) for w in caught]
        assert (prompt == long_prompt) == any("reads its last 12" in m for m in said), said
        assert a == b and len(a) == 40  # 40 new characters although prompt + text exceed the context
    assert all(c in tokenizer.vocabulary or c == "\n" for c in a)  # [SEP] shows as a line break


def test_unknown_characters_warn_and_special_tokens_are_never_drawn(weights, tokenizer):
    with pytest.warns(UserWarning, match="not in the vocabulary.*'龘'"):
        text = generate(weights, tokenizer, "龘天", 30, sampler(2.0), np.random.default_rng(0), stop_at_end=False)
    assert "[" not in text and len(text) == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generate(weights, tokenizer, "今天", 3)  # known characters: no warning
    with pytest.raises(TypeError, match="str"):
        generate(weights, tokenizer, 123, 3)
    with pytest.raises(ValueError, match="non-negative"):
        generate(weights, tokenizer, "", -1)


def test_save_and_load_round_trip_and_a_tampered_file_is_refused(model, tokenizer, tmp_path):
    stem = tmp_path / "gpt"
    save_gpt(model, tokenizer, stem, {"seed": 1}, {"loss": [1.0]})
    loaded, tok2, info = load_gpt(stem)
    ids = _ids(tokenizer, 10)
    assert tok2.vocabulary == tokenizer.vocabulary and info["settings"] == {"seed": 1}
    assert np.array_equal(keras.ops.convert_to_numpy(loaded(ids)), keras.ops.convert_to_numpy(model(ids)))
    weights_file = stem.with_suffix(".weights.h5")
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256.*RETRAIN"):
        load_gpt(stem)
    stem.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="not a GPT description"):
        load_gpt(stem)
    with pytest.raises(FileNotFoundError, match="run chapter 13"):
        load_gpt(tmp_path / "missing")


def test_stream_windows_and_ngram_baselines(tokenizer):
    s = token_stream(tokenizer, ["今天", "好"])
    assert s.tolist() == [tokenizer._index["今"], tokenizer._index["天"], tokenizer.sep_id, tokenizer._index["好"],
                          tokenizer.sep_id]
    x, y = windows(np.arange(10), 3, offset=1)
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]] and y.tolist() == [[2, 3, 4], [5, 6, 7]]
    with pytest.raises(ValueError, match="no window"):
        windows(np.arange(3), 5)
    train = np.array([5, 6, 5, 6, 5, 6, 5, 6])
    assert ngram_perplexity(train, np.array([5, 6, 5, 6]), 7, 2, prior=1e-6) < 1.01  # a bigram model knows 5 -> 6
    assert ngram_perplexity(train, np.array([5, 6, 5, 6]), 7, 1) == pytest.approx(np.exp(-np.log(5 / 15)))
    assert repeated_ngram_share([1, 2, 3, 1, 2, 3], n=3) == pytest.approx(1 / 4)
    assert repeated_ngram_share([1, 2], n=3) == 0.0


def test_chapter_13_checkers_accept_right_answers_and_name_the_usual_mistakes(capsys):
    import math

    from bigmodel_utils.exercises import check

    def top_p(probs, p):  # right
        return sampling_probabilities(np.log(np.asarray(probs)), top_p=p)

    def top_p_without_the_crossing_token(probs, p):
        probs = np.asarray(probs, dtype=float)
        order = np.argsort(-probs)
        keep = np.zeros_like(probs)
        keep[order[np.cumsum(probs[order]) <= p]] = 1
        keep[order[0]] = 1
        return probs * keep / (probs * keep).sum()

    assert check("13.1", top_p)
    assert not check("13.1", top_p_without_the_crossing_token)
    assert "one too few" in capsys.readouterr().out
    assert not check("13.1", lambda probs, p: np.asarray(probs) * (np.asarray(probs) >= np.max(probs)))
    assert "renormalise" in capsys.readouterr().out
    right = kv_cache_bytes(96, 96, 128, 2048, 1, 2)
    assert check("13.2", right)
    assert not check("13.2", right // 2) and "keys *and* values" in capsys.readouterr().out
    assert not check("13.2", ...)
    assert check("13.3", lambda nll, tokens, chars: nll * tokens / chars / math.log(2))
    assert not check("13.3", lambda nll, tokens, chars: nll / math.log(2))
    assert "bits per *token*" in capsys.readouterr().out
    texts = ["酒店很好", "酒店不错", "很好吃", "不错不错"]
    assert check("13.4", (("不", "错"), texts))
    assert not check("13.4", (("酒", "店"), texts))


def test_generate_ids_streams_what_generate_returns_and_prefixes_are_checked(weights, tokenizer):
    from bigmodel_utils.models.gpt import generate_ids, never_drawn, prompt_ids, token_text

    ids = prompt_ids(tokenizer, "今天", prefix=[tokenizer.cls_id])
    assert ids[:2] == [tokenizer.sep_id, tokenizer.cls_id] and len(ids) == 4
    streamed = "".join(token_text(tokenizer, t) for t in
                       generate_ids(weights, tokenizer, ids, 25, sampler(1.0), np.random.default_rng(2), stop_at_end=False))
    assert streamed == generate(weights, tokenizer, "今天", 25, sampler(1.0), np.random.default_rng(2), stop_at_end=False,
                                prefix=[tokenizer.cls_id])
    with pytest.raises(ValueError, match="prefix ids"):
        prompt_ids(tokenizer, "今天", prefix=[len(tokenizer)])
    added = CharTokenizer(tokenizer.vocabulary + ["[POS]"])
    assert never_drawn(added)[-1] == len(tokenizer) and len(never_drawn(added)) == 5  # added control tokens too
