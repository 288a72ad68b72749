"""Keras-native int8 quantization of chapter 10 (:func:`bigmodel_utils.compress.quantize_int8`), on tiny models."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

from bigmodel_utils import compress
from bigmodel_utils.compress import quantize_int8

keras = compress.keras


def _tiny_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((6,))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    h = keras.layers.LayerNormalization(name="norm")(h)  # nothing to quantize: Keras warns about it
    h = keras.layers.Dropout(0.1)(h)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax", name="out")(h))


def _x(n=50, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")


def test_quantize_int8_stores_int8_kernels_and_stays_close():
    model = _tiny_classifier()
    before = keras.ops.convert_to_numpy(model(_x()))
    assert quantize_int8(model) is model
    int8 = {w.path for w in model.weights if w.dtype == "int8"}
    assert int8 == {"hidden/kernel", "out/kernel"}, int8
    assert all(w.dtype == "float32" for w in model.weights if w.path.startswith("norm/"))
    after = keras.ops.convert_to_numpy(model(_x()))
    assert np.abs(after - before).max() < 0.05
    assert (after.argmax(1) == before.argmax(1)).mean() >= 0.9
    assert not np.array_equal(after, before), "the outputs of an int8 model move a little"


def test_quantize_int8_is_quiet_and_leaves_the_collector_as_it_was():
    model = _tiny_classifier()
    assert gc.get_freeze_count() == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_int8(model)
    assert not [w for w in caught if "quantize` method" in str(w.message)], [str(w.message) for w in caught]
    assert gc.get_freeze_count() == 0, "gc.unfreeze() must undo the freeze"
    with warnings.catch_warnings(record=True) as caught:  # the plain call does warn: the helper is what silences it
        warnings.simplefilter("always")
        _tiny_classifier().quantize("int8")
    assert [w for w in caught if "quantize` method" in str(w.message)]


def test_quantize_int8_unfreezes_when_keras_refuses():
    model = _tiny_classifier()
    quantize_int8(model)
    with pytest.raises(ValueError):  # a layer quantized once cannot be quantized again
        quantize_int8(model)
    assert gc.get_freeze_count() == 0


def test_quantize_int8_keeps_a_freeze_it_did_not_make():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        quantize_int8(_tiny_classifier())
        # still frozen (a frozen object freed by its reference count leaves the count, so it may drop by a few)
        assert gc.get_freeze_count() > 0.9 * frozen, "the caller's freeze stays"
    finally:
        gc.unfreeze()


def test_quantize_int8_saves_a_quarter_of_the_weights_file(tmp_path):
    keras.utils.set_random_seed(0)
    x = keras.Input((256,))
    model = keras.Model(x, keras.layers.Dense(256, name="big")(x))
    model.save_weights(tmp_path / "float32.weights.h5")
    quantize_int8(model)
    model.save_weights(tmp_path / "int8.weights.h5")
    ratio = (tmp_path / "int8.weights.h5").stat().st_size / (tmp_path / "float32.weights.h5").stat().st_size
    assert 0.25 < ratio < 0.35, ratio


def test_quantize_int8_needs_a_keras_model():
    with pytest.raises(TypeError, match="Keras model"):
        quantize_int8(np.zeros((3, 3)))
