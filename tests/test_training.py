"""bigmodel_utils.training.batches: the batches model.fit makes from arrays, from a plain tf.data pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.bert import build_mlm_model
from bigmodel_utils.models.transformer import build_encoder, keras
from bigmodel_utils.training import batches


def test_the_rows_come_in_order_in_batches_with_a_shorter_last_one():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    got = [(bx.numpy(), by.numpy()) for bx, by in batches(x, y, batch_size=4)]
    assert [len(by) for _, by in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([bx for bx, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([by for _, by in got]), y)


def test_several_inputs_and_sample_weights_keep_their_structure():
    ids, pos, y, w = np.ones((5, 8), int), np.zeros((5, 3), int), np.ones((5, 3), int), np.full((5, 3), 0.5)
    (b_ids, b_pos), b_y, b_w = next(iter(batches((ids, pos), y, w, batch_size=2)))
    assert (b_ids.shape, b_pos.shape, b_y.shape, b_w.shape) == ((2, 8), (2, 3), (2, 3), (2, 3))
    assert next(iter(batches([ids, pos], y, batch_size=5)))[0][1].shape == (5, 3)  # a list works like a tuple


def test_the_pipeline_runs_without_autotuning_on_one_thread():
    options = batches(np.ones((4, 2)), np.ones(4), batch_size=2).options()
    assert options.autotune.enabled is False
    assert options.threading.private_threadpool_size == 1


@pytest.mark.slow  # two XLA compilations: about 25 s
def test_fit_on_it_trains_exactly_as_fit_on_the_arrays():
    # chapter 07's model, in miniature: two inputs, per-target weights, XLA; the same batches give the same weights
    rng = np.random.default_rng(0)
    ids, pos = rng.integers(5, 40, (20, 16)), np.sort(rng.integers(1, 15, (20, 4)), axis=1)
    y, w = rng.integers(5, 40, (20, 4)), (rng.random((20, 4)) < 0.8).astype("float32")

    def trained(feed):
        keras.utils.set_random_seed(0)
        model = build_mlm_model(build_encoder(40, 16, 16, 1, 2, 32, norm_first=True, dropout=0.1, name="tiny"), 40, 4)
        model.compile(optimizer=keras.optimizers.AdamW(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                      reduction="mean_with_sample_weight"),
                      jit_compile=True)
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


def test_rows_of_python_objects_are_refused_with_the_type_named():
    with pytest.raises(TypeError, match="str"):
        batches(np.array(["a", None, "c"], dtype=object), np.ones(3), batch_size=2)
