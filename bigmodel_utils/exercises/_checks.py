"""What the chapter checkers share: number comparison, finished functions, long reviews, Keras, (answer, data) pairs."""

from __future__ import annotations

from typing import Any

from bigmodel_utils.exercises import Wrong


def close(answer: Any, expected: float, rel: float, what: str) -> None:
    value = float(answer)
    if not abs(value - expected) <= rel * abs(expected):
        direction = "too high" if value > expected else "too low"
        raise Wrong(f"{value:.4g} is {direction} for {what}.")


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


def on_cpu():
    """A context in which Keras's reference is computed on the CPU, in full float32: on a recent NVIDIA GPU
    TensorFlow multiplies in TF32 (about 1e-3 relative error), which would fail a learner's right NumPy answer."""
    import tensorflow as tf

    return tf.device("/CPU:0")


def answer_and_data(answer: Any, data: str, todo: str) -> tuple[Any, Any]:
    """Unpack ``(value, data)``, the pair an exercise cell passes when the checker needs the chapter's own data."""
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong(f"pass (your answer, {data}), as the cell does.")
    value, extra = answer
    if value is None or value is Ellipsis:
        raise Wrong(f"no answer yet: {todo}.")
    return value, extra
