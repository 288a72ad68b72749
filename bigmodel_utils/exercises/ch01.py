"""Checkers of chapter 01's exercises."""

from __future__ import annotations

from typing import Any

import numpy as np

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import close, returned


@exercise("01.1", hint='An LSTM has three gates and a candidate, each a block of weights that reads the input and the previous state, and has a bias.')
def _ex_01_1(answer: Any) -> None:
    from bigmodel_utils.scale import lstm_params

    if int(answer) != answer:
        raise Wrong("a parameter count is a whole number.")
    if int(answer) != lstm_params(32, 16):
        raise Wrong(f"{int(answer):,} is not the count; an LSTM has three gates and a candidate: did you forget a block, the recurrent weights or the bias?")


@exercise("01.2", hint='What does Adam training keep in float32 for every parameter? Four things; then convert bytes to GiB, a power of two.')
def _ex_01_2(answer: Any) -> None:
    from bigmodel_utils.scale import adam_training_bytes

    close(answer, adam_training_bytes(7e9) / 2**30, 0.01, "the training state in GiB")


@exercise("01.3", hint='The compute part of the chapter gives the rule of thumb that turns parameters and training tokens into training compute.')
def _ex_01_3(answer: Any) -> None:
    from bigmodel_utils.scale import training_flops

    close(answer, training_flops(1e9, 20e9), 0.01, "the training compute in FLOP")


@exercise("01.4", hint="Start from the training compute of the chapter's rule of thumb; the devices deliver their peak "
                       "speed times the utilisation, every second; a day has 86,400 of them.", takes_function=True)
def _ex_01_4(answer: Any) -> None:
    from bigmodel_utils.scale import training_flops

    rng = np.random.default_rng()  # fresh inputs on every check
    cases = [(7e9, 2e12, 1024, 312e12, 0.4), (1e9, 20e9, 8, 100e12, 0.5)]
    cases += [(float(10 ** rng.uniform(8, 11)), float(10 ** rng.uniform(10, 13)), int(rng.integers(1, 4096)),
               float(10 ** rng.uniform(12, 15)), float(rng.uniform(0.1, 0.6))) for _ in range(3)]
    for n_params, n_tokens, devices, flops, mfu in cases:
        got = returned(answer(n_params, n_tokens, devices, flops, mfu), "training_days")
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            raise Wrong(f"return a number of days, not {got!r}.")
        seconds = training_flops(n_params, n_tokens) / (devices * flops * mfu)
        expected = seconds / 86400
        if np.isclose(got, expected, rtol=1e-6):
            continue
        case = f"for N={n_params:.3g}, D={n_tokens:.3g}, {devices} devices of {flops:.3g} FLOP/s at {mfu:.0%}"
        if np.isclose(got, seconds, rtol=1e-6):
            raise Wrong(f"{case} that is the time in seconds: convert to days.")
        if np.isclose(got, expected * mfu, rtol=1e-6):
            raise Wrong(f"{case} that is the time at full peak speed: the devices reach only the utilisation's share of it.")
        if np.isclose(got, expected / 3, rtol=1e-6):
            raise Wrong(f"{case} that counts the forward pass only (2ND): training also runs the backward pass.")
        raise Wrong(f"{case} expected {expected:.4g} days, got {got!r}.")
