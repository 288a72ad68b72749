"""Checkers of chapter 13's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import answer_and_data, returned


@exercise("13.1", hint='Sort the probabilities from the largest; a token is kept while the mass of the tokens before it is at most p. Then renormalise.', takes_function=True)
def _ex_13_1(answer: Any) -> None:
    from bigmodel_utils.models.gpt import sampling_probabilities

    rng = np.random.default_rng()  # fresh inputs on every check
    cases = [(np.array([0.5, 0.3, 0.15, 0.05]), 0.7), (np.array([0.5, 0.3, 0.15, 0.05]), 0.5),
             (np.array([0.1, 0.6, 0.3]), 0.01), (np.array([0.25, 0.25, 0.25, 0.25]), 1.0),
             (rng.dirichlet(np.ones(50)), 0.9), (rng.dirichlet(np.full(30, 0.2)), 0.6)]
    for probs, p in cases:
        got = returned(answer(probs.copy(), p), "top_p_filter")
        got = np.asarray(got, dtype=float)
        expected = sampling_probabilities(np.log(probs), top_p=p)
        if got.shape != probs.shape:
            raise Wrong(f"return a vector of the same length as the input ({probs.shape}), got shape {got.shape}.")
        if np.allclose(got, expected, atol=1e-9):
            continue
        if not np.isclose(got.sum(), 1.0):
            raise Wrong(f"for p = {p} the result sums to {got.sum():.3f}: renormalise what you keep.")
        kept, should = int((got > 0).sum()), int((expected > 0).sum())
        if kept == should - 1:
            raise Wrong(f"for p = {p} you kept {kept} tokens, one too few: keep a token while the mass of the more "
                        "probable ones is at most p (the one that crosses p, and one that lands exactly on it, stay).")
        raise Wrong(f"for probabilities {np.round(probs[:6], 3)}... and p = {p} you kept {kept} tokens, expected {should}.")


@exercise("13.2", hint='The cache stores keys and values for every layer, head, head dimension, position and sequence; count the bytes of a 16-bit number.')
def _ex_13_2(answer: Any) -> None:
    from bigmodel_utils.scale import kv_cache_bytes

    if answer is None or answer is Ellipsis:
        raise Wrong("no answer yet: compute the number of bytes.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise Wrong(f"answer with a number of bytes, not {answer!r}.")
    expected = kv_cache_bytes(96, 96, 128, 2048, batch=1, bytes_per_value=2)
    if abs(answer - expected) <= 1e-6 * expected:
        return
    if abs(answer - expected / 2) <= 1e-6 * expected:
        raise Wrong("that is half of it: the cache keeps keys *and* values.")
    if abs(answer - 2 * expected) <= 1e-6 * expected:
        raise Wrong("twice too much: 16-bit numbers take 2 bytes each, and the cache holds keys and values once each.")
    raise Wrong(f"{answer:,.0f} bytes is {'too much' if answer > expected else 'too little'}: multiply every factor once.")


@exercise("13.3", hint="Turn the mean into a total over tokens, spread the total over characters, and change the logarithm's base.", takes_function=True)
def _ex_13_3(answer: Any) -> None:
    import math

    for nll, tokens, characters in [(2.0, 100, 150), (4.1, 5000, 7300), (1.0, 10, 10)]:
        got = returned(answer(nll, tokens, characters), "bits_per_character")
        expected = nll * tokens / characters / math.log(2)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"return a number, not {got!r}.")
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        if math.isclose(got, nll * tokens / characters, rel_tol=1e-9):
            raise Wrong("that is nats per character: convert to bits (divide by ln 2).")
        if math.isclose(got, nll / math.log(2), rel_tol=1e-9):
            raise Wrong("that is bits per *token*: a token covers several characters here; spread the total over them.")
        raise Wrong(f"for nll={nll}, {tokens} tokens, {characters} characters expected {expected:.4f}, got {got!r}.")


@exercise("13.4", hint='Count every pair of neighbouring characters over all four texts, overlapping pairs too; BPE merges the most frequent first.')
def _ex_13_4(answer: Any) -> None:
    from bigmodel_utils.models.bpe import train_bpe

    value, texts = answer_and_data(answer, "texts", "count the pairs")
    if not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise Wrong(f"answer with a tuple of two strings such as ('酒', '店'), not {value!r}.")
    merges = train_bpe(texts, 2 + len(set("".join(texts))) + 1).merges
    if not merges:
        raise Wrong("in these texts no pair of neighbours occurs twice, so BPE merges nothing: use the texts given.")
    expected = merges[0]
    if value != expected:
        raise Wrong(f"{value[0]}{value[1]} is not the most frequent pair: count each text's pairs, overlapping ones too.")
