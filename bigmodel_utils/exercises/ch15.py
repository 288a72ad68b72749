"""Checkers of chapter 15's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import answer_and_data, returned


@exercise("15.1", hint='Keep only the rows of the smallest training set, then find the width of its best test accuracy.')
def _ex_15_1(answer: Any) -> None:
    value, table = answer_and_data(answer, "capacity", "compute the width from the capacity table")
    small = table[table["training images"] == table["training images"].min()]
    expected = int(small.loc[small["test accuracy"].idxmax(), "width"])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise Wrong(f"answer with a width (a whole number), not {value!r}.")
    if int(value) != expected:
        best_overall = int(table.loc[table["test accuracy"].idxmax(), "width"])
        why = " That is the best on all the data; look at the small training set only." if value == best_overall else ""
        raise Wrong(f"width {int(value)} is not the best on the small training set.{why}")


@exercise("15.2", hint='Start from a blank image and copy the part of the image that stays inside the frame; a negative shift moves the other way.', takes_function=True)
def _ex_15_2(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    images = rng.random((3, 8, 8, 1)).astype(np.float32)

    def reference(x, dx, dy):
        out = np.zeros_like(x)
        h, w = x.shape[1:3]
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[:, yd, xd] = x[:, ys, xs]
        return out

    for dx, dy in [(1, 0), (0, 1), (-2, 0), (0, -1), (1, -1), (0, 0)]:
        got = np.asarray(returned(answer(images, dx, dy), "shift"))
        expected = reference(images, dx, dy)
        if got.shape != images.shape:
            raise Wrong(f"the result has shape {got.shape}, expected {images.shape}.")
        if not np.allclose(got, expected):
            if np.allclose(got, np.roll(np.roll(images, dx, axis=2), dy, axis=1)):
                raise Wrong("that wraps pixels around like np.roll: the pixels that enter must be 0.")
            raise Wrong(f"shift by dx={dx}, dy={dy} differs: dx moves right along axis 2, dy moves down along axis 1.")
