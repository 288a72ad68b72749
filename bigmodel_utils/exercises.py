"""Checked exercises: ``check("00.1", answer)`` says pass or fail, with a hint, never a traceback.

Each chapter ends with exercises numbered ``"NN.k"``. A learner writes an answer and calls
:func:`check`; the worked solutions in ``chapters/solutions/`` call the same function, and CI runs
them, so every checker is known to accept a right answer.

To add an exercise, write a checker that raises :class:`Wrong` with a helpful reason (or returns
normally for a right answer) and register it::

    @exercise("03.1", hint="Count missing values per column with df.isna().sum().")
    def _(answer):
        ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


class Wrong(Exception):
    """Raised by a checker: the answer is not right; the message says why (without giving it away)."""


class UnknownExerciseError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Exercise:
    id: str
    hint: str
    checker: Callable[[Any], None]


_REGISTRY: dict[str, Exercise] = {}


def exercise(exercise_id: str, hint: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register a checker for ``exercise_id`` (``"NN.k"``)."""
    parts = exercise_id.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"exercise ids look like '05.2', got {exercise_id!r}")
    if exercise_id in _REGISTRY:
        raise ValueError(f"exercise {exercise_id} is registered twice")

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[exercise_id] = Exercise(exercise_id, hint, fn)
        return fn

    return register


def exercise_ids() -> list[str]:
    """Every registered exercise id, in order."""
    return sorted(_REGISTRY, key=lambda s: tuple(int(p) for p in s.split(".")))


def check(exercise_id: str, answer: Any, *, quiet: bool = False) -> bool:
    """Check ``answer`` for exercise ``exercise_id``; print the verdict and return True/False.

    A wrong answer, including one of the wrong type or shape, prints why and a hint and returns
    False: it never raises. Only an unknown exercise id raises (a typo to fix, not a wrong answer).
    """
    ex = _REGISTRY.get(exercise_id)
    if ex is None:
        raise UnknownExerciseError(
            f"there is no exercise {exercise_id!r}; exercises are numbered like '00.1' "
            f"(known: {', '.join(exercise_ids())})"
        )
    if answer is Ellipsis or answer is None:
        ok, why = False, "no answer yet: replace the ... (or None) with your answer."
    else:
        try:
            ex.checker(answer)
            ok, why = True, ""
        except Wrong as exc:
            ok, why = False, str(exc)
        except Exception as exc:  # noqa: BLE001 - a malformed answer is a wrong answer, not a crash
            ok, why = False, f"your answer could not be checked ({type(exc).__name__}: {exc}); check its type and shape."
    if not quiet:
        if ok:
            print(f"✅ Exercise {exercise_id}: correct.")
        else:
            print(f"❌ Exercise {exercise_id}: not yet. {why}\n   Hint: {ex.hint}")
    return ok


# --- chapter 00 -------------------------------------------------------------------------------


@exercise("00.1", hint="load_dataset('digits', split='train') returns (images, labels); look at images.shape.")
def _ex_00_1(answer: Any) -> None:
    from bigmodel_utils.data import load_dataset

    images, _ = load_dataset("digits", split="train")
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("answer with a pair: (number of training images, shape of one image).")
    n, shape = answer
    if n != len(images):
        raise Wrong(f"{n!r} is not the number of images in the training split.")
    if tuple(shape) != images.shape[1:]:
        raise Wrong(f"{shape!r} is not the shape of one image (height, width).")


@exercise("00.2", hint="list_datasets() gives the names; dataset_info(name).offline says whether one works offline.")
def _ex_00_2(answer: Any) -> None:
    from bigmodel_utils.data import dataset_info, list_datasets

    expected = {n for n in list_datasets() if dataset_info(n).offline}
    got = set(answer)
    if got - expected:
        raise Wrong(f"{sorted(got - expected)} need the internet.")
    if expected - got:
        raise Wrong(f"{len(expected - got)} offline data set(s) are missing from your answer.")
