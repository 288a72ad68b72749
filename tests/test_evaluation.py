"""Calibration, temperature scaling, permutation importance and gradient attributions (chapter 08)."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.evaluation import (expected_calibration_error, fit_temperature, integrated_gradients,
                                       permutation_importance, reliability, saliency)
from bigmodel_utils.scratch import softmax


def test_ece_of_a_calibrated_and_an_overconfident_model():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.uniform(size=p.size) < p).astype(int)  # right with probability p: calibrated
    assert expected_calibration_error(p, labels) < 0.02
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert expected_calibration_error(overconfident, labels) > 0.15
    conf, acc, count = reliability(p, labels, n_bins=5)
    assert count.sum() == p.size and np.nanmax(np.abs(conf - acc)) < 0.03


def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="logits"):
        expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="do not fit"):
        expected_calibration_error(np.array([0.2, 0.3]), np.array([0]))


def test_temperature_scaling_recovers_the_true_temperature_and_keeps_predictions():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(5000, 4)) * 2
    labels = np.array([rng.choice(4, p=row) for row in softmax(true_logits)])
    sharp = true_logits * 3.0  # an over-confident model: logits three times too large
    t = fit_temperature(sharp, labels)
    assert 2.6 < t < 3.4
    assert (softmax(sharp / t).argmax(1) == sharp.argmax(1)).all()
    assert expected_calibration_error(softmax(sharp / t), labels) < expected_calibration_error(softmax(sharp), labels)


def test_permutation_importance_finds_the_only_useful_column():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    y = (x[:, 1] > 0).astype(int)
    table = permutation_importance(lambda a: (a[:, 1] > 0).astype(int), x, y, lambda t, p: float((t == p).mean()),
                                   n_repeats=5, feature_names=["a", "b", "c"])
    assert table.index[0] == "b" and table.loc["b", "importance"] > 0.3
    assert table.loc["a", "importance"] == 0 and table.loc["c", "importance"] == 0


def test_integrated_gradients_completeness_and_saliency():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(3).normal(size=(2, 6)).astype("float32")
    ig = integrated_gradients(model, x, target=1, steps=128)
    gap = keras.ops.convert_to_numpy(model(x)[:, 1] - model(np.zeros_like(x))[:, 1])
    assert np.allclose(ig.sum(axis=1), gap, atol=1e-3)
    s = saliency(model, x, target=1)
    assert s.shape == x.shape and (s >= 0).all()
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, x, 1, baseline=np.zeros((1, 6)))
