"""Recurrent text classifiers and the LSTM cell written out by hand (chapter 06; served in chapter 11).

Keras is imported inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np

RNN_KINDS = ("lstm", "gru", "bilstm")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """One step of an LSTM cell from ``keras.layers.LSTM``'s weights; returns ``(h_next, c_next)``.

    An LSTM has three gates (input, forget, output) and a candidate cell value: four blocks of weights, which
    Keras stores side by side in the order input, forget, candidate, output:
    ``z = x @ kernel + h @ recurrent_kernel + bias`` is split into ``i, f, g, o`` and

        i, f, o = sigmoid(...),  g = tanh(...),  c' = f * c + i * g,  h' = o * tanh(c').

    Shapes: ``x`` (batch, inputs), ``h`` and ``c`` (batch, units), ``kernel`` (inputs, 4·units),
    ``recurrent_kernel`` (units, 4·units), ``bias`` (4·units,).
    """
    x, h, c = (np.asarray(a, dtype=np.float64) for a in (x, h, c))
    units = h.shape[-1]
    if c.shape != h.shape:
        raise ValueError(f"h and c must have the same shape, got {h.shape} and {c.shape}")
    if kernel.shape != (x.shape[-1], 4 * units) or recurrent_kernel.shape != (units, 4 * units) or bias.shape != (4 * units,):
        raise ValueError(
            f"weights do not fit {x.shape[-1]} inputs and {units} units: kernel {kernel.shape} (want {(x.shape[-1], 4 * units)}), "
            f"recurrent_kernel {recurrent_kernel.shape} (want {(units, 4 * units)}), bias {bias.shape} (want {(4 * units,)})"
        )
    z = x @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    c_next = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h_next = _sigmoid(o) * np.tanh(c_next)
    return h_next, c_next


def make_char_vectorizer(train_texts, max_tokens: int = 6000, seq_len: int = 128):
    """A ``TextVectorization`` layer that splits text into characters (as Chinese BERT does), adapted on
    ``train_texts`` only. Index 0 is padding, 1 is ``[UNK]`` (a character never seen in training)."""
    import keras

    if seq_len < 1 or max_tokens < 3:
        raise ValueError(f"seq_len must be positive and max_tokens at least 3, got {seq_len}, {max_tokens}")
    texts = np.asarray(list(train_texts), dtype=object)
    if len(texts) == 0:
        raise ValueError("cannot build a vocabulary from no training texts")
    vectorizer = keras.layers.TextVectorization(max_tokens=max_tokens, standardize=None, split="character",
                                                output_mode="int", output_sequence_length=seq_len, name="characters")
    vectorizer.adapt(texts.astype(str))
    return vectorizer


def build_text_rnn(kind: str, vocab_size: int, seq_len: int | None, embed_dim: int = 64, units: int = 64,
                   dropout: float = 0.5, mask: bool = True, name: str | None = None):
    """A recurrent sentiment classifier on token ids (chapter 06).

    Embedding (``mask_zero=mask``, so padding is skipped) -> spatial dropout -> an LSTM, GRU or
    bidirectional LSTM that returns its whole sequence -> max- and mean-pooling over time ->
    dropout -> one sigmoid unit (probability of a positive review). ``seq_len=None`` accepts any length.

    Padding does not change the result (tested for all three kinds, several seeds, long padding): both
    poolings respect the mask. Keras's own ``GlobalMaxPooling1D`` does not, and after the bidirectional
    LSTM, whose outputs at padded positions are zeros, padding could win the maximum; hence
    :class:`MaskedGlobalMaxPooling1D`.
    """
    import keras

    if kind not in RNN_KINDS:
        raise ValueError(f"kind must be one of {RNN_KINDS}, got {kind!r}")
    if vocab_size < 2 or (seq_len is not None and seq_len < 1) or embed_dim < 1 or units < 1:
        raise ValueError("vocab_size, seq_len, embed_dim and units must be positive (vocab_size at least 2)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    rnn = {
        "lstm": lambda: keras.layers.LSTM(units, return_sequences=True, name="lstm"),
        "gru": lambda: keras.layers.GRU(units, return_sequences=True, name="gru"),
        "bilstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(units // 2, return_sequences=True), name="bilstm"),
    }[kind]
    ids = keras.Input((seq_len,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocab_size, embed_dim, mask_zero=mask, name="embedding")(ids)
    x = keras.layers.SpatialDropout1D(0.3, name="embedding_dropout")(x)
    x = rnn()(x)
    from bigmodel_utils.models.pooling import MaskedGlobalMaxPooling1D

    pooled = [MaskedGlobalMaxPooling1D(name="max_over_time")(x), keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x)]
    x = keras.layers.Concatenate(name="pooled")(pooled)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="positive")(x)
    return keras.Model(ids, out, name=name or f"reviews_{kind}")


def end_to_end(vectorizer, classifier, name: str = "review_sentiment"):
    """Wrap a vectorizer and a classifier into one model that takes raw strings (for serving)."""
    import keras

    text = keras.Input((1,), dtype="string", name="text")  # one review per row
    return keras.Model(text, classifier(vectorizer(text)), name=name)


def score_review(text: str, predictors: dict, max_chars: int = 2000):
    """Each model's probability that ``text`` is a positive review, side by side (chapter 06's widget).

    ``predictors`` maps a model's name to a function that takes a list of texts and returns one probability of
    "positive" per text. Returns a DataFrame with one row per model: the probability and the verdict at 0.5.
    """
    import pandas as pd

    if not isinstance(text, str):
        raise TypeError(f"a review is a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("type a review first: the text is empty")
    if len(text) > max_chars:
        raise ValueError(f"the review has {len(text):,} characters; keep it under {max_chars:,}")
    if not predictors:
        raise ValueError("give at least one model to score the review with")
    rows = []
    for name, predict in predictors.items():
        p = np.asarray(predict([text]), dtype=float).ravel()
        if p.shape != (1,) or not 0.0 <= p[0] <= 1.0:
            raise ValueError(f"model {name!r} must return one probability in [0, 1] per text, got {p!r}")
        rows.append({"model": name, "P(positive)": round(float(p[0]), 3),
                     "verdict": "positive" if p[0] >= 0.5 else "negative"})
    return pd.DataFrame(rows).set_index("model")
