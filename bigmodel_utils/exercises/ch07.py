"""Checkers of chapter 07's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned, share_of_long_reviews


@exercise("07.1", hint='Count the four attention projections (each with a bias), the two layer norms (a scale and a shift each) and the two feed-forward layers (with biases).')
def _ex_07_1(answer: Any) -> None:
    from bigmodel_utils.scale import transformer_block_params

    d, expected = 128, transformer_block_params(128, 4, 512)
    if int(answer) != answer:
        raise Wrong("a parameter count is a whole number.")
    if int(answer) == expected - 4 * d:
        raise Wrong("almost: count the two layer norms too (a scale and a shift of d numbers each).")
    if int(answer) != expected:
        raise Wrong(f"{int(answer):,} is not the count; check each of the four attention matrices has a bias.")


@exercise("07.2", hint='The chapter builds attention in steps: scores, scaling, the mask that hides later positions, a softmax per row, a mix of values. Which returned value is the output?', takes_function=True)
def _ex_07_2(answer: Any) -> None:
    from bigmodel_utils.models.attention import causal_mask, scaled_dot_product_attention

    rng = np.random.default_rng()  # fresh inputs on every check
    for n, d in [(5, 4), (1, 3), (8, 2)]:
        q, k, v = (rng.normal(size=(n, d)) for _ in range(3))
        got = np.asarray(returned(answer(q, k, v), "causal_attention"), dtype=float)
        expected, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(n))
        if got.shape != expected.shape:
            raise Wrong(f"for q, k, v of shape {(n, d)} the output should have shape {expected.shape}, got {got.shape}.")
        if not np.allclose(got[0], v[0]):
            raise Wrong("the first position may attend only to itself, so its output must be v[0]; is the mask applied?")
        if not np.allclose(got, expected, atol=1e-8):
            raise Wrong("the values are wrong; did you divide the scores by sqrt(d)?")


@exercise("07.3", hint="How many positions of SEQ_LEN does the tokenizer's wrapping use up before the first character?")
def _ex_07_3(answer: Any) -> None:
    share_of_long_reviews(answer, "test", 62, "the share of test reviews that SEQ_LEN = 64 cuts")
