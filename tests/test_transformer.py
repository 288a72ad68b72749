"""Attention in NumPy against Keras, and the Transformer encoder layers (chapter 07's foundations)."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.attention import causal_mask, multi_head_attention, scaled_dot_product_attention, softmax


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
