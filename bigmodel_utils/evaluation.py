"""Measuring and explaining models: calibration, temperature scaling, permutation importance, gradients (chapter 08).

NumPy and scikit-learn only at import; the gradient methods import TensorFlow when called.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bigmodel_utils.scratch import softmax


def _probabilities(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim == 1:  # binary: P(class 1)
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities {probs.shape} do not fit {len(labels)} labels; pass (n,) or (n, classes)")
    if len(labels) == 0:
        raise ValueError("no examples to evaluate")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probabilities must be finite numbers in [0, 1]; did you pass logits? apply softmax first")
    return probs, labels


def threshold_report(labels, scores, threshold: float) -> dict:
    """What a binary classifier does at one decision threshold (chapter 08's widget): predict 1 where
    ``score >= threshold``. Returns the confusion matrix (rows: true 0/1, columns: predicted 0/1), accuracy,
    precision, recall, F1 and how many examples were called positive; precision is 0 when nothing is called positive.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if labels.ndim != 1 or labels.shape != scores.shape or labels.size == 0:
        raise ValueError(f"labels and scores must be two 1-D arrays of the same non-zero length, got shapes "
                         f"{labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers")
    if not isinstance(threshold, (int, float, np.floating)) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = (scores >= threshold).astype(int)
    confusion = confusion_matrix(labels, predicted, labels=[0, 1])
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    return {"confusion": confusion, "accuracy": float(np.trace(confusion) / labels.size), "precision": float(precision),
            "recall": float(recall), "f1": float(f1), "called_positive": int(predicted.sum())}


def reliability(probs, labels, n_bins: int = 10):
    """Confidence bins of the predicted class: ``(mean confidence, accuracy, count)`` per bin, equal-width bins.

    A calibrated model is right 80 % of the time when it says 80 %: accuracy equals confidence in every bin.
    """
    probs, labels = _probabilities(probs, labels)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, confidence, n_bins) / count
        accuracy = np.bincount(which, correct, n_bins) / count
    return mean_conf, accuracy, count


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """ECE: the average gap |accuracy - confidence| over confidence bins, weighted by the share of examples."""
    mean_conf, accuracy, count = reliability(probs, labels, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] * np.abs(accuracy[filled] - mean_conf[filled])) / count.sum())


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T that minimises the negative log-likelihood of ``softmax(logits / T)`` (Guo et al. 2017).

    Fit it on validation data, never on the test set. T > 1 softens an over-confident model; the predicted
    class (and so the accuracy) never changes.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits must be (n, classes) for n labels, got {logits.shape} and {len(labels)} labels")

    def nll(t: float) -> float:
        return float(-np.log(softmax(logits / t)[np.arange(len(labels)), labels] + 1e-12).mean())

    return float(minimize_scalar(nll, bounds=bounds, method="bounded").x)


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], x, y, score: Callable, n_repeats: int = 10,
                           seed: int = 0, feature_names=None):
    """How much ``score(y, predict(x))`` drops when one column of ``x`` is shuffled: mean and std per column.

    Works for any model, Keras included (``predict`` returns what ``score`` expects). Shuffling a column
    breaks its link with the target while keeping its distribution.
    """
    import pandas as pd

    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (n, features) with n = {len(y)} rows, got {x.shape}")
    rng = np.random.default_rng(seed)
    base = score(y, predict(x))
    drops = np.zeros((x.shape[1], n_repeats))
    for j in range(x.shape[1]):
        for r in range(n_repeats):
            shuffled = x.copy()
            shuffled[:, j] = x[rng.permutation(len(x)), j]
            drops[j, r] = base - score(y, predict(shuffled))
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(x.shape[1])]
    return pd.DataFrame({"importance": drops.mean(axis=1), "std": drops.std(axis=1)}, index=names).sort_values(
        "importance", ascending=False)


def _class_score(model, x, target: int):
    return model(x, training=False)[:, target]


def saliency(model, x, target: int) -> np.ndarray:
    """|d output[target] / d input|: which input numbers the model's score is most sensitive to."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = _class_score(model, x, target)
    return np.abs(tape.gradient(out, x).numpy())


def integrated_gradients(model, x, target: int, baseline=None, steps: int = 64) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017) of ``model(x)[:, target]`` from ``baseline`` (zeros) to ``x``.

    The average gradient along the straight path times ``(x - baseline)``, by the trapezoidal rule. Its
    *completeness* property: the attributions sum to ``f(x) - f(baseline)``, which the chapter checks.
    """
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    baseline = np.zeros_like(x) if baseline is None else np.asarray(baseline, dtype=np.float32)
    if baseline.shape != x.shape:
        raise ValueError(f"baseline {baseline.shape} must have the shape of x {x.shape}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    out = np.zeros_like(x)
    for i in range(len(x)):  # all points of one path in one batch
        shape = (len(alphas),) + (1,) * (x.ndim - 1)
        path = tf.convert_to_tensor(baseline[i] + alphas.reshape(shape) * (x[i] - baseline[i]))
        with tf.GradientTape() as tape:
            tape.watch(path)
            score = tf.reduce_sum(_class_score(model, path, target))
        grads = tape.gradient(score, path).numpy()
        out[i] = (grads[:-1] + grads[1:]).mean(axis=0) / 2.0 * (x[i] - baseline[i])
    return out
