"""Checkers of chapter 14's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("14.1", hint="LoRA trains two thin matrices whose product has W's shape; how many numbers do the two hold?", takes_function=True)
def _ex_14_1(answer: Any) -> None:
    for d_in, d_out, rank in [(128, 512, 8), (512, 128, 4), (4096, 4096, 16), (10, 3, 1)]:
        got = returned(answer(d_in, d_out, rank), "lora_parameters")
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"return a number of parameters, not {got!r}.")
        expected = rank * (d_in + d_out)
        if got == expected:
            continue
        if got == d_in * d_out:
            raise Wrong("that is the size of W itself, which LoRA freezes: count A and B.")
        if got in (rank * d_in, rank * d_out):
            raise Wrong("that counts one of the two matrices: A (d_in x r) and B (r x d_out) are both trained.")
        if got == d_in * d_out * rank:
            raise Wrong("A·B has d_in x d_out entries, but LoRA stores A and B, not their product.")
        raise Wrong(f"for d_in={d_in}, d_out={d_out}, r={rank} expected {expected:,}, got {got!r}.")


@exercise("14.2", hint='The merged kernel is W plus the scaled low-rank update; the LoRA section gives the scale.', takes_function=True)
def _ex_14_2(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for d_in, d_out, rank, alpha in [(6, 4, 2, 4.0), (5, 7, 3, 3.0), (8, 8, 1, 16.0)]:
        W, A, B = rng.normal(size=(d_in, d_out)), rng.normal(size=(d_in, rank)), rng.normal(size=(rank, d_out))
        got = np.asarray(returned(answer(W.copy(), A.copy(), B.copy(), alpha, rank), "merge"), dtype=float)
        expected = W + alpha / rank * A @ B
        if got.shape != W.shape:
            raise Wrong(f"the merged kernel must have W's shape {W.shape}, got {got.shape}.")
        if np.allclose(got, expected):
            continue
        if np.allclose(got, W + A @ B):
            raise Wrong("the scale is missing: LoRA adds (alpha / rank) * A @ B.")
        if np.allclose(got, W + rank / alpha * A @ B):
            raise Wrong("the scale is upside down: alpha / rank, not rank / alpha.")
        if np.allclose(got, A @ B):
            raise Wrong("that is the update alone: add it to W.")
        raise Wrong(f"for rank {rank} and alpha {alpha} the merged kernel differs from W + (alpha / rank) A @ B.")


@exercise("14.3", hint="Wilson's interval inverts the normal test rather than plugging in p: look up its centre and half-width, with z = 1.96.", takes_function=True)
def _ex_14_3(answer: Any) -> None:
    import math

    from scipy.stats import binomtest

    for k, n in [(170, 200), (100, 200), (200, 200), (0, 50), (7, 10)]:
        got = returned(answer(k, n), "wilson")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong(f"return (low, high), not {got!r}.")
        low, high = (float(v) for v in got)
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        if math.isclose(low, ci.low, abs_tol=2e-4) and math.isclose(high, ci.high, abs_tol=2e-4):
            continue
        p = k / n
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        if math.isclose(low, p - half, abs_tol=2e-4) and math.isclose(high, p + half, abs_tol=2e-4):
            raise Wrong(f"that is the normal (Wald) interval: for {k} of {n} it is "
                        f"{'empty' if half == 0 else 'too narrow near 0 and 1'}; Wilson's moves the centre toward 1/2.")
        raise Wrong(f"for {k} of {n} expected ({ci.low:.4f}, {ci.high:.4f}), got ({low:.4f}, {high:.4f}).")
