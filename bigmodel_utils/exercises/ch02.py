"""Checkers of chapter 02's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import close, quiet_keras, returned


@exercise("02.1", hint='Differentiate 1 / (1 + e^-z) and write the result in terms of the sigmoid itself, so that you compute it only once.', takes_function=True)
def _ex_02_1(answer: Any) -> None:
    from bigmodel_utils.scratch import sigmoid

    z = np.linspace(-30, 30, 121)
    got = np.asarray(returned(answer(z), "sigmoid_grad(z)"), dtype=float)
    if got.shape != z.shape:
        raise Wrong(f"sigmoid_grad(z) should have z's shape {z.shape}, got {got.shape}.")
    s = sigmoid(z)
    if not np.allclose(got, s * (1 - s), atol=1e-9):
        worst = float(z[np.argmax(np.abs(got - s * (1 - s)))])
        raise Wrong(f"your derivative is wrong, for example at z = {worst:g}.")


@exercise("02.2", hint="The learning-rate section ties the largest stable learning rate to the curvature of the loss: the Hessian's largest eigenvalue.")
def _ex_02_2(answer: Any) -> None:
    from bigmodel_utils.scratch import line_data, line_hessian

    x, _ = line_data(n=50, seed=7)  # other data than the chapter's, whose limit the chapter prints
    close(answer, 2 / np.linalg.eigvalsh(line_hessian(x)).max(), 0.01, "the stability limit")


@exercise("02.3", hint="The loss averages over every entry, so each entry's gradient carries the same averaging factor; differentiate one squared error.", takes_function=True)
def _ex_02_3(answer: Any) -> None:
    rng = np.random.default_rng()  # fresh inputs on every check
    for shape in [(5,), (4, 3), (2, 3, 2)]:
        y_pred, y_true = rng.normal(size=shape), rng.normal(size=shape)
        got = np.asarray(returned(answer(y_pred, y_true), "mse_grad"), dtype=float)
        if got.shape != shape:
            raise Wrong(f"for inputs of shape {shape} the gradient has that shape too, got {got.shape}.")
        if not np.allclose(got, 2 * (y_pred - y_true) / y_pred.size, atol=1e-9):
            raise Wrong(f"the gradient is wrong for inputs of shape {shape} (did you divide by the number of entries?).")


@exercise("02.4", hint="The chapter's table of optimizers gives the momentum rule, the velocity first and then the weight. "
                       "What does the velocity keep from the previous step, and what does each step add to it?", takes_function=True)
def _ex_02_4(answer: Any) -> None:
    keras = quiet_keras()

    rng = np.random.default_rng()  # fresh inputs on every check
    for lr, momentum in [(0.05, 0.9), (float(rng.uniform(0.005, 0.05)), float(rng.uniform(0.3, 0.95))), (0.1, 0.0)]:
        a = rng.normal(size=(8, 3)).astype("float32")
        b = rng.normal(size=8).astype("float32")
        w0 = rng.normal(size=3).astype("float32")
        var = keras.Variable(w0.copy())
        optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
        w, velocity = w0.copy(), np.zeros_like(w0)
        for step in range(1, 8):
            grad = a.T @ (a @ w - b) / len(b)  # the gradient of half the mean squared error, at your weights
            out = returned(answer(w.copy(), grad, velocity.copy(), lr, momentum), "momentum_step")
            if not isinstance(out, tuple) or len(out) != 2:
                raise Wrong("return a pair (new weights, new velocity).")
            w, velocity = (np.asarray(v, dtype="float32") for v in out)
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(a.T @ (a @ var.numpy() - b) / len(b)), var)])
            if w.shape != w0.shape or velocity.shape != w0.shape:
                raise Wrong(f"the weights and the velocity keep the weights' shape {w0.shape}.")
            if np.allclose(w, var.numpy(), rtol=1e-4, atol=1e-6):
                continue
            if step > 1 and momentum > 0 and np.allclose(w, _plain_sgd(w0, a, b, lr, step), rtol=1e-4, atol=1e-6):
                raise Wrong("your weights move like plain SGD: the velocity must carry over from step to step.")
            if step == 1 and np.allclose(w, w0 + lr * grad, rtol=1e-4, atol=1e-6):
                raise Wrong("the first step went uphill: move against the gradient.")
            raise Wrong(f"with learning rate {lr:.3g} and momentum {momentum:.2f} your weights differ from "
                        f"keras.optimizers.SGD's at step {step}.")


def _plain_sgd(w, a, b, lr, steps):
    """``steps`` steps of gradient descent without momentum on half the mean squared error of ``a @ w - b``."""
    for _ in range(steps):
        w = w - lr * a.T @ (a @ w - b) / len(b)
    return w
