"""Attention in NumPy against Keras, and the Transformer encoder layers (chapter 07's foundations)."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.attention import causal_mask, multi_head_attention, scaled_dot_product_attention
from bigmodel_utils.scratch import softmax


def test_scaled_dot_product_attention_by_hand():
    q = np.array([[1.0, 0.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0]])
    v = np.array([[10.0], [20.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    expected_w = softmax(np.array([[1.0, 0.0]]) / np.sqrt(2))
    assert np.allclose(w, expected_w) and np.allclose(out, expected_w @ v)
    out, w = scaled_dot_product_attention(q, k, v, mask=np.array([[False, True]]))
    assert np.allclose(w, [[0.0, 1.0]]) and np.allclose(out, [[20.0]])
    with pytest.raises(ValueError, match="do not fit"):
        scaled_dot_product_attention(q, k[:, :1], v)


def test_causal_mask():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    with pytest.raises(ValueError):
        causal_mask(0)


def test_numpy_multi_head_attention_matches_keras():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    rng = np.random.default_rng(0)
    xq, xkv = rng.normal(size=(2, 5, 32)).astype("float32"), rng.normal(size=(2, 7, 32)).astype("float32")
    mask = rng.uniform(size=(2, 5, 7)) > 0.3
    mask[..., 0] = True  # every query keeps at least one key
    out_k, scores_k = layer(xq, xkv, attention_mask=mask, return_attention_scores=True)
    out_n, scores_n = multi_head_attention(xq, xkv, layer.get_weights(), mask=mask)
    assert np.abs(out_n - keras.ops.convert_to_numpy(out_k)).max() < 1e-5
    assert np.abs(scores_n - keras.ops.convert_to_numpy(scores_k)).max() < 1e-5
    with pytest.raises(ValueError, match="8 weight arrays"):
        multi_head_attention(xq, xkv, layer.get_weights()[:6])


@pytest.fixture(scope="module")
def tlayers():
    from bigmodel_utils.models.transformer import PositionalEmbedding, TransformerEncoderBlock

    return PositionalEmbedding, TransformerEncoderBlock


def _tiny_encoder(tlayers, **block_kwargs):
    import keras

    PositionalEmbedding, TransformerEncoderBlock = tlayers
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32")
    x = PositionalEmbedding(50, 16, 8, name="embed")(ids)
    x = TransformerEncoderBlock(8, 2, 16, dropout=0.0, name="block", **block_kwargs)(x)
    return keras.Model(ids, x)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_save_load_round_trip(tlayers, tmp_path, norm_first):
    import keras

    model = _tiny_encoder(tlayers, norm_first=norm_first)
    ids = np.array([[3, 7, 9, 0, 0], [4, 5, 6, 7, 8]])
    before = keras.ops.convert_to_numpy(model(ids))
    model.save(tmp_path / "enc.keras")
    after = keras.ops.convert_to_numpy(keras.saving.load_model(tmp_path / "enc.keras")(ids))
    assert np.allclose(before, after, atol=1e-6)
    config = model.get_layer("block").get_config()
    assert config["norm_first"] is norm_first and config["n_heads"] == 2


def test_padding_does_not_change_real_positions(tlayers):
    import keras

    model = _tiny_encoder(tlayers)
    short = keras.ops.convert_to_numpy(model(np.array([[3, 7, 9]])))
    padded = keras.ops.convert_to_numpy(model(np.array([[3, 7, 9, 0, 0, 0]])))
    assert np.allclose(short[0], padded[0, :3], atol=1e-5)


def test_causal_block_never_looks_ahead(tlayers):
    import keras

    model = _tiny_encoder(tlayers, causal=True)
    a = keras.ops.convert_to_numpy(model(np.array([[3, 7, 9, 11]])))
    b = keras.ops.convert_to_numpy(model(np.array([[3, 7, 9, 42]])))  # only the last token changes
    assert np.allclose(a[0, :3], b[0, :3], atol=1e-6) and not np.allclose(a[0, 3], b[0, 3])
    bidirectional = _tiny_encoder(tlayers, causal=False)
    c = keras.ops.convert_to_numpy(bidirectional(np.array([[3, 7, 9, 11]])))
    d = keras.ops.convert_to_numpy(bidirectional(np.array([[3, 7, 9, 42]])))
    assert not np.allclose(c[0, :3], d[0, :3], atol=1e-6), "without the mask, earlier positions see later ones"


def test_encoder_block_bad_arguments(tlayers):
    _, TransformerEncoderBlock = tlayers
    with pytest.raises(ValueError, match="divisible"):
        TransformerEncoderBlock(10, 3, 16)
    with pytest.raises(ValueError):
        TransformerEncoderBlock(8, 2, 16, dropout=1.5)


def test_mlm_mask_follows_bert_recipe():
    from bigmodel_utils.models.bert import mlm_mask

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(400, 64))
    ids[:, 50:] = 0  # padding
    ids[:, 0] = 2  # a [CLS]-like special token
    inputs, labels, weights = mlm_mask(ids, mask_id=4, vocab_size=1000, special_ids=(0, 1, 2, 3), rng=rng)
    chosen = weights.astype(bool)
    real = ids[:, 1:50].size
    assert abs(chosen.sum() / real - 0.15) < 0.01, "15 % of the real tokens"
    assert not chosen[:, 50:].any() and not chosen[:, 0].any(), "never padding or special tokens"
    assert np.array_equal(labels, ids) and np.array_equal(inputs[~chosen], ids[~chosen])
    masked = (inputs[chosen] == 4).mean()
    unchanged = (inputs[chosen] == ids[chosen]).mean()
    replaced = 1 - masked - unchanged
    assert abs(masked - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.02 and abs(replaced - 0.1) < 0.02
    assert inputs[chosen & (inputs != 4) & (inputs != ids)].min() >= 5, "random replacements are ordinary tokens"
    again = mlm_mask(ids, 4, 1000, (0, 1, 2, 3), rng=np.random.default_rng(0))
    first = mlm_mask(ids, 4, 1000, (0, 1, 2, 3), rng=np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(again, first)), "a seeded generator gives the same corruption"


@pytest.mark.parametrize("kwargs", [dict(token_ids=np.zeros(5, dtype=int)), dict(token_ids=np.zeros((2, 3))),
                                    dict(rate=0.0), dict(mask_id=5000)])
def test_mlm_mask_bad_input(kwargs):
    from bigmodel_utils.models.bert import mlm_mask

    args = dict(token_ids=np.ones((2, 3), dtype=int), mask_id=4, vocab_size=10) | kwargs
    with pytest.raises(ValueError, match=r"\w"):
        mlm_mask(**args)
