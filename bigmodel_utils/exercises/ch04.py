"""Checkers of chapter 04's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("04.1", hint='Flatten has no weights; a Dense layer has one weight per input-output pair and one bias per output.')
def _ex_04_1(answer: Any) -> None:
    from bigmodel_utils.scale import mlp_params

    expected = mlp_params([64, 32, 10])
    if int(answer) != answer or int(answer) != expected:
        raise Wrong(f"{answer!r} is not the count; an 8x8 image flattens to 64 inputs.")


@exercise("04.2", hint="The chapter's model builder and training loop work for the penguins too: three classes, integer labels, validation data.")
def _ex_04_2(answer: Any) -> None:
    from bigmodel_utils.tabular import penguin_arrays

    if not hasattr(answer, "predict"):
        raise Wrong("answer with the trained Keras model itself.")
    data = penguin_arrays("species")
    probs = np.asarray(answer.predict(data["x_test"], verbose=0))
    if probs.ndim != 2 or probs.shape[1] != 3:
        raise Wrong(f"the model should output 3 class probabilities per penguin, got shape {probs.shape}.")
    acc = float(np.mean(probs.argmax(axis=1) == data["y_test"]))
    if acc < 0.95:
        raise Wrong(f"test accuracy {acc:.3f} is below 0.95: train longer, or check the loss and the labels.")


@exercise("04.3", hint="At test time dropout does nothing, so in training each output must keep its input's expected value. "
                       "With probability rate a unit is zeroed: what must the survivors be multiplied by?", takes_function=True)
def _ex_04_3(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    x = rng.uniform(0.5, 2.0, size=(400, 250)) * rng.choice([-1.0, 1.0], size=(400, 250))
    for rate in (0.0, 0.25, 0.5, float(rng.uniform(0.05, 0.9))):
        original = x.copy()
        out = np.asarray(returned(answer(x, rate, np.random.default_rng(int(rng.integers(1 << 31)))), "dropout"),
                         dtype=float)
        if not np.array_equal(x, original):
            raise Wrong("dropout changed its input array: return a new array.")
        if out.shape != x.shape:
            raise Wrong(f"the output has shape {out.shape}, the input {x.shape}.")
        dropped = out == 0
        share = float(dropped.mean())
        tolerance = 6 * np.sqrt(rate * (1 - rate) / x.size) + 1e-9
        if abs(share - rate) > tolerance:
            if abs(share - (1 - rate)) <= tolerance:
                raise Wrong(f"with rate={rate:.2f} you zeroed {share:.1%} of the units: rate is the share *dropped*, "
                            "not kept.")
            raise Wrong(f"with rate={rate:.2f} about {rate:.0%} of the units must be zeroed, you zeroed {share:.1%}.")
        kept = ~dropped
        if np.allclose(out[kept], x[kept] / (1 - rate)):
            continue
        if np.allclose(out[kept], x[kept]):
            raise Wrong(f"the units you keep have their old values, so the layer's mean output shrinks to "
                        f"{1 - rate:.2f} times its input in training (and not at test time): scale the survivors.")
        if np.allclose(out[kept], x[kept] * (1 - rate)):
            raise Wrong("the survivors are scaled the wrong way: their expected value must stay the input's.")
        raise Wrong(f"with rate={rate:.2f} the units you keep have the wrong values.")
    first = np.asarray(answer(x, 0.5, np.random.default_rng(1))) == 0
    second = np.asarray(answer(x, 0.5, np.random.default_rng(2))) == 0
    if np.array_equal(first, second):
        raise Wrong("two different random generators gave the same mask: draw the mask from the rng you are given.")
