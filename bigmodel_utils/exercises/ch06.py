"""Checkers of chapter 06's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import on_cpu, quiet_keras, returned, share_of_long_reviews


@exercise("06.1", hint='The reviews are a pandas column of strings; its .str accessor measures lengths.')
def _ex_06_1(answer: Any) -> None:
    share_of_long_reviews(answer, "train", 128, "the share of truncated training reviews")



@exercise("06.2", hint="Two gates and a candidate make three blocks; each has input weights, recurrent weights and, in Keras's default (reset_after=True), two biases.")
def _ex_06_2(answer: Any) -> None:
    from bigmodel_utils.scale import gru_params

    if int(answer) != answer or int(answer) != gru_params(128, 64):
        raise Wrong(f"{answer!r} is not the count; with reset_after=True each of the GRU's three blocks (two gates and the candidate) has two bias vectors.")


@exercise("06.3", hint="Keras keeps the three blocks side by side in each weight, in the order update gate, reset gate, "
                       "candidate; the bias has one row for the input part and one for the recurrent part. With "
                       "reset_after=True, where does the reset gate act on the recurrent part? Which of the old state and "
                       "the candidate does the update gate keep?", takes_function=True)
def _ex_06_3(answer: Any) -> None:
    keras = quiet_keras()

    rng = np.random.default_rng()  # fresh inputs on every check
    for batch, d, units in [(2, 3, 4), (5, 7, 2), (1, 1, 1), (3, int(rng.integers(2, 9)), int(rng.integers(2, 9)))]:
        layer = keras.layers.GRU(units, return_state=False)
        x = rng.normal(size=(batch, d)).astype("float32")
        h = rng.normal(scale=0.5, size=(batch, units)).astype("float32")
        layer.build((batch, 1, d))
        kernel, recurrent, bias = (rng.normal(scale=0.7, size=v.shape).astype("float32") for v in layer.get_weights())
        layer.set_weights([kernel, recurrent, bias])
        with on_cpu():
            expected = keras.ops.convert_to_numpy(layer(x[:, None, :], initial_state=[h]))
        got = np.asarray(returned(answer(x.copy(), h.copy(), kernel.copy(), recurrent.copy(), bias.copy()), "gru_step"),
                         dtype="float32")
        case = f"for a batch of {batch}, {d} input features and {units} units"
        if got.shape != expected.shape:
            raise Wrong(f"{case} the new state has shape {expected.shape}, you gave {got.shape}.")
        if np.allclose(got, expected, atol=1e-5):
            continue
        if units > 1 and np.allclose(got, _gru_variant(x, h, kernel, recurrent, bias, swap_update=True), atol=1e-5):
            raise Wrong(f"{case} the update gate keeps the wrong one: in Keras z weighs the *old* state.")
        if units > 1 and np.allclose(got, _gru_variant(x, h, kernel, recurrent, bias, reset_before=True), atol=1e-5):
            raise Wrong(f"{case} you applied the reset gate before the recurrent product (reset_after=False, the "
                        "original paper's form); Keras's default multiplies after it, bias included.")
        if units > 1 and np.allclose(got, _gru_variant(x, h, kernel, recurrent, bias, order="rzh"), atol=1e-5):
            raise Wrong(f"{case} the gates are swapped: Keras's blocks come in the order z (update), r (reset), h.")
        raise Wrong(f"{case} your new state differs from keras.layers.GRU's (largest difference "
                    f"{float(np.abs(got - expected).max()):.3g}).")


def _gru_variant(x, h, kernel, recurrent, bias, swap_update=False, reset_before=False, order="zrh"):
    """A GRU step with one of the usual mistakes, to name it in the message."""
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    def blocks(m):
        parts = dict(zip(order, np.split(m, 3, axis=-1)))
        return parts["z"], parts["r"], parts["h"]

    xz, xr, xh = blocks(x @ kernel + bias[0])
    rz, rr, rh = blocks(h @ recurrent + bias[1])
    z, r = sigmoid(xz + rz), sigmoid(xr + rr)
    if reset_before:
        candidate = np.tanh(xh + (r * h) @ blocks(recurrent)[2] + blocks(bias[1])[2])
    else:
        candidate = np.tanh(xh + r * rh)
    return (1 - z) * h + z * candidate if swap_update else z * h + (1 - z) * candidate
