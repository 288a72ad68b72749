"""Chapter 14's adaptation tools: LoRA (ours and Keras's), control-token rows, prompts, guidance, int8 tied logits."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.adapt import (add_tokens, control_rows, generate_guided, label_log_probabilities,
                                  longest_shared_substring, prompt_rows)
from bigmodel_utils.models.bert import CharTokenizer
from bigmodel_utils.models.gpt import build_gpt, generate, numpy_weights, sampler
from bigmodel_utils.models.lora import (LoRA, adapters_of, add_lora, enable_keras_lora, load_adapters, merge_lora,
                                        save_adapters)
from bigmodel_utils.models.transformer import keras

TEXTS = ["这家酒店很好，服务也好。", "书的质量太差了，不推荐。", "电脑不错，速度很快！", "房间很小，很吵。"]


@pytest.fixture(scope="module")
def tiny():
    tok = CharTokenizer.fit(TEXTS * 3, max_size=200)
    keras.utils.set_random_seed(0)
    model = build_gpt(len(tok), 24, 16, 2, 2)
    model(np.zeros((1, 4), np.int32))
    return model, tok


def logits(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def fresh(tiny, seed=0):
    model, tok = tiny
    return add_tokens(model, tok, ["[NEG]", "[POS]"], seed=seed)


def ids(tok, n=2, length=12, seed=0):
    return np.random.default_rng(seed).integers(5, len(tok), (n, length))


def test_lora_starts_as_the_base_model_and_only_adapters_train(tiny):
    model, tok = fresh(tiny)
    x = ids(tok)
    before = logits(model, x)
    adapters = add_lora(model, 2, seed=0)
    assert len(adapters) == 12 and all(isinstance(a, LoRA) for a in adapters)  # 2 blocks x (4 attention + 2 FFN)
    np.testing.assert_array_equal(logits(model, x), before)  # B = 0: exactly the base model
    assert {v.path.split("/")[-1] for v in model.trainable_weights} == {"lora_a", "lora_b"}
    frozen = [keras.ops.convert_to_numpy(v).copy() for v in model.weights if not v.trainable]
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, x, epochs=3, verbose=0)
    after = [keras.ops.convert_to_numpy(v) for v in model.weights if not v.trainable]
    assert all(np.array_equal(a, b) for a, b in zip(frozen, after)), "training moved a frozen weight"
    assert np.abs(logits(model, x) - before).max() > 1e-4, "the adapters trained"


@pytest.mark.parametrize("embedding", [False, True])
def test_our_lora_equals_keras_enable_lora_and_merging_keeps_the_outputs(tiny, embedding):
    ours, tok = fresh(tiny)
    theirs, _ = fresh(tiny)
    x = ids(tok)
    rng = np.random.default_rng(1)
    adapters = add_lora(ours, 3, alpha=6.0, embedding=embedding)
    assert len(adapters) == 12 + embedding
    for adapter in adapters:
        adapter.b.assign(rng.normal(0, 0.1, adapter.b.shape))
    keras_layers = enable_keras_lora(theirs, 3, alpha=6.0, embedding=embedding)
    for layer, adapter in zip(keras_layers, adapters):
        if isinstance(layer, keras.layers.Embedding):
            assert tuple(layer.lora_embeddings_a.shape) == tuple(adapter.a.shape)
            layer.lora_embeddings_a.assign(adapter.a)
            layer.lora_embeddings_b.assign(adapter.b)
            continue
        assert tuple(layer.lora_kernel_a.shape) == tuple(adapter.a.shape)
        layer.lora_kernel_a.assign(adapter.a)
        layer.lora_kernel_b.assign(adapter.b)
    adapted = logits(ours, x)
    assert np.abs(adapted - logits(fresh(tiny)[0], x)).max() > 1e-3  # the adapters change something
    np.testing.assert_allclose(logits(theirs, x), adapted, atol=1e-5)
    n_weights = len(fresh(tiny)[0].weights)
    assert {v.path.split("/")[-1] for v in theirs.trainable_weights} == (
        {"lora_kernel_a", "lora_kernel_b"} | ({"lora_embeddings_a", "lora_embeddings_b"} if embedding else set()))
    assert sum(np.prod(v.shape) for v in ours.trainable_weights) == sum(np.prod(v.shape) for v in theirs.trainable_weights)
    assert merge_lora(ours) == 12 + embedding and not adapters_of(ours)
    assert len(ours.weights) == n_weights, "merged: the base model's weights again, nothing tracked twice"
    np.testing.assert_allclose(logits(ours, x), adapted, atol=1e-5)


def test_lora_multiplies_through_the_rank_never_forming_a_times_b(tiny, monkeypatch):
    # x·(A·B) costs a full d_in x d_out product more than (x·A)·B, forward and backward: chapter 14's LoRA step
    # was slower than full fine-tuning's. Only the embedding's adapter forms A·B (the tied output layer reads the table).
    model, tok = fresh(tiny)
    add_lora(model, 2, seed=0)
    for adapter in adapters_of(model):
        adapter.b.assign(np.full(adapter.b.shape, 0.1, "float32"))
    x = ids(tok)
    adapted = logits(model, x)

    def no_full_product(self):
        raise AssertionError(f"{self.name} formed A·B")

    monkeypatch.setattr(LoRA, "delta", no_full_product)
    np.testing.assert_array_equal(logits(model, x), adapted)
    monkeypatch.undo()
    merge_lora(model)  # the merged kernel, W + (alpha / r)·A·B, computes the same
    np.testing.assert_allclose(logits(model, x), adapted, atol=1e-5)


def test_adapters_save_and_load_alone(tiny, tmp_path):
    model, tok = fresh(tiny)
    x = ids(tok)
    for adapter in add_lora(model, 2, embedding=True):
        adapter.b.assign(np.full(adapter.b.shape, 0.05))
    path = save_adapters(model, tmp_path / "a.npz", {"task": "sentiment"})
    other, _ = fresh(tiny)
    assert load_adapters(other, path) == {"task": "sentiment"}
    np.testing.assert_allclose(logits(other, x), logits(model, x), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="save_adapters"):
        load_adapters(fresh(tiny)[0], tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an adapter file"):
        load_adapters(fresh(tiny)[0], tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(other, 2)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        save_adapters(fresh(tiny)[0], tmp_path / "none.npz")
    wider = build_gpt(len(tok), 24, 32, 2, 2)
    wider(np.zeros((1, 4), np.int32))
    with pytest.raises(ValueError, match="shapes"):
        load_adapters(wider, path)


def test_lora_refuses_what_it_cannot_wrap():
    dense = keras.layers.Dense(3, activation="relu")
    dense.build((None, 4))
    with pytest.raises(ValueError, match="activation"):
        LoRA(dense, 2)
    with pytest.raises(TypeError):
        LoRA(keras.layers.LayerNormalization(), 2)
    plain = keras.layers.Dense(3)
    plain.build((None, 4))
    with pytest.raises(ValueError, match="rank"):
        LoRA(plain, 0)
    transposed = keras.layers.EinsumDense("ab,cb->ac", output_shape=3)  # kernel (3, 4): its last axis is the input's
    transposed.build((None, 4))
    scaling = keras.layers.EinsumDense("abc,bc->abc", output_shape=(3, 4))  # the output's last axis is the input's
    scaling.build((None, 3, 4))
    for layer in (transposed, scaling):
        with pytest.raises(ValueError, match="last axis"):
            LoRA(layer, 2)


def test_added_tokens_leave_the_old_vocabulary_alone(tiny):
    model, tok = tiny
    bigger, big_tok = add_tokens(model, tok, ["[NEG]", "[POS]"], like=["差", "好"])
    assert big_tok.vocabulary[-2:] == ["[NEG]", "[POS]"] and len(big_tok) == len(tok) + 2
    x = ids(tok)
    np.testing.assert_allclose(logits(bigger, x)[..., : len(tok)], logits(model, x), atol=1e-6)
    table = keras.ops.convert_to_numpy(bigger.get_layer("embeddings").tokens.embeddings)
    np.testing.assert_array_equal(table[-1], table[tok._index["好"]])
    random, _ = add_tokens(model, tok, ["[NEG]", "[POS]"])
    rows = keras.ops.convert_to_numpy(random.get_layer("embeddings").tokens.embeddings)[-2:]
    assert not np.allclose(rows[0], rows[1])
    for bad in (["好"], ["[X]", "[X]"], []):
        with pytest.raises(ValueError):
            add_tokens(model, tok, bad)
    with pytest.raises(ValueError, match="like"):
        add_tokens(model, tok, ["[A]"], like=["龘"])


def test_control_rows_read_the_label_and_never_predict_it(tiny):
    _, tok = fresh(tiny)
    pos, neg = tok._index["[POS]"], tok._index["[NEG]"]
    x, y, w = control_rows(tok, ["好书", "很差很差很差很差很差很差"], ["[POS]", neg], 8)
    assert x.shape == y.shape == w.shape == (2, 8) and x.dtype == np.int32
    assert list(x[0, :4]) == [tok.sep_id, pos, tok._index["好"], tok._index["书"]]
    assert list(y[0, :4]) == [pos, tok._index["好"], tok._index["书"], tok.sep_id]
    assert list(w[0]) == [0, 1, 1, 1, 0, 0, 0, 0]  # the control token and the padding carry no loss
    assert x[0, 4] == tok.pad_id
    assert w[1, 0] == 0 and w[1, 1:].all() and x[1, 1] == neg  # a long text: cut to fit, no [SEP] kept
    assert np.array_equal(x[1, 1:], y[1, :-1]), "targets are the inputs shifted by one"
    with pytest.raises(ValueError, match="add_tokens"):
        control_rows(tok, ["好"], ["[UNKNOWN]"], 8)
    with pytest.raises(ValueError, match="one per text"):
        control_rows(tok, ["好", "差"], ["[POS]"], 8)
    with pytest.raises(TypeError):
        control_rows(tok, [3], ["[POS]"], 8)


def test_prompt_rows_put_the_loss_on_the_answer_only(tiny):
    _, tok = tiny
    x, y, w = prompt_rows(tok, ["好书。这是"], ["很好"], 12)
    answer = [i for i in range(12) if w[0, i]]
    assert "".join(tok.vocabulary[y[0, i]] for i in answer) == "很好[SEP]"
    with pytest.raises(ValueError, match="shorten"):
        prompt_rows(tok, ["好" * 20], ["好评"], 12)


def test_guidance_zero_is_plain_sampling_after_the_control_token(tiny):
    model, tok = fresh(tiny)
    weights = numpy_weights(model)
    pos, neg = tok._index["[POS]"], tok._index["[NEG]"]
    plain = generate(weights, tok, "", 15, sampler(0.8, top_p=0.9), np.random.default_rng(3), prefix=[pos])
    assert generate_guided(weights, tok, pos, neg, 15, 0.0, 0.8, 0.9, np.random.default_rng(3)) == plain
    pushed = {generate_guided(weights, tok, pos, neg, 15, 3.0, 0.8, 0.9, np.random.default_rng(s)) for s in range(3)}
    assert all("[" not in t for t in pushed)  # control tokens are never written
    with pytest.raises(ValueError, match="non-negative"):
        generate_guided(weights, tok, pos, neg, 5, -1.0)


def test_label_log_probabilities_add_the_label_characters(tiny):
    model, tok = tiny
    got = label_log_probabilities(model, tok, ["这家", "书"], ["很好", "差"])
    row = [tok.sep_id, tok._index["这"], tok._index["家"], tok._index["很"], tok._index["好"]]
    z = logits(model, np.asarray([row]))[0].astype(np.float64)
    log_p = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    np.testing.assert_allclose(got[0, 0], log_p[2, row[3]] + log_p[3, row[4]], atol=1e-4)
    assert got.shape == (2, 2) and (got < 0).all()
    with pytest.raises(ValueError, match="context"):
        label_log_probabilities(model, tok, ["好" * 30], ["好评"])


def test_longest_shared_substring_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        text = "".join(rng.choice(list("abc"), rng.integers(0, 12)))
        corpus = "".join(rng.choice(list("abcd"), rng.integers(0, 30)))
        brute = max((text[i:j] for i in range(len(text)) for j in range(i, len(text) + 1) if text[i:j] in corpus),
                    key=len, default="")
        assert len(longest_shared_substring(text, corpus)) == len(brute)
        assert longest_shared_substring(text, corpus) in corpus


def test_int8_quantization_keeps_the_tied_output_layer_right(tiny):
    import warnings

    model, tok = tiny
    x = ids(tok)
    copy = build_gpt(len(tok), 24, 16, 2, 2)
    copy.set_weights(model.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copy.quantize("int8")
    assert copy.get_layer("embeddings").tokens.quantization_mode == "int8"
    full, small = logits(model, x), logits(copy, x)
    assert np.abs(small - full).max() < 0.05 * np.abs(full).max() + 1e-3, "int8 logits are close to float32's"


def test_the_exercise_checkers_reject_the_usual_mistakes(capsys):
    import math

    from bigmodel_utils.exercises import check

    assert check("14.1", lambda d_in, d_out, r: r * (d_in + d_out), quiet=True)
    assert not check("14.1", lambda d_in, d_out, r: d_in * d_out)
    assert "LoRA freezes" in capsys.readouterr().out
    assert not check("14.1", lambda d_in, d_out, r: r * d_in, quiet=True)
    assert check("14.2", lambda W, A, B, alpha, r: W + alpha / r * A @ B, quiet=True)
    assert not check("14.2", lambda W, A, B, alpha, r: W + A @ B)
    assert "scale is missing" in capsys.readouterr().out
    assert not check("14.2", lambda W, A, B, alpha, r: W + r / alpha * A @ B, quiet=True)

    def wald(k, n, z=1.96):
        p = k / n
        return p - z * math.sqrt(p * (1 - p) / n), p + z * math.sqrt(p * (1 - p) / n)

    def wilson(k, n, z=1.96):
        p, d = k / n, 1 + z**2 / n
        half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / d
        return (p + z**2 / (2 * n)) / d - half, (p + z**2 / (2 * n)) / d + half

    assert check("14.3", wilson, quiet=True)
    assert not check("14.3", wald)
    assert "Wald" in capsys.readouterr().out
