"""bigmodel_utils.fitting.build_for_fit: fit traces its training step once, and trains exactly as without it."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.fitting import build_for_fit
from bigmodel_utils.models.transformer import keras


def _counting_model(seed=0, inputs=1):
    """A small classifier with dropout whose training and evaluation steps count how often TensorFlow traces them
    (Python code in a step runs at trace time only)."""
    class Counting(keras.Model):
        traces = {"train": 0, "test": 0}

        def train_step(self, data):
            Counting.traces["train"] += 1
            return super().train_step(data)

        def test_step(self, data):
            Counting.traces["test"] += 1
            return super().test_step(data)

    keras.utils.set_random_seed(seed)
    ins = [keras.Input((6,)) for _ in range(inputs)]
    joined = ins[0] if inputs == 1 else keras.layers.Concatenate()(ins)
    hidden = keras.layers.Dropout(0.3)(keras.layers.Dense(8, activation="relu")(joined))
    model = Counting(ins[0] if inputs == 1 else ins, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    return model, Counting.traces


def test_build_for_fit_traces_each_step_once_and_trains_identically():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype("float32"), rng.integers(0, 2, 40).astype("float32")
    fit_args = {"validation_data": (x[:10], y[:10]), "epochs": 2, "batch_size": 8, "verbose": 0}
    plain, traces = _counting_model()
    plain.fit(x, y, **fit_args)
    assert traces["train"] == 2, "without it, the first fit traces its training step twice"
    built, traces = _counting_model()
    assert build_for_fit(built, x, y) is None
    history = built.fit(x, y, **fit_args)
    assert traces == {"train": 1, "test": 1}
    for a, b in zip(plain.get_weights(), built.get_weights()):
        np.testing.assert_array_equal(a, b)  # same seed, same dropout draws, same weights
    np.testing.assert_array_equal(history.history["loss"], plain.history.history["loss"])  # the two rows left no mark
    before = built.get_weights()
    build_for_fit(built, x, y)  # a second call (optimizer already built) changes nothing
    for a, b in zip(before, built.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_build_for_fit_takes_several_inputs_and_sample_weights():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(12, 6)).astype("float32"), rng.normal(size=(12, 6)).astype("float32"))
    y, w = rng.integers(0, 2, 12).astype("float32"), rng.uniform(size=12).astype("float32")
    model, traces = _counting_model(inputs=2)
    build_for_fit(model, x, y, w)
    model.fit(x, y, sample_weight=w, epochs=1, batch_size=4, verbose=0)
    assert traces["train"] == 1


def test_build_for_fit_says_what_is_missing():
    with pytest.raises(TypeError, match="takes a Keras model"):
        build_for_fit("model", np.ones((2, 6)), np.ones(2))
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="call model.compile"):
        build_for_fit(model, np.ones((2, 6)), np.ones(2))
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="at least one row"):
        build_for_fit(model, np.ones((0, 6)), np.ones(0))
    lazy = keras.Sequential([keras.layers.Dense(1)])
    lazy.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="no weights yet"):
        build_for_fit(lazy, np.ones((2, 6)), np.ones(2))
