"""Dense and convolutional classifiers, and the input check every image model needs (chapters 04-05).

Keras is imported inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def first_bad_pixel(images, value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[int, ...] | None:
    """The index of the first pixel that is NaN, infinite or outside ``value_range``; ``None`` when every one is fine.

    The book's one rule for pixel values: :func:`prepare_images` (chapter 05) and the service's
    ``serving.validate_images`` (chapter 11) both apply it, each wording the answer for its caller.
    """
    images = np.asarray(images)
    lo, hi = value_range
    fine = np.isfinite(images) & (images >= lo) & (images <= hi)
    if fine.all():
        return None
    return tuple(int(k) for k in np.unravel_index(np.argmin(fine), fine.shape))  # argmin: the first False


def prepare_images(x, image_shape: tuple[int, int] = (8, 8), value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Check a batch of grey images and return it as float32 ``(n, height, width, 1)``.

    Accepts one image ``(h, w)``, a batch ``(n, h, w)`` or ``(n, h, w, 1)``, as a NumPy array or nested
    lists. Raises ``ValueError`` with a message saying what to send when the shape is wrong, a value is
    NaN or infinite, or a value lies outside ``value_range`` (naming the first such pixel, found by
    :func:`first_bad_pixel`); ``TypeError`` for non-numeric input. (The service of chapter 11 validates JSON
    requests with ``serving.validate_images``, which applies the same pixel rule.)
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except OverflowError:
        raise ValueError("a pixel value is an integer too large for a float: pixel values lie in "
                         f"[{value_range[0]}, {value_range[1]}] (scale them first)") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"images must be numbers in nested lists or an array, not {type(x).__name__}: {exc}") from None
    h, w = image_shape
    if arr.shape == (h, w):
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != (h, w) or arr.shape[0] == 0:
        raise ValueError(
            f"expected grey images of {h}x{w} pixels: shape ({h}, {w}), (n, {h}, {w}) or (n, {h}, {w}, 1); got shape {arr.shape}"
        )
    bad = first_bad_pixel(arr, value_range)
    if bad is not None:
        i, r, c = bad
        where = f"image {i}, pixel ({r}, {c}) = {arr[bad]:g}"
        if not np.isfinite(arr[bad]):
            raise ValueError(f"images contain NaN or infinite values (the first: {where})")
        lo, hi = value_range
        finite = arr[np.isfinite(arr)]
        raise ValueError(f"pixel values must lie in [{lo}, {hi}] (scale them first); got values in "
                         f"[{finite.min():g}, {finite.max():g}] (the first outside: {where})")
    return arr.astype(np.float32)[..., None]


def parse_kernel(text: str, size: int = 3) -> np.ndarray:
    """A ``size`` × ``size`` convolution kernel from text: rows separated by ``;`` or new lines, numbers by spaces or
    commas, e.g. ``"-1 0 1; -2 0 2; -1 0 1"`` (chapter 05's kernel editor). Fractions such as ``1/9`` are allowed."""
    if not isinstance(text, str):
        raise TypeError(f"a kernel is written as text such as '0 -1 0; -1 5 -1; 0 -1 0', got {type(text).__name__}")
    rows = [r for r in text.replace("\n", ";").split(";") if r.strip()]
    values = []
    for r, row in enumerate(rows, 1):
        cells = row.replace(",", " ").split()
        if len(cells) != size:
            raise ValueError(f"row {r} of the kernel has {len(cells)} numbers, a {size} x {size} kernel needs {size} "
                             f"(write rows as 'a b c; d e f; g h i')")
        for cell in cells:
            num, _, den = cell.partition("/")
            try:
                value = float(num) / float(den) if den else float(num)
            except (ValueError, ZeroDivisionError):
                raise ValueError(f"{cell!r} in row {r} is not a number (write e.g. 0.5, -2 or 1/9)") from None
            with np.errstate(over="ignore"):  # the message below says it; no NumPy warning beside it
                finite = np.isfinite(np.float32(value))  # 3.4028235e38 rounds to float32's largest number: allowed
            if not finite:
                raise ValueError(f"{cell!r} in row {r} is not a finite float32 number (at most about 3.4e38)")
            values.append(value)
    if len(rows) != size:
        raise ValueError(f"the kernel has {len(rows)} rows, a {size} x {size} kernel needs {size} "
                         f"(separate rows with ';')")
    return np.array(values, dtype=np.float32).reshape(size, size)


def build_mlp(
    input_shape: Sequence[int],
    n_outputs: int,
    hidden: Sequence[int] = (128, 64),
    dropout: float = 0.0,
    l2: float = 0.0,
    name: str = "mlp",
):
    """A multilayer perceptron (chapter 04): ``Flatten`` (for images), ReLU ``Dense`` layers, an output layer.

    ``n_outputs == 1`` gives one sigmoid unit (binary classification, use binary cross-entropy);
    ``n_outputs > 1`` gives a softmax over the classes (use sparse categorical cross-entropy).
    ``dropout`` is applied after each hidden layer; ``l2`` penalises every hidden and output kernel.
    """
    import keras

    if not input_shape or any(int(d) <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive dimensions, got {input_shape!r}")
    if not isinstance(n_outputs, int) or n_outputs < 1:
        raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    if any(int(u) <= 0 for u in hidden):
        raise ValueError(f"hidden layer sizes must be positive, got {hidden!r}")
    if not 0.0 <= dropout < 1.0 or l2 < 0:
        raise ValueError(f"dropout must be in [0, 1) and l2 non-negative, got {dropout}, {l2}")
    reg = keras.regularizers.L2(l2) if l2 else None
    layers = [keras.Input(tuple(input_shape))]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    for units in hidden:
        layers.append(keras.layers.Dense(int(units), activation="relu", kernel_regularizer=reg))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    activation = "sigmoid" if n_outputs == 1 else "softmax"
    layers.append(keras.layers.Dense(n_outputs, activation=activation, kernel_regularizer=reg))
    return keras.Sequential(layers, name=name)


def build_digits_cnn(
    input_shape: tuple[int, int, int] = (8, 8, 1),
    n_classes: int = 10,
    filters: tuple[int, int] = (32, 64),
    dense: int = 128,
    dropout: float = 0.4,
    augment: bool = False,
    name: str = "digits_cnn",
):
    """The book's convolutional network for digit images (chapter 05; served in chapter 11).

    Conv(3x3, same) -> MaxPool -> Conv(3x3, same) -> MaxPool -> Flatten -> Dense -> Dropout -> softmax.
    With ``augment=True`` it starts with random rotations, shifts and zooms, which are active only in
    training (``model(x, training=True)`` or ``fit``) and pass images through unchanged at inference.
    """
    import keras

    if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")
    if input_shape[0] < 4 or input_shape[1] < 4:
        raise ValueError(f"images must be at least 4x4 for two 2x2 poolings, got {input_shape[:2]}")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer of at least 2, got {n_classes!r}")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if augment:
        x = keras.layers.RandomRotation(0.05, fill_mode="constant", name="rotate")(x)
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", name="shift")(x)
        x = keras.layers.RandomZoom(0.1, fill_mode="constant", name="zoom")(x)
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 output even under a mixed-precision policy (chapter 09): softmax and loss stay accurate
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
