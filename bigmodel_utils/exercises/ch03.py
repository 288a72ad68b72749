"""Checkers of chapter 03's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import close, returned


def _clean_penguins():
    from bigmodel_utils.data import load_dataset
    from bigmodel_utils.tabular import clean_penguins

    return clean_penguins(load_dataset("penguins_raw"))


@exercise("03.1", hint='Mark each row that has at least one missing value; the mean of a boolean column is a fraction.')
def _ex_03_1(answer: Any) -> None:
    df = _clean_penguins()
    expected = float(df.isna().any(axis=1).mean())
    value = float(answer)
    if value > 1:
        raise Wrong("a fraction lies between 0 and 1 (did you give a count or a percentage?).")
    close(value, expected, 0.001, "the fraction of rows with a missing value")


@exercise("03.2", hint='Split with the seed the exercise names, then compare the bird ids on the two sides as sets.')
def _ex_03_2(answer: Any) -> None:
    from bigmodel_utils.tabular import split_frame

    train, _, test = split_frame(_clean_penguins(), "species", seed=1)
    expected = len(set(train["individual_id"]) & set(test["individual_id"]))
    if int(answer) != answer or int(answer) != expected:
        raise Wrong(f"{answer!r} is not the number of birds on both sides (check the seed: 1).")


@exercise("03.3", hint='A scaler learns its means from the data it is fitted on: which split should that be? The fitted scaler keeps them in an attribute.')
def _ex_03_3(answer: Any) -> None:
    from bigmodel_utils.tabular import split_frame

    train, _, _ = split_frame(_clean_penguins(), "sex", seed=0)
    expected = float(train["body_mass_g"].mean())
    if abs(float(answer) - float(_clean_penguins()["body_mass_g"].mean())) < 1e-6 and abs(float(answer) - expected) > 1e-6:
        raise Wrong("that is the mean over the whole table: the scaler must learn from the training split only.")
    close(answer, expected, 1e-6, "the training split's mean body mass")


@exercise("03.4", hint="scikit-learn has a splitter that keeps every group on one side and takes a random_state; it yields "
                       "row positions, not frames.", takes_function=True)
def _ex_03_4(answer: Any) -> None:
    import math

    import pandas as pd

    rng = np.random.default_rng()  # fresh inputs on every check
    for test_size in (0.2, 0.3):
        n_groups = int(rng.integers(30, 60))
        sizes = rng.integers(1, 6, n_groups)
        ids = np.repeat([f"bird{i:03d}" for i in range(n_groups)], sizes)
        frame = pd.DataFrame({"individual_id": ids, "mass": rng.normal(4000, 500, len(ids))})
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
        frame.index = frame.index + 1000  # a frame's index need not be 0..n-1
        splits = []
        for seed in (0, 0, 1):
            out = returned(answer(frame.copy(), "individual_id", test_size, seed), "group_split")
            if not isinstance(out, tuple) or len(out) != 2 or not all(isinstance(p, pd.DataFrame) for p in out):
                raise Wrong("return a pair of DataFrames (train, test).")
            splits.append(out)
        train, test = splits[0]
        if len(train) + len(test) != len(frame) or not set(train.index).isdisjoint(test.index) \
                or set(train.index) | set(test.index) != set(frame.index):
            raise Wrong("every row must land on exactly one side, with its original index.")
        if not train.loc[:, frame.columns].equals(frame.loc[train.index]):
            raise Wrong("the rows must keep their values: select rows, do not change them.")
        shared = set(train["individual_id"]) & set(test["individual_id"])
        if shared:
            raise Wrong(f"{len(shared)} of {n_groups} birds are on both sides: split the birds, not the rows.")
        n_test = test["individual_id"].nunique()
        if not math.floor(test_size * n_groups) <= n_test <= math.ceil(test_size * n_groups):
            raise Wrong(f"with test_size={test_size} about {test_size:.0%} of the {n_groups} birds belong in the test "
                        f"set, you put {n_test} there.")
        if not splits[1][1].index.equals(test.index):
            raise Wrong("the same seed must give the same split.")
        if set(splits[2][1]["individual_id"]) == set(test["individual_id"]):
            raise Wrong("seeds 0 and 1 gave the same test birds: shuffle the birds with the seed.")
