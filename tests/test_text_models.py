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
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_text_rnn_output_does_not_depend_on_padding(kind, seed):
    """The pooled features and the probability of the same review, with no, some and much padding, for several
    random initialisations and reviews of several lengths (a single small model can pass by luck): each length
    padded by one position, then all the reviews padded together to 1, 5 and 60 past the longest, so that one batch
    holds rows with different amounts of padding (1 to 76 positions), as a real batch does. Every row must give what
    its review gives alone."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_text_rnn(kind, 30, None, embed_dim=8, units=8)
    both = keras.Model(model.input, [model.get_layer("pooled").output, model.output])
    rng = np.random.default_rng(seed)
    lengths = (1, 4, 17)
    reviews = {length: rng.integers(2, 30, size=(2, length)) for length in lengths}  # two reviews of each length
    alone = {length: [keras.ops.convert_to_numpy(o) for o in both(ids, training=False)] for length, ids in reviews.items()}

    def check(batch, lengths_in_batch):
        outputs = [keras.ops.convert_to_numpy(o) for o in both(batch, training=False)]
        for i, length in enumerate(lengths_in_batch):
            for name, a, b in zip(("pooled", "probability"), alone[length], outputs):
                moved = np.abs(a - b[2 * i:2 * i + 2]).max()
                assert moved < 1e-6, f"{kind}, {name}: a review of {length} padded to {batch.shape[1]} moves by {moved:.1e}"

    for length, ids in reviews.items():
        check(np.pad(ids, ((0, 0), (0, 1))), [length])
    for extra in (1, 5, 60):
        width = max(lengths) + extra
        check(np.concatenate([np.pad(ids, ((0, 0), (0, width - length))) for length, ids in reviews.items()]), lengths)


def test_masked_max_over_time():
    import keras

    from bigmodel_utils.models.pooling import MaskedGlobalMaxPooling1D

    x = np.array([[[-3.0, 1.0], [-2.0, 5.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype="float32")
    mask = np.array([[True, True, False], [False, False, False]])
    out = keras.ops.convert_to_numpy(MaskedGlobalMaxPooling1D()(x, mask=mask))
    assert out.tolist() == [[-2.0, 5.0], [0.0, 0.0]]  # padding (0) does not win; an empty sequence gives zeros
    assert keras.ops.convert_to_numpy(MaskedGlobalMaxPooling1D()(x)).tolist() == [[0.0, 5.0], [0.0, 0.0]]
