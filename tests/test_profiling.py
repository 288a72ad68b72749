"""bigmodel_utils.profiling: the matrix products XLA compiles into a step, read with their sizes, and timed alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bigmodel_utils import profiling, scale
from bigmodel_utils.models.gpt import build_gpt
from bigmodel_utils.models.transformer import keras


def test_a_product_and_a_batched_product_are_read_with_their_sizes():
    import tensorflow as tf

    a, b = tf.ones((3, 4)), tf.ones((4, 5))
    assert profiling.matrix_products(lambda x, y: x @ y, a, b) == [(1, 3, 4, 5)]
    a, b = tf.ones((2, 3, 4)), tf.ones((2, 4, 5))
    assert profiling.matrix_products(lambda x, y: tf.einsum("bij,bjk->bik", x, y), a, b) == [(2, 3, 4, 5)]


def test_a_training_step_has_the_products_and_flops_that_chapter_01s_count_finds():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = build_gpt(50, 16, d_model=16, n_layers=1, n_heads=2)
    x = np.random.default_rng(0).integers(5, 50, (2, 16))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    products = profiling.matrix_products(step, x, x)
    flops = sum(2.0 * math.prod(p) for p in products)
    assert flops == scale.xla_flops(step, x, x)
    # forward, then two products (input and weight gradients) per product that has a weight: at least 3 per dense
    assert len(products) >= 3 * 6 and all(min(p) >= 1 for p in products)
    assert (1, 32, 16, 50) in products, "the tied output layer: 32 tokens x 16 wide against 50 vocabulary entries"


def test_step_and_products_times_the_step_and_its_products_in_rounds():
    import tensorflow as tf

    a, b = tf.ones((64, 32)), tf.ones((32, 16))
    out = profiling.step_and_products(lambda x, y: tf.nn.relu(x @ y) @ tf.transpose(y), a, b, rounds=2, repeats=2)
    assert out["products"] == 2 and out["flops"] == 2 * 64 * 32 * 16 * 2
    assert 0 < out["products_seconds"] < 10 and 0 < out["step_seconds"] < 10 and out["share"] > 0
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        profiling.step_and_products(lambda x, y: x @ y, a, b, rounds=0)


@pytest.mark.parametrize("bad", [{"b": 0}, {"k": -1}, {"n": 2.5}, {"repeats": 0}, {"m": "4"}, {"b": True}])
def test_product_seconds_rejects_a_size_that_is_not_a_positive_integer(bad):
    size = {"b": 1, "m": 4, "k": 4, "n": 4} | bad
    repeats = size.pop("repeats", 1)
    with pytest.raises(ValueError, match="positive integer"):
        profiling.product_seconds(size["b"], size["m"], size["k"], size["n"], repeats=repeats)
