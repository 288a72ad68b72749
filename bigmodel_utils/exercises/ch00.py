"""Checkers of chapter 00's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("00.1", hint='The loader returns a pair (images, labels). The first axis of the image array counts the images; the other axes are one image.')
def _ex_00_1(answer: Any) -> None:
    from bigmodel_utils.data import load_dataset

    images, _ = load_dataset("digits", split="train")
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("answer with a pair: (number of training images, shape of one image).")
    n, shape = answer
    if n != len(images):
        raise Wrong(f"{n!r} is not the number of images in the training split.")
    if tuple(shape) != images.shape[1:]:
        raise Wrong(f"{shape!r} is not the shape of one image (height, width).")


@exercise("00.2", hint="The data catalogue of the chapter has an 'offline' column; dataset_info(name) carries the same flag for one name.")
def _ex_00_2(answer: Any) -> None:
    from bigmodel_utils.data import dataset_info, list_datasets

    expected = {n for n in list_datasets() if dataset_info(n).offline}
    got = set(answer)
    if got - expected:
        raise Wrong(f"{sorted(got - expected)} need the internet.")
    if expected - got:
        raise Wrong(f"{len(expected - got)} offline data set(s) are missing from your answer.")


@exercise("00.3", hint="How many numbers does the product have? Each one is a sum of products: count the multiplications "
                       "and the additions that make it, the way the chapter counts them for square matrices.", takes_function=True)
def _ex_00_3(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for m, k, n in [(2, 3, 4), (1, 1, 1), *(tuple(int(v) for v in rng.integers(1, 3000, 3)) for _ in range(3))]:
        got = returned(answer(m, k, n), "matmul_flops")
        if isinstance(got, bool) or not isinstance(got, (int, float, np.integer, np.floating)):
            raise Wrong(f"return a number of floating-point operations, not {got!r}.")
        expected = 2 * m * k * n
        if got == expected:
            continue
        if got == m * k * n:
            raise Wrong("that counts the multiplications only: each term is also added to the sum.")
        if got == m * n * (2 * k - 1):
            raise Wrong("that is the exact count (k - 1 additions per output); the book, like every FLOP count of "
                        "large models, counts one multiply-add per term as 2 FLOP, as section 2 does for 2n³.")
        if got == 2 * n**3 or got == 2 * m**3:
            raise Wrong("2n³ holds for square matrices only: use all three sizes.")
        raise Wrong(f"for a ({m} x {k}) by ({k} x {n}) product you gave {got!r}, expected {expected:,}.")
