"""Checked exercises: ``check("05.2", answer)`` says pass or not yet, never a traceback; ``hint("05.2")`` helps.

Each chapter ends with exercises numbered ``"NN.k"``. A learner writes an answer and calls :func:`check`;
the worked solutions in ``chapters/solutions/`` call the same function, and CI runs them, so every checker
is known to accept a right answer (and ``tests/test_exercises.py`` shows each one rejects plausible wrong
ones). A hint is not printed with the question: the learner asks for it with :func:`hint`. A hint points
the way and never holds the solution.

The checkers of chapter ``NN`` live in ``bigmodel_utils/exercises/chNN.py``, one module per notebook, and
are imported only when an exercise of that chapter is checked. To add an exercise, write a checker in the
chapter's module that raises :class:`Wrong` with a helpful reason (or returns normally for a right answer)
and register it::

    @exercise("03.1", hint="Which pandas method marks a missing value? What does its mean over rows tell you?")
    def _(answer):
        ...
"""

from __future__ import annotations

import importlib
import pkgutil
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
    takes_function: bool = False


_EXERCISES: dict[str, Exercise] = {}


def _parse(exercise_id: str) -> tuple[int, int]:
    parts = exercise_id.split(".") if isinstance(exercise_id, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or len(parts[0]) != 2:
        raise ValueError(f"exercise ids look like '05.2', got {exercise_id!r}")
    return int(parts[0]), int(parts[1])


def exercise(exercise_id: str, hint: str, takes_function: bool = False) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register a checker for ``exercise_id`` (``"NN.k"``), with the hint :func:`hint` prints.

    ``takes_function=True``: the learner writes a function, which the checker runs on fresh inputs; any other
    answer is refused before the checker sees it.
    """
    _parse(exercise_id)
    if exercise_id in _EXERCISES:
        raise ValueError(f"exercise {exercise_id} is registered twice")

    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _EXERCISES[exercise_id] = Exercise(exercise_id, hint, fn, takes_function)
        return fn

    return register


def _chapter_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ch"))


def _load_chapter(chapter: int) -> None:
    name = f"ch{chapter:02d}"
    if name in _chapter_modules():
        importlib.import_module(f"{__name__}.{name}")


def exercise_ids() -> list[str]:
    """Every exercise id of every chapter, in order (this imports every chapter's checkers)."""
    for name in _chapter_modules():
        importlib.import_module(f"{__name__}.{name}")
    return sorted(_EXERCISES, key=_parse)


def get_exercise(exercise_id: str) -> Exercise:
    """The registered exercise ``exercise_id``; its chapter's checkers are imported on first use."""
    try:
        chapter, _ = _parse(exercise_id)
    except ValueError:
        chapter = None
    if chapter is not None and exercise_id not in _EXERCISES:
        _load_chapter(chapter)
    if exercise_id not in _EXERCISES:
        raise UnknownExerciseError(
            f"there is no exercise {exercise_id!r}; exercises are numbered like '00.1' "
            f"(known: {', '.join(exercise_ids())})"
        )
    return _EXERCISES[exercise_id]


def verdict(exercise_id: str, answer: Any) -> tuple[bool, str]:
    """``(True, "")`` for a right answer, else ``(False, why)``; never raises for a wrong answer."""
    ex = get_exercise(exercise_id)
    if answer is Ellipsis or answer is None:
        return False, "no answer yet: replace the ... (or None) with your answer."
    if ex.takes_function and not callable(answer):
        return False, "answer with a function (def ...), not a value."
    try:
        ex.checker(answer)
    except Wrong as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - a malformed answer is a wrong answer, not a crash
        return False, f"your answer could not be checked ({type(exc).__name__}: {exc}); check its type and shape."
    return True, ""


def check(exercise_id: str, answer: Any, *, quiet: bool = False) -> bool:
    """Check ``answer`` for exercise ``exercise_id``; print the verdict and return True/False.

    A wrong answer, including one of the wrong type or shape, prints why and returns False: it never
    raises. Only an unknown exercise id raises (a typo to fix, not a wrong answer).
    """
    ok, why = verdict(exercise_id, answer)
    if not quiet:
        if ok:
            print(f"✅ Exercise {exercise_id}: correct.")
        else:
            print(f"❌ Exercise {exercise_id}: not yet. {why}\n   Stuck? hint({exercise_id!r}) gives a hint.")
    return ok


def hint(exercise_id: str) -> None:
    """Print the hint of exercise ``exercise_id``: a direction to look in, not the answer."""
    print(f"💡 Hint for {exercise_id}: {get_exercise(exercise_id).hint}")
