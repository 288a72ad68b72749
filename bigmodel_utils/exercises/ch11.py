"""Checkers of chapter 11's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import returned


@exercise("11.1", hint="Sort the latencies; the 99th percentile sits 99 % of the way along the sorted list, between two neighbours when it does not land on one (NumPy's default).", takes_function=True)
def _ex_11_1(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for data in ([5.0], [1.0, 2.0], list(rng.exponential(3, 100)), list(rng.exponential(3, 1001)), [3, 1, 2, 10, 7]):
        got = float(returned(answer(list(data)), "p99"))
        expected = float(np.percentile(data, 99))
        if not abs(got - expected) <= 1e-9 * max(1.0, abs(expected)):
            raise Wrong(f"for {len(data)} latencies you gave {got:.4f}, the 99th percentile is {expected:.4f}: "
                        "sort first, then interpolate at 0.99 × (n − 1).")


@exercise("11.2", hint='Each row becomes one dictionary with the class, its label and the probabilities. JSON cannot write NumPy scalars: turn them into Python numbers.', takes_function=True)
def _ex_11_2(answer: Any) -> None:
    import json

    rng = np.random.default_rng()  # fresh inputs on every check
    p = rng.dirichlet(np.ones(3), size=int(rng.integers(2, 6))).astype(np.float32)
    names = [str(v) for v in rng.choice(["差评", "好评", "中评", "neg", "pos", "mixed"], size=3, replace=False)]
    got = returned(answer(p, names), "to_json")
    try:
        text = json.dumps(got)
    except TypeError as error:
        raise Wrong(f"json.dumps refuses the result ({error}): convert NumPy values with int() and float().") from None
    back = json.loads(text)
    if not isinstance(back, list) or len(back) != len(p):
        raise Wrong(f"return a list with one dictionary per row ({len(p)} rows here).")
    for row, probs in zip(back, p):
        expected_class = int(probs.argmax())
        label = names[expected_class]
        if not isinstance(row, dict) or set(row) != {"class", "label", "probabilities"}:
            raise Wrong('each item is a dictionary with exactly "class", "label" and "probabilities".')
        if row["class"] != expected_class or row["label"] != label:
            raise Wrong("the class is the index of the largest probability, the label its name.")
        if not np.allclose(row["probabilities"], probs, atol=1e-6):
            raise Wrong("keep every probability of the row, in order.")


@exercise("11.3", hint='List what a valid payload must be (its type, its key, the list, each text, its length) and refuse each way of breaking it with a message.', takes_function=True)
def _ex_11_3(answer: Any) -> None:
    good = {"instances": ["很好", "太差了"]}
    got = returned(answer(good, 10), "validate_text")
    if list(got) != ["很好", "太差了"]:
        raise Wrong("for a valid payload, return its list of texts.")
    bad = [([], "a list instead of an object"), ({}, "no 'instances'"), ({"instances": "很好"}, "a string, not a list"),
           ({"instances": []}, "an empty list"), ({"instances": ["ok"] * 65}, "65 texts"),
           ({"instances": [3]}, "a number"), ({"instances": ["  "]}, "a blank text"),
           ({"instances": ["x" * 11]}, "a text longer than max_length"), (None, "None")]
    for payload, what in bad:
        try:
            answer(payload, 10)
        except ValueError as error:
            if not str(error):
                raise Wrong(f"for {what}, raise ValueError with a message that says what is wrong.") from None
            continue
        except Exception as error:  # noqa: BLE001 - a crash is the wrong answer here
            raise Wrong(f"for {what} your function raised {type(error).__name__}: raise ValueError instead.") from None
        raise Wrong(f"{what} was accepted: raise ValueError.")
