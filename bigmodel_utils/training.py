"""Feeding ``model.fit`` on a small CPU, and compiling its step with XLA (chapters 07, 13 and 14).

Given NumPy arrays, ``model.fit`` (with the TensorFlow backend) builds a ``tf.data`` pipeline that slices batches on
parallel threads and prefetches them, with TensorFlow's autotuner sizing both while training runs. On a machine with
two cores those helper threads and the training step get in each other's way: on the 2-core AMD EPYC where this was
found, a Transformer's training step fed that way was slower than the same compiled step fed batch by batch, with
the cores partly idle (``benchmarks/pretraining_speed.py`` times the ways in back-to-back pairs on your machine).
:func:`batches` hands ``fit`` the same batches, in the same order, from a plain pipeline: no prefetching and no
autotuner; each batch is sliced when ``fit`` asks for it. The callbacks, the history and the loss ``fit`` reports
stay as they were; ``fit``'s own batching arguments (``batch_size``, ``sample_weight``, ``validation_split``) do not
apply to a dataset, and ``fit`` should get ``shuffle=False`` (the batches are already in the order wanted, and Keras
warns otherwise). On many cores or a GPU, prefetching usually pays: this is a choice for small CPUs.
"""

from __future__ import annotations

import numbers

import numpy as np


def _rows(name: str, value) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name} is None: batches needs one row per example in every array it is given")
    if isinstance(value, (dict, tuple)):
        raise TypeError(f"{name} is a {type(value).__name__}: batches takes one array for y and for sample_weight, and "
                        "for x one array or a tuple of arrays in the model's input order; a model with several outputs "
                        "or named inputs needs a tf.data pipeline of its own")
    try:
        array = np.asarray(value)
    except ValueError as error:  # rows of different lengths
        raise ValueError(f"{name} has rows of different lengths ({error}); pad them to one length first, "
                         "as the tokenizers' encode does") from None
    if array.ndim == 0:
        raise ValueError(f"{name} is a single value, not rows: pass an array with one row per example")
    if array.dtype == object:
        kinds = sorted({type(v).__name__ for v in np.ravel(array)}) or ["nothing"]
        raise TypeError(f"{name} holds Python objects ({', '.join(kinds)}), not numbers: pass a NumPy array of "
                        "numbers, for example token ids")
    return array


def batches(x, y, sample_weight=None, *, batch_size: int):
    """The rows of ``x``, ``y`` (and ``sample_weight``) in their order, ``batch_size`` at a time, the last batch
    possibly shorter, as a ``tf.data.Dataset`` for ``model.fit``: the batches ``fit(x, y, batch_size=batch_size,
    shuffle=False)`` would make, without its prefetching and autotuning threads.

    ``x`` is one array or a tuple or list of arrays (a model with several inputs); every array has one row per
    example; a list of rows for one input should be made an array first (``np.asarray``), since a list means one
    array per input. Float arrays become float32 (Keras's default float type), as ``fit`` does with arrays. Shuffle
    before calling, as chapter 13 does, if the order should change from pass to pass.
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

    import keras

    def floats_as_floatx(array):
        return array.astype(keras.config.floatx()) if np.issubdtype(array.dtype, np.floating) else array

    inputs = tuple(map(floats_as_floatx, inputs)) if isinstance(inputs, tuple) else floats_as_floatx(inputs)
    parts = (inputs, floats_as_floatx(targets)) + (() if weights is None else (floats_as_floatx(weights),))
    options = tf.data.Options()
    options.autotune.enabled = False  # no autotuner resizing buffers while the step runs
    options.threading.private_threadpool_size = 1  # a pool of one thread for anything the pipeline runs on its own
    return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size).with_options(options)


def compile_with_xla(model, **compile_args) -> None:
    """``model.compile(**compile_args, jit_compile=True)`` that gets XLA even while op determinism is on.

    Keras 3 (TensorFlow backend) declines ``jit_compile=True`` whenever TensorFlow's op determinism is on
    (``model_supports_jit`` in ``keras/src/trainers/trainer.py``), with the warning "Model doesn't support
    `jit_compile=True`. Proceeding with `jit_compile=False`", because on a GPU some operations have no deterministic
    XLA version. ``setup_notebook`` turns op determinism on, so without this every chapter trains without XLA. On a
    CPU, XLA's training step repeats exactly from the same seed (``tests/test_training.py`` checks it), so here op
    determinism is switched off for the ``compile`` call alone (where Keras makes its choice) and switched back on
    at once; the step is traced and compiled later, by ``fit``, under op determinism.

    On a machine with a GPU, and with a backend other than TensorFlow, this is a plain ``compile`` with
    ``jit_compile=True``: Keras decides, as it would without this function. Raises ``RuntimeError`` when Keras still
    declines XLA on a CPU (a layer that does not support it), so that a chapter never thinks it has XLA when it has not.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"compile_with_xla takes a Keras model, got {type(model).__name__}")
    if "jit_compile" in compile_args:
        raise TypeError("compile_with_xla sets jit_compile=True itself: leave it out of the arguments")
    if keras.backend.backend() != "tensorflow":
        model.compile(**compile_args, jit_compile=True)
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # where Keras itself reads the setting

    if tf.config.list_physical_devices("GPU") or not tf_config.is_op_determinism_enabled():
        model.compile(**compile_args, jit_compile=True)
        return
    tf_config.disable_op_determinism()
    try:
        model.compile(**compile_args, jit_compile=True)
    finally:
        tf_config.enable_op_determinism()
    if not model.jit_compile:
        raise RuntimeError("Keras declined XLA for this model (one of its layers does not support jit_compile): "
                           "compile it with model.compile(..., jit_compile=False) instead")
