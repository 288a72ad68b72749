"""bigmodel_utils.models.text: the LSTM step against Keras, the builders, the end-to-end text model."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.text import build_text_rnn, end_to_end, lstm_step, make_char_vectorizer


def test_lstm_step_matches_keras_over_several_steps():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(3)
    layer = keras.layers.LSTM(6, return_sequences=True, return_state=True)
    xs = np.random.default_rng(3).normal(size=(2, 7, 5)).astype("float32")
    seq, h_k, c_k = (keras.ops.convert_to_numpy(t) for t in layer(xs))
    h = c = np.zeros((2, 6))
    for t in range(7):
        h, c = lstm_step(xs[:, t], h, c, *layer.get_weights())
        assert np.abs(h - seq[:, t]).max() < 1e-5
    assert np.abs(c - c_k).max() < 1e-5 and np.abs(h - h_k).max() < 1e-5


def test_lstm_step_rejects_mismatched_weights():
    k, r, b = np.zeros((5, 24)), np.zeros((6, 24)), np.zeros(24)
    with pytest.raises(ValueError, match="do not fit"):
        lstm_step(np.zeros((1, 4)), np.zeros((1, 6)), np.zeros((1, 6)), k, r, b)
    with pytest.raises(ValueError, match="same shape"):
        lstm_step(np.zeros((1, 5)), np.zeros((1, 6)), np.zeros((1, 5)), k, r, b)


def test_char_vectorizer_learns_from_train_only():
    vec = make_char_vectorizer(["好书", "太差了"], max_tokens=50, seq_len=6)
    vocab = vec.get_vocabulary()
    assert vocab[:2] == ["", "[UNK]"] and set(vocab[2:]) == set("好书太差了")
    ids = np.asarray(vec(["好书棒"]))[0]
    assert ids.shape == (6,) and ids[2] == 1 and ids[3:].tolist() == [0, 0, 0]  # unseen -> [UNK], then padding
    with pytest.raises(ValueError):
        make_char_vectorizer([], seq_len=4)
    with pytest.raises(ValueError):
        make_char_vectorizer(["a"], seq_len=0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "bilstm"])
def test_text_rnn_end_to_end_round_trip(kind, tmp_path):
    import keras

    vec = make_char_vectorizer(["好书值得一读", "质量太差了"], max_tokens=50, seq_len=8)
    model = build_text_rnn(kind, len(vec.get_vocabulary()), 8, embed_dim=4, units=4)
    served = end_to_end(vec, model)
    texts = np.array([["好书"], ["太差了，很失望"]])
    p = keras.ops.convert_to_numpy(served(texts, training=False))
    assert p.shape == (2, 1) and np.all((p > 0) & (p < 1))
    served.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert np.allclose(keras.ops.convert_to_numpy(again(texts, training=False)), p, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(kind="transformer"), dict(vocab_size=1), dict(seq_len=0), dict(dropout=1.0)])
def test_text_rnn_bad_arguments(kwargs):
    args = dict(kind="lstm", vocab_size=10, seq_len=5) | kwargs
    with pytest.raises(ValueError, match=r"\w"):
        build_text_rnn(**args)


@pytest.mark.parametrize("kind", ["lstm", "gru", "bilstm"])
def test_text_rnn_output_does_not_depend_on_padding(kind):
    import keras

    keras.utils.set_random_seed(0)
    model = build_text_rnn(kind, 30, None, embed_dim=4, units=4)
    ids = np.array([[5, 9, 2, 17, 3]])
    outputs = [keras.ops.convert_to_numpy(model(np.pad(ids, ((0, 0), (0, extra))), training=False)) for extra in (0, 3, 40)]
    assert np.allclose(outputs[0], outputs[1], atol=1e-6) and np.allclose(outputs[0], outputs[2], atol=1e-6)
