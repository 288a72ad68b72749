"""Checkers of chapter 05's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import on_cpu, quiet_keras, returned


@exercise("05.1", hint='Along 28 pixels, how many positions can a window 3 pixels wide take? Each filter has one weight per kernel pixel and input channel, plus a bias.')
def _ex_05_1(answer: Any) -> None:
    from bigmodel_utils.scale import conv2d_params

    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("answer with a pair: ((height, width, channels), number of parameters).")
    shape, n = answer
    if tuple(shape) != (26, 26, 16):
        raise Wrong(f"{tuple(shape)} is not the output shape.")
    if n != conv2d_params(3, 1, 16):
        raise Wrong(f"{n} is not the parameter count.")


@exercise("05.2", hint="Pooling reads non-overlapping 2 x 2 blocks: a reshape can put each block's four values on axes of their own.", takes_function=True)
def _ex_05_2(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for shape in [(4, 6), (7, 5), (2, 2)]:
        image = rng.normal(size=shape).astype(np.float32)
        got = np.asarray(returned(answer(image), "avg_pool_2x2"), dtype=np.float32)
        h, w = shape[0] // 2 * 2, shape[1] // 2 * 2
        expected = image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        if got.shape != expected.shape:
            raise Wrong(f"for a {shape} image the result should have shape {expected.shape}, got {got.shape}.")
        if not np.allclose(got, expected, atol=1e-5):
            raise Wrong(f"the values are wrong for a {shape} image.")


@exercise("05.3", hint="Pad the height and width first, so that a valid convolution of the padded images keeps the size; "
                       "each output value then sums over a kernel window and over every input channel. How much padding "
                       "does a kernel of size k need on each side?", takes_function=True)
def _ex_05_3(answer: Any) -> None:
    keras = quiet_keras()

    rng = np.random.default_rng()  # fresh inputs on every check
    cases = [(1, 5, 5, 1, 1, 3), (2, 6, 7, 3, 4, 3), (1, 8, 6, 2, 3, 5), (2, 4, 4, 3, 2, 1)]
    for n, h, w, c_in, c_out, k in cases:
        images = rng.normal(size=(n, h, w, c_in)).astype("float32")
        kernel = rng.normal(size=(k, k, c_in, c_out)).astype("float32")
        bias = rng.normal(size=c_out).astype("float32")
        layer = keras.layers.Conv2D(c_out, k, padding="same")
        layer.build(images.shape)
        layer.set_weights([kernel, bias])
        with on_cpu():
            expected = keras.ops.convert_to_numpy(layer(images))
        got = np.asarray(returned(answer(images.copy(), kernel.copy(), bias.copy()), "conv2d_same"), dtype="float32")
        case = f"for images {images.shape} and a kernel {kernel.shape}"
        if got.shape != expected.shape:
            raise Wrong(f"{case} Conv2D(padding='same') gives shape {expected.shape}, you gave {got.shape}"
                        f"{': pad before you slide the kernel' if got.shape[1:3] == (h - k + 1, w - k + 1) else ''}.")
        if np.allclose(got, expected, atol=1e-4):
            continue
        if np.allclose(got, expected - bias, atol=1e-4):
            raise Wrong(f"{case} the bias is missing: add it to every output position.")
        layer.set_weights([kernel[::-1, ::-1], bias])
        with on_cpu():
            flipped = keras.ops.convert_to_numpy(layer(images))
        if k > 1 and np.allclose(got, flipped, atol=1e-4):
            raise Wrong(f"{case} you flipped the kernel (the convolution of mathematics); Keras, like every deep "
                        "learning library, slides the kernel unflipped (cross-correlation).")
        raise Wrong(f"{case} your values differ from Conv2D(padding='same') (largest difference "
                    f"{float(np.abs(got - expected).max()):.3g}).")
