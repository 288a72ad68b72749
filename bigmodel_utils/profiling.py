"""Where a training step's time goes: its matrix products, each timed alone (chapter 13's MFU section).

Model FLOPs utilisation counts only the FLOPs of matrix products. When it is low, there are two suspects: the
products themselves run slowly (too small or too narrow to keep the vector units busy), or the step spends its time
elsewhere (softmax, layer norms, activations, the framework's own work). :func:`matrix_products` lists every product
that XLA compiles into a step, and :func:`step_and_products` times the step and each of its products alone, as a
plain product of the same size, in alternating rounds: if the products run fast alone but take a small share of
the step, the time goes elsewhere. ``benchmarks/pretraining_speed.py`` uses the same functions.

A shared machine's speed can change by tens of per cent from one stretch of seconds to the next, so the step and its
products are timed in the same rounds, and the share is the median of the rounds' shares.
"""

from __future__ import annotations

import math
import re
import statistics
import time

from bigmodel_utils import scale

_HLO_BATCH = re.compile(r"lhs_batch_dims=\{([\d,]*)\}")


def _tf():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return tf


def matrix_products(function, *args) -> list[tuple[int, int, int, int]]:
    """Every matrix product (HLO ``dot``) of ``function(*args)`` compiled by XLA, as ``(batch, m, k, n)``: a batch of
    ``(m x k) @ (k x n)`` products with the same FLOPs, ``2·batch·m·k·n``. Their sum equals
    :func:`bigmodel_utils.scale.xla_flops` of the same call (checked here)."""
    tf = _tf()
    hlo = tf.function(function, jit_compile=True).experimental_get_compiler_ir(*args)(stage="hlo")
    products = []
    for line in hlo.splitlines():
        if " dot(" not in line:
            continue
        shapes, contract = scale._HLO_DOT.search(line), scale._HLO_CONTRACT.search(line)
        if shapes is None or contract is None:
            raise ValueError(f"cannot read this HLO dot instruction: {line.strip()[:200]}")
        batch_dims = _HLO_BATCH.search(line)
        out = [int(d) for d in shapes.group(1).split(",") if d]
        lhs = [int(d) for d in shapes.group(2).split(",") if d]
        b = math.prod(lhs[int(i)] for i in batch_dims.group(1).split(",") if i) if batch_dims else 1
        k = math.prod(lhs[int(i)] for i in contract.group(1).split(",") if i)
        m = math.prod(lhs) // (b * k)
        products.append((b, m, k, math.prod(out) // (b * m)))
    counted, expected = sum(2.0 * math.prod(p) for p in products), scale.hlo_dot_flops(hlo)
    if counted != expected:
        raise RuntimeError(f"read the products as {counted:.6g} FLOPs but scale.hlo_dot_flops counts {expected:.6g}")
    return products


def _timer(compiled, *args):
    """A function ``repeats -> seconds`` for one call of ``compiled(*args)`` on the CPU, the best of three timings of
    ``repeats`` calls each; it calls once first (a warm-up that compiles)."""

    def call():
        compiled(*args)  # on a CPU, TensorFlow returns when the call has finished: nothing to wait for, or to copy

    call()

    def seconds(repeats: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                call()
            best = min(best, (time.perf_counter() - start) / repeats)
        return best

    return seconds


def _product_timer(b: int, m: int, k: int, n: int):
    for name, v in {"b": b, "m": m, "k": k, "n": n}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    tf = _tf()
    product = tf.function(lambda x, y: tf.linalg.matmul(x, y), jit_compile=True)
    return _timer(product, tf.random.normal((b, m, k)), tf.random.normal((b, k, n)))


def _check_repeats(repeats):
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")


def product_seconds(b: int, m: int, k: int, n: int, repeats: int = 20) -> float:
    """Time of one float32 product of ``b`` pairs of ``(m x k)`` and ``(k x n)`` matrices, compiled by XLA: the best of
    three timings of ``repeats`` products each, after a warm-up that compiles it."""
    _check_repeats(repeats)
    return _product_timer(b, m, k, n)(repeats)


def step_and_products(function, *args, rounds: int = 3, repeats: int = 10) -> dict:
    """Time ``function(*args)`` compiled by XLA (the step) and each of its matrix products alone, in ``rounds``
    alternating rounds. Returns the number of products, their FLOPs, the step's and the products' seconds (medians
    over the rounds) and ``share``: the median over the rounds of products' seconds / step's seconds."""
    _check_repeats(repeats)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    tf = _tf()
    products = matrix_products(function, *args)
    step = _timer(tf.function(function, jit_compile=True), *args)
    timers = [_product_timer(*p) for p in products]
    steps, alone = [], []
    for _ in range(rounds):
        steps.append(step(repeats))
        alone.append(sum(t(repeats) for t in timers))
    return {"products": len(products), "flops": sum(2.0 * math.prod(p) for p in products),
            "step_seconds": statistics.median(steps), "products_seconds": statistics.median(alone),
            "share": statistics.median(a / s for a, s in zip(alone, steps))}
