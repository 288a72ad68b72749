"""Making models small: LiteRT quantization, magnitude pruning, distillation, size and latency (chapter 10).

- :func:`to_litert` converts a Keras model to a LiteRT (formerly TensorFlow Lite) flatbuffer: float32,
  dynamic-range (int8 weights), full int8 (weights and activations, calibrated on representative data)
  or float16 weights. :class:`LiteRTModel` runs one with the ``ai-edge-litert`` interpreter (the one in
  ``tf.lite`` is deprecated) and handles the int8 input and output scales.
- :func:`magnitude_masks`, :class:`MagnitudePruning` and :func:`sparsity`: pruning written for Keras 3
  (the TensorFlow Model Optimization toolkit supports only legacy ``tf_keras``).
- :class:`Distiller`: a student learns from a teacher's softened probabilities.
- :func:`quantize_int8`: Keras's own ``model.quantize("int8")``, without its expected warnings and its
  garbage collection per layer.
- :func:`latency_ms` and :func:`compressed_size`: the measurements of the chapter's table.

Importing this module imports Keras (its callback and model classes subclass Keras's).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_utils.notebook import quiet_tensorflow, silenced_stderr

quiet_tensorflow()

import keras  # noqa: E402  (after quiet_tensorflow, which silences TensorFlow's start-up log)

LITERT_MODES = ("float32", "dynamic", "int8", "float16")


# --- LiteRT --------------------------------------------------------------------------------------------


def to_litert(model, mode: str = "float32", representative: np.ndarray | None = None,
              calibration_samples: int = 200) -> bytes:
    """Convert a Keras model to LiteRT bytes.

    ``mode``: ``"float32"`` (no quantization), ``"dynamic"`` (weights stored as int8, activations float),
    ``"int8"`` (weights *and* activations int8, integer-only, input and output int8 too: needs
    ``representative`` inputs to calibrate each activation's range) or ``"float16"`` (weights stored as
    float16). The model is exported as a SavedModel first (``model.export``), the route that works
    with Keras 3.
    """
    if mode not in LITERT_MODES:
        raise ValueError(f"mode must be one of {LITERT_MODES}, got {mode!r}")
    if mode == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("full int8 quantization needs representative inputs (a few hundred training "
                             "examples) to calibrate the activation ranges: pass representative=x_train")
        representative = np.asarray(representative, dtype=np.float32)[:calibration_samples]
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            def calibration():
                for example in representative:
                    yield [example[None]]

            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        with silenced_stderr():  # the converter prints its settings unconditionally
            return converter.convert()


class LiteRTModel:
    """A LiteRT flatbuffer ready to run: ``LiteRTModel(bytes_or_path)(x)`` returns float outputs.

    Runs one example at a time, as a phone or microcontroller would; int8 models get their inputs
    quantized (``q = x / scale + zero_point``) and their outputs dequantized with the scales stored in
    the file.
    """

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"no LiteRT model at {path}: convert one with to_litert(model, mode)")
            model = path.read_bytes()
        if not isinstance(model, (bytes, bytearray)) or len(model) < 8:
            raise ValueError("expected the bytes of a LiteRT model (what to_litert returns) or a path to a .tflite file")
        try:
            with silenced_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"not a valid LiteRT model ({error}); was the file truncated or overwritten?") from None
        self.size = len(model)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def predict_one(self, example: np.ndarray) -> np.ndarray:
        """One example (no batch axis) in, one output row out, as float32."""
        x = np.asarray(example, dtype=np.float32)[None]
        expected = tuple(int(d) for d in self._input["shape"][1:])
        if x.shape[1:] != expected:
            raise ValueError(f"expected one example of shape {expected}, got {x.shape[1:]}")
        if self.input_dtype == np.int8:
            scale, zero = self._input["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._output["index"])[0]
        if np.dtype(self._output["dtype"]) == np.int8:
            scale, zero = self._output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """A batch in, a batch of outputs out (run example by example)."""
        return np.stack([self.predict_one(example) for example in np.asarray(x)])


# --- Keras-native quantization -------------------------------------------------------------------------


def fake_quantize(weights: np.ndarray, bits: int, axis: int = -1) -> np.ndarray:
    """``weights`` rounded to ``bits``-bit integers and back (chapter 10's widget): Keras's symmetric scheme with one
    scale per slice along ``axis`` (per output channel for a Keras kernel), ``keras.quantizers.abs_max_quantize``
    with the integer range of ``bits`` bits; at 8 bits, Keras's int8. Fewer bits give coarser steps."""
    w = np.asarray(weights, dtype=np.float32)
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be a whole number from 2 to 8, got {bits!r}")
    if w.ndim < 2:
        raise ValueError(f"weights must be a kernel with at least two axes (one scale per output channel), got shape {w.shape}")
    if not isinstance(axis, (int, np.integer)) or not -w.ndim <= axis < w.ndim:
        raise ValueError(f"axis must name an axis of the {w.ndim}-D weights, got {axis!r}")
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite")
    levels = 2 ** (int(bits) - 1) - 1
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    q, scale = keras.quantizers.abs_max_quantize(w, axis=reduce, value_range=(-levels, levels), to_numpy=True)
    return (np.asarray(q, np.float32) / np.asarray(scale, np.float32)).astype(np.float32)


def quantize_int8(model):
    """``model.quantize("int8")`` in place, quietly and without one full garbage collection per layer (chapter 10).

    Keras stores the kernels of ``Dense``, ``EinsumDense`` and ``Embedding`` layers as int8 with a float scale
    per output channel. Two things around the call are plumbing: the layers that hold nothing to quantize
    (normalisation, dropout, pooling) each warn that they have no ``quantize`` method, expected and silenced
    here; and Keras calls ``gc.collect()`` every time it deletes a float kernel. With TensorFlow loaded a full
    collection walks every Python object the interpreter tracks, hundreds of thousands of them, so quantizing
    chapter 07's mini-BERT (16 kernels and tables) spent seconds collecting on the book's 2-core machine.
    ``gc.freeze()`` hides the objects that existed before the call from those collections; one collection at
    the end, after ``gc.unfreeze()``, frees whatever the replaced kernels left behind. Returns ``model``.
    """
    import gc
    import warnings

    if not isinstance(model, keras.Model):
        raise TypeError(f"quantize_int8 needs a Keras model, got {type(model).__name__}")
    freeze = gc.get_freeze_count() == 0  # if the caller froze objects itself, leave its freeze alone
    if freeze:
        gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
            model.quantize("int8")
    finally:
        if freeze:
            gc.unfreeze()
            gc.collect()
    return model


# --- pruning -----------------------------------------------------------------------------------------------


def prunable_weights(model) -> list:
    """The weights pruning acts on: every kernel (Dense, Conv, ...), not biases or normalisation scales."""
    return [w for w in model.trainable_weights if w.path.endswith("kernel")]


def magnitude_masks(weights: Iterable, sparsity: float) -> list[np.ndarray]:
    """One 0/1 mask per weight tensor that zeroes its ``sparsity`` share of smallest-magnitude entries.

    Layer by layer (each tensor loses the same share), the rule of Zhu & Gupta (2017).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    masks = []
    for w in weights:
        values = np.abs(np.asarray(w))
        k = int(round(sparsity * values.size))
        mask = np.ones(values.shape, dtype=np.float32)
        if k > 0:
            smallest = np.argpartition(values.ravel(), k - 1)[:k]
            mask.ravel()[smallest] = 0.0
        masks.append(mask)
    return masks


def sparsity(model_or_weights) -> float:
    """The share of exact zeros among the prunable weights (a model) or among the given arrays."""
    weights = prunable_weights(model_or_weights) if hasattr(model_or_weights, "trainable_weights") else model_or_weights
    arrays = [np.asarray(w) for w in weights]
    total = sum(a.size for a in arrays)
    if total == 0:
        raise ValueError("no weights to measure")
    return float(sum(int((a == 0).sum()) for a in arrays) / total)


def polynomial_sparsity(step: int, final: float, begin: int, end: int, power: int = 3) -> float:
    """Zhu & Gupta's schedule: 0 before ``begin``, rising fast then slowly to ``final`` at ``end``."""
    if end <= begin:
        raise ValueError(f"end ({end}) must come after begin ({begin})")
    t = min(max(step - begin, 0), end - begin) / (end - begin)
    return float(final * (1 - (1 - t) ** power))


class MagnitudePruning(keras.callbacks.Callback):
    """A Keras callback that prunes while ``fit`` fine-tunes.

    Every ``frequency`` steps between ``begin`` and ``end`` it recomputes the masks for the sparsity of
    :func:`polynomial_sparsity` at that step; after *every* batch it multiplies the kernels by their
    masks, so that weights pruned once stay zero even though the optimizer keeps updating them.
    """

    def __init__(self, final_sparsity: float, end_step: int, begin_step: int = 0, frequency: int = 20):
        super().__init__()
        if not 0.0 < final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be between 0 and 1, got {final_sparsity!r}")
        if frequency < 1:
            raise ValueError(f"frequency must be at least 1, got {frequency!r}")
        self.final, self.begin, self.end, self.frequency = final_sparsity, begin_step, end_step, frequency
        polynomial_sparsity(0, final_sparsity, begin_step, end_step)  # validates begin < end
        self.step, self.masks, self.current = 0, None, 0.0

    def on_train_batch_end(self, batch, logs=None):
        kernels = prunable_weights(self.model)
        due = self.begin <= self.step <= self.end and (self.step - self.begin) % self.frequency == 0
        if self.masks is None or due or self.step == self.end:
            self.current = polynomial_sparsity(self.step, self.final, self.begin, self.end)
            self.masks = magnitude_masks([w.numpy() for w in kernels], self.current)
        for w, mask in zip(kernels, self.masks):
            w.assign(w.numpy() * mask)
        self.step += 1

    def on_train_end(self, logs=None):
        # finish at the final sparsity even if training stopped before end_step
        kernels = prunable_weights(self.model)
        self.masks = magnitude_masks([w.numpy() for w in kernels], self.final if self.step >= self.end else self.current)
        for w, mask in zip(kernels, self.masks):
            w.assign(w.numpy() * mask)


def compressed_size(model) -> int:
    """Bytes of the model's weights (float32) after gzip: what zeros from pruning save on disk or on the wire."""
    raw = b"".join(np.asarray(w, dtype=np.float32).tobytes() for w in model.weights)
    return len(gzip.compress(raw, compresslevel=9, mtime=0))


# --- distillation ----------------------------------------------------------------------------------------


class Distiller(keras.Model):
    """Knowledge distillation (Hinton et al. 2015): train ``student`` on the labels *and* on ``teacher``'s
    probabilities softened by ``temperature``.

    loss = alpha · cross-entropy(labels, student) + (1 - alpha) · T² · KL(teacher_T ‖ student_T), where
    ``p_T = softmax(logits / T)``. The T² keeps the soft term's gradients on the scale of the hard one's.
    Both models must output probabilities (a softmax); their logits are recovered as ``log p`` (equal to
    the logits up to a constant, which softmax ignores). The teacher is frozen.
    """

    def __init__(self, student, teacher, temperature: float = 4.0, alpha: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)

    def call(self, x, training=False):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from keras import ops

        teacher_p = self.teacher(x, training=False)
        t = self.temperature
        eps = 1e-7
        soft_teacher = ops.softmax(ops.log(teacher_p + eps) / t, axis=-1)
        log_soft_student = ops.log_softmax(ops.log(y_pred + eps) / t, axis=-1)
        kl = ops.sum(soft_teacher * (ops.log(soft_teacher + eps) - log_soft_student), axis=-1)
        hard = keras.losses.sparse_categorical_crossentropy(y, y_pred)
        return ops.mean(self.alpha * hard + (1 - self.alpha) * t**2 * kl)


# --- measuring -----------------------------------------------------------------------------------------


def latency_ms(predict: Callable[[np.ndarray], Any], examples: np.ndarray, repeats: int = 200, warmup: int = 10) -> float:
    """Median wall time of ``predict`` on one example (batch of 1), in milliseconds.

    The median over ``repeats`` calls, after ``warmup`` untimed calls that pay one-off costs (tracing,
    allocation); examples are taken in turn so that no cache sees the same input twice in a row.
    """
    examples = np.asarray(examples)
    if len(examples) == 0:
        raise ValueError("latency_ms needs at least one example")
    for i in range(warmup):
        predict(examples[i % len(examples)][None])
    times = []
    for i in range(repeats):
        x = examples[i % len(examples)][None]
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
