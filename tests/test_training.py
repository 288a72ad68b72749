"""bigmodel_utils.training: batches (the batches model.fit makes from arrays, from a plain tf.data pipeline) and
compile_with_xla (XLA under op determinism)."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.bert import build_mlm_model
from bigmodel_utils.models.transformer import build_encoder, keras
from bigmodel_utils.training import batches, compile_with_xla


def test_the_rows_come_in_order_in_batches_with_a_shorter_last_one():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    got = [(bx.numpy(), by.numpy()) for bx, by in batches(x, y, batch_size=4)]
    assert [len(by) for _, by in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([bx for bx, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([by for _, by in got]), y)


def test_several_inputs_and_sample_weights_keep_their_places_and_values():
    rows = np.arange(5)[:, None]
    ids, pos, y, w = rows * 10 + np.arange(8), rows * 100 + np.arange(3), rows * 1000 + np.arange(3), rows + np.zeros(3)
    (b_ids, b_pos), b_y, b_w = next(iter(batches((ids, pos), y, w.astype("float64"), batch_size=2)))
    np.testing.assert_array_equal(b_ids, ids[:2])
    np.testing.assert_array_equal(b_pos, pos[:2])
    np.testing.assert_array_equal(b_y, y[:2])
    np.testing.assert_array_equal(b_w, w[:2])
    assert b_w.dtype.name == "float32", "float arrays become Keras's float type, as fit makes them"
    assert b_ids.dtype.name == "int64", "integers stay as they are"
    (l_ids, l_pos), _ = next(iter(batches([ids, pos], y, batch_size=5)))  # a list of inputs works like a tuple
    np.testing.assert_array_equal(l_pos, pos)


def test_the_pipeline_runs_without_autotuning_on_one_thread():
    options = batches(np.ones((4, 2)), np.ones(4), batch_size=2).options()
    assert options.autotune.enabled is False
    assert options.threading.private_threadpool_size == 1


def test_fit_on_it_trains_exactly_as_fit_on_the_arrays():
    # chapter 07's model, in miniature: two inputs, per-target weights, dropout, its compile arguments, and 22 rows in batches of 5 (a
    # shorter last batch); the same batches give the same weights. Compiled without XLA (24 s with it, 7 s without):
    # the feed is what this compares; XLA's repeatability under batches() is test_compile_with_xla_gets_xla_... below
    rng = np.random.default_rng(0)
    ids, pos = rng.integers(5, 40, (22, 16)), np.sort(rng.integers(1, 15, (22, 4)), axis=1)
    y, w = rng.integers(5, 40, (22, 4)), (rng.random((22, 4)) < 0.8).astype("float32")

    def trained(feed):
        keras.utils.set_random_seed(0)
        model = build_mlm_model(build_encoder(40, 16, 16, 1, 2, 32, norm_first=True, dropout=0.1, name="tiny"), 40, 4)
        model.compile(optimizer=keras.optimizers.AdamW(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
                      jit_compile=False)  # "auto" would pick XLA on a GPU
        history = feed(model)
        return history.history["loss"], model.get_weights()

    loss_a, weights_a = trained(lambda m: m.fit([ids, pos], y, sample_weight=w, batch_size=5, epochs=2,
                                                shuffle=False, verbose=0))
    loss_b, weights_b = trained(lambda m: m.fit(batches((ids, pos), y, w, batch_size=5), epochs=2, shuffle=False, verbose=0))
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: batches(np.ones((4, 2)), np.ones(3), batch_size=2), "lengths differ"),
    (lambda: batches((np.ones((4, 2)), np.ones((5, 2))), np.ones(4), batch_size=2), "lengths differ"),
    (lambda: batches(np.ones((4, 2)), np.ones(4), np.ones(2), batch_size=2), "sample_weight"),
    (lambda: batches(np.ones((0, 2)), np.ones(0), batch_size=2), "no rows"),
    (lambda: batches(np.ones((4, 2)), np.ones(4), batch_size=0), "at least 1"),
    (lambda: batches(np.ones((4, 2)), np.ones(4), batch_size=2.5), "whole number"),
    (lambda: batches(np.ones((4, 2)), np.ones(4), batch_size=True), "whole number"),
    (lambda: batches(np.float32(3.0), np.ones(4), batch_size=2), "single value"),
])
def test_bad_arguments_say_what_to_pass(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(("call", "message"), [
    (lambda: batches(np.array(["a", None, "c"], dtype=object), np.ones(3), batch_size=2), "str"),
    (lambda: batches({"ids": np.ones((3, 2))}, np.ones(3), batch_size=2), "dict"),
    (lambda: batches(np.ones((3, 2)), (np.ones(3), np.ones(3)), batch_size=2), "several outputs"),
])
def test_what_batches_cannot_take_is_refused_with_the_type_named(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_missing_targets_and_ragged_rows_say_what_to_do():
    with pytest.raises(ValueError, match="y is None"):
        batches(np.ones((3, 2)), None, batch_size=2)
    with pytest.raises(ValueError, match="pad them"):
        batches(np.ones((2, 2)), [[1, 2], [3]], batch_size=2)


@pytest.fixture
def op_determinism():
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()  # as setup_notebook leaves it in every chapter
    yield tf_config
    if not was_on:
        tf_config.disable_op_determinism()


def _tiny_gpt_like(dropout):
    ids = keras.Input((12,), dtype="int32")
    h = keras.layers.Embedding(30, 16)(ids)  # its gradient is a scatter-add: the op determinism makes slow without XLA
    h = keras.layers.MultiHeadAttention(2, 8, dropout=dropout)(h, h, use_causal_mask=True)
    return keras.Model(ids, keras.layers.Dense(30)(h))


@pytest.mark.slow  # about 15 s: four short trainings
def test_compile_with_xla_gets_xla_under_op_determinism_and_repeats_exactly(op_determinism):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30, (40, 12)).astype("int32")
    y = np.roll(x, -1, axis=1)

    def trained(xla, dropout):
        keras.utils.set_random_seed(0)
        model = _tiny_gpt_like(dropout)
        args = {"optimizer": keras.optimizers.AdamW(1e-2), "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        if xla:
            compile_with_xla(model, **args)
        else:
            model.compile(**args, jit_compile=True)  # what the chapters had: Keras declines XLA, with a warning
        assert model.jit_compile is xla
        assert op_determinism.is_op_determinism_enabled(), "op determinism is back on after compiling"
        model.fit(batches(x, y, batch_size=8), epochs=2, shuffle=False, verbose=0)
        return np.concatenate([w.ravel() for w in model.get_weights()])

    first, second = trained(xla=True, dropout=0.1), trained(xla=True, dropout=0.1)
    np.testing.assert_array_equal(second, first)  # the same seed, the same weights to the last bit, dropout included
    with pytest.warns(UserWarning, match="jit_compile"):
        plain = trained(xla=False, dropout=0.0)
    compiled = trained(xla=True, dropout=0.0)
    # without dropout (XLA draws other random numbers from the same seed), the same training to rounding
    np.testing.assert_allclose(compiled, plain, atol=1e-4)
    assert not np.array_equal(compiled, plain), "XLA really compiled the step (its rounding differs)"


def test_compile_with_xla_refuses_what_it_cannot_compile():
    with pytest.raises(TypeError, match="Keras model"):
        compile_with_xla("not a model", optimizer="adam", loss="mse")
    with pytest.raises(TypeError, match="jit_compile"):
        compile_with_xla(keras.Sequential([keras.layers.Dense(1)]), optimizer="adam", loss="mse", jit_compile=False)
