"""Checkers of chapter 10's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("10.1", hint="Map each value to a whole number of steps of size scale, move it by the zero point, and keep it inside int8's range. Mind the order: what does a cast do to 130?", takes_function=True)
def _ex_10_1(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for scale, zero in [(0.02, 0), (0.05, -20), (0.01, 10)]:
        # values at least 0.1 step away from a rounding tie, so that every correct way of rounding agrees
        steps = np.round(rng.normal(scale=1.5 / scale, size=(7, 5))) + rng.uniform(-0.4, 0.4, size=(7, 5))
        x = (steps * scale).astype(np.float32)
        x[0, 0], x[0, 1] = 100.0, -100.0  # far outside the range: must clip
        got = np.asarray(returned(answer(x, scale, zero), "quantize"))
        expected = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        if got.dtype != np.int8:
            raise Wrong(f"return an int8 array, not {got.dtype}.")
        if got.shape != x.shape:
            raise Wrong(f"the result has shape {got.shape}, the input {x.shape}.")
        if not np.array_equal(got, expected):
            if got[0, 0] != 127 or got[0, 1] != -128:
                raise Wrong("values outside the range must clip to 127 and -128, not wrap around.")
            raise Wrong(f"with scale {scale} and zero point {zero} some values differ: round x / scale, then add "
                        "the zero point.")


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
