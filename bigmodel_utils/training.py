"""Feeding ``model.fit`` on a small CPU (chapters 07, 13 and 14).

Given NumPy arrays, ``model.fit`` builds a ``tf.data`` pipeline that slices batches in parallel and prefetches them,
with TensorFlow's autotuner sizing both while training runs. On a machine with two cores those helper threads and
the training step get in each other's way: on the 2-core AMD EPYC where this was found, a Transformer's training
step fed that way was slower than the same compiled step fed batch by batch, with the cores partly idle
(``benchmarks/pretraining_speed.py`` times the ways in back-to-back pairs on your machine). :func:`batches` hands
``fit`` the same batches, in the same order, from a plain pipeline: no prefetching, no autotuning, one thread.
Everything else about ``fit`` (the callbacks, the history, the loss it reports) stays as it was; pass
``shuffle=False`` to ``fit`` (the batches are already in the order wanted, and Keras warns otherwise).
"""

from __future__ import annotations

import numbers

import numpy as np


def _rows(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{name} is a single value, not rows: pass an array with one row per example")
    if array.dtype == object:
        raise TypeError(f"{name} holds Python objects ({type(np.ravel(array)[0]).__name__}), not numbers: "
                        "pass a NumPy array of numbers, for example token ids")
    return array


def batches(x, y, sample_weight=None, *, batch_size: int):
    """The rows of ``x``, ``y`` (and ``sample_weight``) in their order, ``batch_size`` at a time, the last batch
    possibly shorter, as a ``tf.data.Dataset`` for ``model.fit``: the batches ``fit(x, y, batch_size=batch_size,
    shuffle=False)`` would make, without its prefetching and autotuning threads.

    ``x`` is one array or a tuple or list of arrays (a model with several inputs); every array has one row per
    example. Shuffle before calling, as chapter 13 does, if the order should change from pass to pass.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of rows, at least 1; got {batch_size!r}")
    inputs = tuple(_rows(f"x[{i}]", part) for i, part in enumerate(x)) if isinstance(x, (tuple, list)) \
        else _rows("x", x)
    targets = _rows("y", y)
    weights = None if sample_weight is None else _rows("sample_weight", sample_weight)
    lengths = {f"x[{i}]": len(part) for i, part in enumerate(inputs)} if isinstance(inputs, tuple) else {"x": len(inputs)}
    lengths["y"] = len(targets)
    if weights is not None:
        lengths["sample_weight"] = len(weights)
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every array needs one row per example, but their lengths differ: {lengths}")
    if len(targets) == 0:
        raise ValueError("there are no rows to train on: x and y are empty")

    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    parts = (inputs, targets) if weights is None else (inputs, targets, weights)
    options = tf.data.Options()
    options.autotune.enabled = False  # no autotuner thread resizing buffers while the step runs
    options.threading.private_threadpool_size = 1  # the slicing runs on one thread of the pipeline's own
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size).with_options(options)
