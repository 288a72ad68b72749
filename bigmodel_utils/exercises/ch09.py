"""Checkers of chapter 09's exercises."""

from __future__ import annotations

from typing import Any

from bigmodel_utils.exercises import Wrong, exercise
from bigmodel_utils.exercises._checks import quiet_keras, returned


@exercise("09.1", hint='Chapter 01 gives the bytes per parameter of mixed-precision Adam training; a device cannot hold a fraction of a model.')
def _ex_09_1(answer: Any) -> None:
    import math

    from bigmodel_utils.scale import adam_training_bytes

    expected = math.ceil(adam_training_bytes(70e9, mixed_precision=True) / (80 * 2**30))
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or float(answer) != int(answer):
        raise Wrong(f"answer with a whole number of devices, not {answer!r}.")
    if int(answer) != expected:
        advice = "a device cannot hold a fraction of what it lacks: round up" if answer < expected else \
            "count 16 bytes a parameter, not more"
        raise Wrong(f"{int(answer)} devices is {'too many' if answer > expected else 'too few'}: {advice}.")


@exercise("09.2", hint='Two phases: a straight line up to the peak during warm-up, then half a cosine down to zero; what should the rate be past the last step?', takes_function=True)
def _ex_09_2(answer: Any) -> None:
    keras = quiet_keras()

    for peak, warmup, total in [(1e-3, 10, 100), (0.5, 3, 7), (2e-4, 100, 1000)]:
        schedule = keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=peak, warmup_steps=warmup)
        for step in sorted({0, 1, warmup // 2, warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 5}):
            got = float(returned(answer(step, peak, warmup, total), "warmup_cosine"))
            expected = float(schedule(step))
            if not abs(got - expected) <= 1e-6 * peak + 1e-12:
                phase = "warm-up" if step <= warmup else "decay"
                raise Wrong(f"at step {step} (peak {peak}, warm-up {warmup}, total {total}, {phase}) you gave "
                            f"{got:.6g}, expected {expected:.6g}.")


@exercise("09.3", hint='The global batch is made of replicas x micro-batch x steps examples. What if that cannot come out exact?', takes_function=True)
def _ex_09_3(answer: Any) -> None:
    for args, expected in [((256, 32, 2), 4), ((64, 64, 1), 1), ((1024, 16, 8), 8), ((96, 8, 3), 4)]:
        got = returned(answer(*args), "accumulation_steps")
        if got != expected:
            raise Wrong(f"accumulation_steps{args} gave {got!r}, expected {expected}.")
    for args in [(100, 32, 2), (64, 128, 1), (48, 8, 4)]:
        try:
            got = answer(*args)
        except ValueError:
            continue
        raise Wrong(f"accumulation_steps{args} returned {got!r}; it cannot be done exactly: raise ValueError.")
