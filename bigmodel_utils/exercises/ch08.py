"""Checkers of chapter 08's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("08.1", hint='The AUC is the chance that a random positive scores above a random negative. Compare every positive with every negative; a tie counts half.', takes_function=True)
def _ex_08_1(answer: Any) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng()  # fresh inputs on every check
    for n, rounding in [(50, None), (200, 1), (7, None)]:
        labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = rng.normal(size=n) + labels
        if rounding is not None:
            scores = np.round(scores, rounding)  # ties
        got = float(returned(answer(scores, labels), "auc"))
        expected = roc_auc_score(labels, scores)
        if not abs(got - expected) < 1e-9:
            hint = " Count ties as half a pair." if rounding is not None else ""
            raise Wrong(f"for {n} examples you gave {got:.4f}, the AUC is {expected:.4f}.{hint}")


@exercise("08.2", hint="Bin the examples by their top probability; in each bin compare the mean confidence with the accuracy, weighted by the bin's share. Where does a confidence of exactly 1 go?", takes_function=True)
def _ex_08_2(answer: Any) -> None:
    from bigmodel_utils.evaluation import expected_calibration_error

    rng = np.random.default_rng()  # fresh inputs on every check
    for n, k, bins in [(500, 3, 10), (300, 10, 5), (50, 2, 15)]:
        logits = rng.normal(size=(n, k)) * 3
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = rng.integers(0, k, n)
        got = float(returned(answer(probs, labels, n_bins=bins), "ece"))
        expected = expected_calibration_error(probs, labels, n_bins=bins)
        if not abs(got - expected) < 1e-3:
            raise Wrong(f"with {n} examples, {k} classes and {bins} bins you gave {got:.4f}, the ECE is {expected:.4f}.")
