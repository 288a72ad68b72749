"""Learning from scratch in NumPy (chapter 02): activations, losses, a two-layer network with
hand-written back-propagation, numerical gradients and the classic optimizers.

Everything here is plain NumPy so that each line can be read against its formula in chapter 02, and
checked there against central differences, ``tf.GradientTape`` and Keras's own optimizers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Params = dict[str, np.ndarray]

# --- activations ------------------------------------------------------------------------------------


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def relu_grad(z: np.ndarray) -> np.ndarray:
    """dReLU/dz: 1 where z > 0, else 0 (the kink at 0 gets 0, as in TensorFlow)."""
    return (z > 0).astype(z.dtype)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), computed without overflow for large |z|."""
    out = np.empty_like(z, dtype=np.result_type(z, np.float32))
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z) / sum(exp(z)), with the maximum subtracted first so exp never overflows."""
    z = np.asarray(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


# --- losses --------------------------------------------------------------------------------------------


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: predictions have shape {a.shape} but targets have shape {b.shape}")


def mse(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    """Mean squared error: mean over all entries of (y_pred - y_true)^2."""
    y_pred, y_true = np.asarray(y_pred, dtype=float), np.asarray(y_true, dtype=float)
    _same_shape(y_pred, y_true, "mse")
    return float(np.mean((y_pred - y_true) ** 2))


def binary_cross_entropy(p: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> float:
    """-mean(y log p + (1 - y) log(1 - p)) for probabilities p and 0/1 targets y."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    _same_shape(p, y, "binary_cross_entropy")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("binary_cross_entropy: targets must be 0 or 1")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def categorical_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log softmax(logits)[label]; ``labels`` are integer classes (sparse) or one-hot rows."""
    logits, labels = np.asarray(logits, dtype=float), np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {logits.shape}")
    if labels.ndim == 2:
        _same_shape(logits, labels, "categorical_cross_entropy")
        return float(-np.mean(np.sum(labels * log_softmax(logits), axis=1)))
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"integer labels must have shape ({logits.shape[0]},), got {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}")
    return float(-np.mean(log_softmax(logits)[np.arange(len(labels)), labels]))


# --- a two-layer network, forward and backward ------------------------------------------------------------


def init_mlp(n_in: int, n_hidden: int, n_out: int, seed: int = 0, dtype=np.float64) -> Params:
    """He-initialised weights (std sqrt(2 / fan_in), suited to ReLU) and zero biases."""
    for name, v in {"n_in": n_in, "n_hidden": n_hidden, "n_out": n_out}.items():
        if not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    rng = np.random.default_rng(seed)
    return {
        "W1": (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(dtype),
        "b1": np.zeros(n_hidden, dtype=dtype),
        "W2": (rng.standard_normal((n_hidden, n_out)) * np.sqrt(2.0 / n_hidden)).astype(dtype),
        "b2": np.zeros(n_out, dtype=dtype),
    }


def _check_input(params: Params, X: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[1] != params["W1"].shape[0]:
        raise ValueError(f"X must have shape (batch, {params['W1'].shape[0]}), got {X.shape}")


def mlp_forward(params: Params, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """logits = relu(X W1 + b1) W2 + b2; returns the logits and the cache back-propagation needs."""
    _check_input(params, X)
    Z1 = X @ params["W1"] + params["b1"]
    H = relu(Z1)
    logits = H @ params["W2"] + params["b2"]
    return logits, {"X": X, "Z1": Z1, "H": H}


def mlp_loss(params: Params, X: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of the network on (X, y)."""
    logits, _ = mlp_forward(params, X)
    return categorical_cross_entropy(logits, y)


def mlp_backward(params: Params, X: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Loss and gradients of the mean softmax cross-entropy with respect to every parameter.

    With P = softmax(logits) and Y one-hot, for a batch of n examples:

    - dL/dlogits = (P - Y) / n                         (softmax and cross-entropy together)
    - dL/dW2 = H^T dlogits,  dL/db2 = sum over the batch of dlogits
    - dL/dH = dlogits W2^T,  dL/dZ1 = dL/dH * relu'(Z1)
    - dL/dW1 = X^T dZ1,      dL/db1 = sum over the batch of dZ1

    A bias gradient is the upstream gradient summed over the batch: no input, no output factor.
    """
    logits, cache = mlp_forward(params, X)
    n = X.shape[0]
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must be integer labels of shape ({n},), got {y.shape}")
    P = softmax(logits)
    loss = categorical_cross_entropy(logits, y)
    d_logits = P.copy()
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    grads = {
        "W2": cache["H"].T @ d_logits,
        "b2": d_logits.sum(axis=0),
    }
    d_H = d_logits @ params["W2"].T
    d_Z1 = d_H * relu_grad(cache["Z1"])
    grads["W1"] = X.T @ d_Z1
    grads["b1"] = d_Z1.sum(axis=0)
    return loss, grads


# --- numerical gradients -----------------------------------------------------------------------------------


def numerical_gradient(f: Callable[[], float], params: Params, eps: float = 1e-6) -> Params:
    """Central differences (f(w + eps) - f(w - eps)) / 2 eps for every entry of every parameter.

    ``f`` takes no arguments and reads ``params``, which are perturbed in place and restored. Use
    float64: in float32 the rounding error of f swamps the difference.
    """
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    grads: Params = {}
    for name, w in params.items():
        g = np.zeros_like(w, dtype=np.float64)
        it = np.nditer(w, flags=["multi_index"])
        for _ in it:
            i = it.multi_index
            old = w[i]
            w[i] = old + eps
            up = f()
            w[i] = old - eps
            down = f()
            w[i] = old
            g[i] = (up - down) / (2 * eps)
        grads[name] = g
    return grads


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """||a - b|| / (||a|| + ||b||), the usual gradient-check measure: scale-free, so 1e-8 means the
    two agree to about 8 digits. (An entry-by-entry ratio would be dominated by entries that are almost
    zero, where central differences cannot resolve more than a few digits.)"""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    _same_shape(a, b, "relative_error")
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), floor))


# --- optimizers -----------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place from ``grads``."""

    def __init__(self, learning_rate: float):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.learning_rate = learning_rate

    def step(self, params: Params, grads: Params) -> None:
        missing = set(params) ^ set(grads)
        if missing:
            raise KeyError(f"params and grads name different arrays: {sorted(missing)}")
        for name in params:
            if params[name].shape != grads[name].shape:
                raise ValueError(f"{name}: parameter shape {params[name].shape} but gradient shape {grads[name].shape}")
            params[name] -= self._update(name, grads[name])

    def _update(self, name: str, g: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class GradientDescent(Optimizer):
    """w <- w - lr * g. With the full data set's gradient this is gradient descent; with a
    mini-batch's, stochastic gradient descent (SGD)."""

    def _update(self, name, g):
        return self.learning_rate * g


class Momentum(Optimizer):
    """v <- mu v - lr g;  w <- w + v  (the form Keras's ``SGD(momentum=mu)`` uses)."""

    def __init__(self, learning_rate: float, momentum: float = 0.9):
        super().__init__(learning_rate)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.velocity: Params = {}

    def _update(self, name, g):
        v = self.momentum * self.velocity.get(name, np.zeros_like(g)) - self.learning_rate * g
        self.velocity[name] = v
        return -v


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): moving averages of the gradient (m) and its square (v), with bias
    correction, in the form Keras uses: w <- w - lr_t m / (sqrt(v) + eps) with
    lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)."""

    def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7):
        super().__init__(learning_rate)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {beta1}, {beta2}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m: Params = {}
        self.v: Params = {}
        self.t: dict[str, int] = {}

    def _update(self, name, g):
        t = self.t.get(name, 0) + 1
        self.t[name] = t
        m = self.beta1 * self.m.get(name, np.zeros_like(g)) + (1 - self.beta1) * g
        v = self.beta2 * self.v.get(name, np.zeros_like(g)) + (1 - self.beta2) * g * g
        self.m[name], self.v[name] = m, v
        lr_t = self.learning_rate * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        return lr_t * m / (np.sqrt(v) + self.eps)


# --- a two-parameter problem to watch optimizers on ---------------------------------------------------------


def line_data(n: int = 200, seed: int = 0, slope: float = 3.0, intercept: float = 2.0, noise: float = 0.5):
    """Points (x, y) near the line y = slope * x + intercept, with x in [1, 3] (chapter 02).

    Because x is not centred, the MSE surface over (slope, intercept) is a long, narrow valley: a good
    stage on which plain gradient descent struggles and momentum and Adam show what they are for.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer of at least 2, got {n!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 3.0, size=n)
    y = slope * x + intercept + noise * rng.standard_normal(n)
    return x, y


def line_loss_and_grad(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """MSE of the line theta = (slope, intercept) on (x, y), and its gradient with respect to theta."""
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (2,):
        raise ValueError(f"theta must be (slope, intercept), got shape {theta.shape}")
    r = theta[0] * x + theta[1] - y
    return float(np.mean(r**2)), np.array([2 * np.mean(r * x), 2 * np.mean(r)])


def optimizer_path(optimizer: Optimizer, loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
                   start: np.ndarray, steps: int) -> np.ndarray:
    """The points an optimizer visits from ``start`` in ``steps`` full-batch steps: shape ``(steps + 1, n)``.

    ``loss_and_grad(theta)`` returns the loss and its gradient, as :func:`line_loss_and_grad` does once its data
    are bound (chapter 02's widget). A path that leaves the floats (divergence) stops at the first non-finite point.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    params = {"theta": np.array(start, dtype=float)}
    path = [params["theta"].copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            _, g = loss_and_grad(params["theta"])
            optimizer.step(params, {"theta": g})
            path.append(params["theta"].copy())
            if not np.all(np.isfinite(path[-1])):
                break
    return np.array(path)


def line_hessian(x: np.ndarray) -> np.ndarray:
    """The (constant) Hessian of the line MSE: (2/n) [[sum x^2, sum x], [sum x, n]]."""
    x = np.asarray(x, dtype=float)
    return 2.0 / len(x) * np.array([[np.sum(x * x), np.sum(x)], [np.sum(x), len(x)]])
