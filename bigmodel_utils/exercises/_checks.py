"""What the chapter checkers share: number comparison, answers that must be functions, long reviews."""

from __future__ import annotations

from typing import Any

from bigmodel_utils.exercises import Wrong


def close(answer: Any, expected: float, rel: float, what: str) -> None:
    value = float(answer)
    if not abs(value - expected) <= rel * abs(expected):
        direction = "too high" if value > expected else "too low"
        raise Wrong(f"{value:.4g} is {direction} for {what}.")


def must_be_function(answer: Any) -> None:
    if not callable(answer):
        raise Wrong("answer with a function (def ...), not a value.")

def returned(value: Any, name: str) -> Any:
    if value is None or value is Ellipsis:
        raise Wrong(f"{name} returned {value!r}: finish the function (did you forget `return`?).")
    return value

def share_of_long_reviews(answer: Any, split: str, limit: int, what: str) -> None:
    from bigmodel_utils.data import load_dataset

    texts = load_dataset("reviews_zh", split=split)["text"]
    value = float(answer)
    if value > 1:
        raise Wrong("a fraction lies between 0 and 1 (did you give a count or a percentage?).")
    close(value, float((texts.str.len() > limit).mean()), 0.001, what)


def quiet_keras():
    """Keras, imported with TensorFlow's start-up noise silenced (checkers that compare with a Keras layer)."""
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras
