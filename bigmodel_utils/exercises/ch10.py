"""Checkers of chapter 10's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import quiet_keras, returned


@exercise("10.1", hint="Keras keeps one multiplier per output column, the one that sends the column's largest magnitude to "
                       "127; which axis of a (inputs, outputs) kernel runs along a column? Multiply, round, keep inside "
                       "[-127, 127], then cast.", takes_function=True)
def _ex_10_1(answer: Any) -> None:
    keras = quiet_keras()
    rng = np.random.default_rng()  # fresh inputs on every check
    for n_in, n_out in [(6, 3), (16, 8), (1, 5), (int(rng.integers(2, 40)), int(rng.integers(2, 40)))]:
        # each column: whole steps plus a fraction at least 0.1 away from a rounding tie, and one value at +-127 steps,
        # so that every correct way of computing the scale and rounding agrees exactly
        multiplier = rng.uniform(20, 200, size=n_out)
        steps = rng.integers(-126, 127, size=(n_in, n_out)) + rng.uniform(-0.4, 0.4, size=(n_in, n_out))
        steps[rng.integers(0, n_in, size=n_out), np.arange(n_out)] = rng.choice([-127.0, 127.0], size=n_out)
        w = (steps / multiplier).astype("float32")
        out = returned(answer(w.copy()), "quantize_per_channel")
        if not isinstance(out, tuple) or len(out) != 2:
            raise Wrong("return a pair (q, scale).")
        q, scale = (np.asarray(v) for v in out)
        want_q, want_scale = (keras.ops.convert_to_numpy(v) for v in keras.quantizers.abs_max_quantize(w, axis=0))
        case = f"for a ({n_in} x {n_out}) kernel"
        if q.dtype != np.int8:
            raise Wrong(f"{case} q must be an int8 array, not {q.dtype}.")
        if q.shape != w.shape:
            raise Wrong(f"{case} q has shape {q.shape}: it keeps the kernel's shape.")
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        if scale.size == 1 and n_out > 1:
            raise Wrong(f"{case} you returned one scale for the whole kernel: Keras keeps one per output column.")
        if scale.size != n_out:
            raise Wrong(f"{case} return one scale per output column ({n_out}), not {scale.size}: is it the right axis?")
        if np.allclose(scale, 1 / want_scale.reshape(-1), rtol=1e-4):
            raise Wrong(f"{case} your scale is the step size max|w| / 127; Keras keeps its inverse, the multiplier "
                        "127 / max|w| (q = w x scale).")
        if not np.allclose(scale, want_scale.reshape(-1), rtol=1e-4):
            raise Wrong(f"{case} the scales differ from Keras's 127 / max|w| per output column.")
        if not np.array_equal(q, want_q):
            raise Wrong(f"{case} some q differ from Keras's round(w x scale), kept in [-127, 127].")


@exercise("10.2", hint='Temperature divides the logits. Where do you get logits from probabilities? Keep the softmax numerically safe.', takes_function=True)
def _ex_10_2(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    logits = rng.normal(scale=3, size=(6, 10))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for t in (1.0, 2.0, 4.0, 0.5):
        got = np.asarray(returned(answer(p, t), "soften"), dtype=float)
        z = np.log(p) / t
        expected = np.exp(z - z.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        if got.shape != p.shape:
            raise Wrong(f"the result has shape {got.shape}, expected {p.shape}: one row per example.")
        if not np.allclose(got.sum(1), 1, atol=1e-6):
            raise Wrong("each row must sum to 1: normalise along the last axis.")
        if not np.allclose(got, expected, atol=1e-6):
            raise Wrong(f"at T = {t} the values differ: divide log p by T, then take the softmax.")
    flat = np.asarray(answer(p, 4.0)).max(1).mean()
    if not flat < p.max(1).mean():
        raise Wrong("a higher temperature must flatten the distribution.")


@exercise("10.3", hint='Rank the weights by magnitude, not by value; how many of them does a sparsity of s set to zero? Do not change the input array.', takes_function=True)
def _ex_10_3(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for shape, s in [((20, 10), 0.5), ((3, 3, 4, 8), 0.8), ((50,), 0.9), ((6, 6), 0.0)]:
        w = rng.normal(size=shape).astype(np.float32)
        original = w.copy()
        got = np.asarray(returned(answer(w, s), "prune"))
        if not np.array_equal(w, original):
            raise Wrong("prune changed its input: work on a copy.")
        if got.shape != w.shape:
            raise Wrong(f"the result has shape {got.shape}, the input {w.shape}.")
        k = int(round(s * w.size))
        if int((got == 0).sum()) != k:
            raise Wrong(f"with sparsity {s} on {w.size} weights, {k} must be zero, you have {int((got == 0).sum())}.")
        kept = got != 0
        if not np.array_equal(got[kept], w[kept]):
            raise Wrong("the weights you keep must be unchanged.")
        if k and np.abs(w[kept]).min() < np.abs(w[~kept]).max():
            raise Wrong("a weight you zeroed is larger in absolute value than one you kept: sort by |w|.")
