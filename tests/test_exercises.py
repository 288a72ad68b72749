"""The exercise checkers: each one rejects a plausible wrong answer with a message that helps, its hint holds no
solution, and every chapter has an exercise in which the learner writes code.

The solutions notebooks (run by ``test_notebooks``) show that each checker accepts a right answer; this file
shows that none accepts everything. A new exercise without an entry in ``WRONG`` fails
``test_every_exercise_has_a_wrong_answer``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import nbformat
import numpy as np
import pandas as pd
import pytest

from bigmodel_utils import exercises
from bigmodel_utils.exercises import UnknownExerciseError, Wrong, check, exercise, exercise_ids, hint, verdict
from bigmodel_utils.paths import REPO_ROOT


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _no_mask_attention(q, k, v):
    return _softmax(q @ k.T / math.sqrt(q.shape[-1])) @ v


def _auc_without_ties(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float((pos[:, None] > neg[None, :]).mean())


def _ece_unweighted(probs, labels, n_bins=10):
    conf, correct = probs.max(1), probs.argmax(1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    gaps = [abs(conf[bins == b].mean() - correct[bins == b].mean()) for b in range(n_bins) if (bins == b).any()]
    return float(np.mean(gaps))


def _cosine_without_warmup(step, peak, warmup, total):
    return peak * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def _prune_by_value(w, sparsity):
    out = w.copy().ravel()
    out[np.argsort(out)[: int(round(sparsity * w.size))]] = 0
    return out.reshape(w.shape)


def _validate_without_length(payload, max_length):
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise ValueError("send {'instances': [text, ...]}")
    return payload["instances"]


def _quota_never_resets(times, quota, window):
    return [i < quota for i in range(len(times))]


def _top_p_without_the_crossing_token(probs, p):
    order = np.argsort(-probs)
    keep = np.zeros_like(probs)
    keep[order[np.cumsum(probs[order]) <= p]] = 1
    keep[order[0]] = 1
    return probs * keep / (probs * keep).sum()


def _wald(k, n):
    p = k / n
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def _capacity_table():
    return pd.DataFrame({"training images": [100, 100, 100, 1000, 1000, 1000], "width": [8, 32, 128, 8, 32, 128],
                         "test accuracy": [0.70, 0.74, 0.72, 0.80, 0.86, 0.90]})


def _untrained_penguin_model():
    from bigmodel_utils.models import build_mlp
    from bigmodel_utils.tabular import penguin_arrays

    return build_mlp((penguin_arrays("species")["x_test"].shape[1],), 3)


def _first_groups_split(frame, column, test_size, seed):
    ids = sorted(frame[column].unique())
    test = frame[column].isin(ids[: round(test_size * len(ids))])
    return frame[~test], frame[test]


def _row_split(frame, column, test_size, seed):
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(frame, test_size=test_size, random_state=seed))


def _valid_conv(images, kernel, bias):
    from numpy.lib.stride_tricks import sliding_window_view

    k = kernel.shape[0]
    return np.einsum("nhwcij,ijco->nhwo", sliding_window_view(images, (k, k), axis=(1, 2)), kernel) + bias


def _gru_update_gate_swapped(x, h, kernel, recurrent, bias):
    from bigmodel_utils.exercises.ch06 import _gru_variant

    return _gru_variant(x, h, kernel, recurrent, bias, swap_update=True)


def _plain_sgd_step(w, grad, velocity, lr, momentum):
    return w - lr * grad, velocity


def _dropout_without_rescaling(x, rate, rng):
    return x * (rng.random(x.shape) >= rate)


@dataclass(frozen=True)
class _Lazy:
    """A wrong answer computed when the test runs (it needs data or Keras), not when the tests are collected."""

    name: str


_lazy = _Lazy


# One plausible wrong answer (or more) per exercise: off by one, wrong axis, wrong sign, a forgotten factor,
# a hard-coded value. Each must get "not yet" with a message that says something about it.
WRONG: dict[str, list[tuple[str, object]]] = {
    "00.1": [("the whole data set, not the training split", (1797, (8, 8)))],
    "00.2": [("every data set, online ones too", _lazy("all datasets"))],
    "00.3": [("multiplications only", lambda m, k, n: m * k * n), ("square only", lambda m, k, n: 2 * n**3)],
    "01.1": [("three blocks, like a GRU", 3 * (32 * 16 + 16 * 16 + 16))],
    "01.2": [("the weights alone", 7e9 * 4 / 2**30), ("GB, not GiB", 7e9 * 16 / 1e9)],
    "01.3": [("forward pass only (2ND)", 2 * 1e9 * 20e9)],
    "01.4": [("seconds, not days", lambda n, d, g, f, u: 6 * n * d / (g * f * u)),
             ("utilisation forgotten", lambda n, d, g, f, u: 6 * n * d / (g * f) / 86400)],
    "02.1": [("sign error", lambda z: _sigmoid(z) * (1 + _sigmoid(z))), ("σ(1-z)", lambda z: _sigmoid(z) * (1 - z))],
    "02.2": [("1/λmax, not 2/λmax", _lazy("one over lambda max"))],
    "02.3": [("not divided by the number of entries", lambda y_pred, y_true: 2 * (y_pred - y_true)),
             ("sign", lambda y_pred, y_true: 2 * (y_true - y_pred) / y_pred.size)],
    "02.4": [("no momentum", _plain_sgd_step),
             ("uphill", lambda w, g, v, lr, m: (w + (m * v + lr * g), m * v + lr * g))],
    "03.1": [("a count, not a fraction", _lazy("count of rows with a missing value")),
             ("a percentage", _lazy("percentage of rows with a missing value"))],
    "03.2": [("off by one", _lazy("shared birds plus one"))],
    "03.3": [("the mean of the whole table (leakage)", _lazy("mean of the whole table"))],
    "03.4": [("rows split, birds leak", _row_split), ("the same groups for every seed", _first_groups_split)],
    "04.1": [("no biases", 64 * 32 + 32 * 10)],
    "04.2": [("an untrained model", _lazy("untrained model"))],
    "04.3": [("survivors not rescaled", _dropout_without_rescaling),
             ("rate taken as the keep probability", lambda x, rate, rng: np.where(rng.random(x.shape) < rate, x / max(rate, 1e-9), 0.0))],
    "05.1": [("same padding's shape", ((28, 28, 16), 160)), ("no bias", ((26, 26, 16), 144))],
    "05.2": [("max, not mean", lambda image: image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
              .reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).max(axis=(1, 3)))],
    "05.3": [("valid padding", _valid_conv)],
    "06.1": [("a percentage", _lazy("percentage of long training reviews"))],
    "06.2": [("one bias per block (reset_after=False)", 3 * (128 * 64 + 64 * 64 + 64))],
    "06.3": [("update gate swapped", _gru_update_gate_swapped)],
    "07.1": [("no layer norms", _lazy("block without layer norms"))],
    "07.2": [("no causal mask", _no_mask_attention)],
    "07.3": [("the special tokens forgotten", _lazy("share of test reviews over 64"))],
    "08.1": [("ties not counted half", _auc_without_ties)],
    "08.2": [("bins not weighted by their share", _ece_unweighted)],
    "09.1": [("rounded down", _lazy("devices rounded down"))],
    "09.2": [("no warm-up", _cosine_without_warmup)],
    "09.3": [("never refuses", lambda global_batch, micro, replicas: max(1, global_batch // (micro * replicas)))],
    "10.1": [("one scale for the whole kernel", lambda w: (np.round(w * 127 / np.abs(w).max()).astype(np.int8),
                                                         np.float32(127 / np.abs(w).max()))),
             ("the step size instead of Keras's multiplier", lambda w: (np.round(w * 127 / np.abs(w).max(0)).astype(np.int8),
                                                                        np.abs(w).max(0) / 127)),
             ("scales per input row", lambda w: (np.round(w * 127 / np.abs(w).max(1, keepdims=True)).astype(np.int8),
                                                 127 / np.abs(w).max(1)))],
    "10.2": [("softmax of p / T", lambda p, t: _softmax(p / t))],
    "10.3": [("smallest values, not magnitudes", _prune_by_value)],
    "11.1": [("nearest rank, no interpolation", lambda lat: sorted(lat)[int(0.99 * (len(lat) - 1))])],
    "11.2": [("NumPy scalars left in", lambda p, labels: [{"class": r.argmax(), "label": labels[r.argmax()],
                                                           "probabilities": list(r)} for r in p])],
    "11.3": [("no length limit", _validate_without_length)],
    "12.1": [("plain mean", lambda sets, sizes: [sum(s[i] for s in sets) / len(sets) for i in range(len(sets[0]))])],
    "12.2": [("hashes the name, not the bytes", lambda path: __import__("hashlib").sha256(str(path).encode()).hexdigest())],
    "12.3": [("the window never resets", _quota_never_resets)],
    "13.1": [("the crossing token dropped", _top_p_without_the_crossing_token)],
    "13.2": [("keys only", _lazy("kv cache keys only"))],
    "13.3": [("bits per token", lambda nll, tokens, characters: nll / math.log(2))],
    "13.4": [("not the most frequent pair", _lazy("bpe wrong pair"))],
    "14.1": [("the size of W", lambda d_in, d_out, r: d_in * d_out)],
    "14.2": [("scale missing", lambda W, A, B, alpha, r: W + A @ B)],
    "14.3": [("Wald's interval", _wald)],
    "15.1": [("the best width on all the data", (128, _capacity_table()))],
    "15.2": [("wraps around", lambda images, dx, dy: np.roll(np.roll(images, dx, axis=2), dy, axis=1))],
}


def _resolve(exercise_id: str, answer):
    """Turn a ``_lazy`` placeholder into the wrong answer it names."""
    if not isinstance(answer, _Lazy):
        return answer
    answer = answer.name
    from bigmodel_utils.data import dataset_info, list_datasets, load_dataset
    from bigmodel_utils.scale import kv_cache_bytes, transformer_block_params

    texts = {"train": lambda: load_dataset("reviews_zh", split="train")["text"],
             "test": lambda: load_dataset("reviews_zh", split="test")["text"]}
    if answer == "all datasets":
        assert any(not dataset_info(n).offline for n in list_datasets())
        return set(list_datasets())
    if answer == "one over lambda max":
        from bigmodel_utils.scratch import line_data, line_hessian

        return 1 / np.linalg.eigvalsh(line_hessian(line_data(n=50, seed=7)[0])).max()
    if answer in {"count of rows with a missing value", "percentage of rows with a missing value",
                  "mean of the whole table", "shared birds plus one"}:
        from bigmodel_utils.tabular import clean_penguins, split_frame

        df = clean_penguins(load_dataset("penguins_raw"))
        if answer == "count of rows with a missing value":
            return int(df.isna().any(axis=1).sum())
        if answer == "percentage of rows with a missing value":
            return 100 * float(df.isna().any(axis=1).mean())
        if answer == "mean of the whole table":
            return float(df["body_mass_g"].mean())
        train, _, test = split_frame(df, "species", seed=1)
        return len(set(train["individual_id"]) & set(test["individual_id"])) + 1
    if answer == "untrained model":
        return _untrained_penguin_model()
    if answer == "percentage of long training reviews":
        return 100 * float((texts["train"]().str.len() > 128).mean())
    if answer == "block without layer norms":
        return transformer_block_params(128, 4, 512) - 4 * 128
    if answer == "share of test reviews over 64":
        return float((texts["test"]().str.len() > 64).mean())
    if answer == "devices rounded down":
        from bigmodel_utils.scale import adam_training_bytes

        return math.floor(adam_training_bytes(70e9, mixed_precision=True) / (80 * 2**30))
    if answer == "kv cache keys only":
        return kv_cache_bytes(96, 96, 128, 2048, batch=1, bytes_per_value=2) // 2
    if answer == "bpe wrong pair":
        return (("很", "好"), ["酒店很好", "酒店不错", "很好吃", "不错不错"])
    raise AssertionError(f"no wrong answer named {answer!r}")


def test_every_exercise_has_a_wrong_answer():
    assert set(WRONG) == set(exercise_ids()), "add a plausible wrong answer to WRONG for each new exercise"


@pytest.mark.parametrize("exercise_id,why,answer",
                         [(i, why, a) for i, cases in WRONG.items() for why, a in cases],
                         ids=[f"{i}-{why}" for i, cases in WRONG.items() for why, _ in cases])
def test_each_checker_rejects_a_plausible_wrong_answer_with_a_useful_message(exercise_id, why, answer):
    ok, message = verdict(exercise_id, _resolve(exercise_id, answer))
    assert not ok, f"exercise {exercise_id} accepted a wrong answer ({why})"
    assert "could not be checked" not in message, f"{exercise_id} ({why}) crashed instead of explaining: {message}"
    assert len(message) > 25, f"{exercise_id} ({why}): {message!r} does not say what is wrong"


def _rejects_all(exercise_id: str) -> bool:
    return all(not verdict(exercise_id, _resolve(exercise_id, a))[0] for _, a in WRONG.get(exercise_id, []))


def test_the_wrong_answer_test_catches_a_checker_that_accepts_everything():
    """The test above can fail: a lenient checker for a real exercise is caught."""
    real = exercises.get_exercise("14.2")
    exercises._EXERCISES["14.2"] = exercises.Exercise("14.2", real.hint, lambda answer: None)
    try:
        assert not _rejects_all("14.2")
    finally:
        exercises._EXERCISES["14.2"] = real
    assert _rejects_all("14.2")


# --- hints ------------------------------------------------------------------------------------------------------


def _solution_code() -> dict[str, str]:
    """The code of each exercise's worked solution: the code cells of its solutions notebook from the previous
    exercise's check up to its own."""
    out = {}
    for path in sorted((REPO_ROOT / "chapters" / "solutions").glob("[0-9][0-9]_*.ipynb")):
        pending = []
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            pending.append(cell.source)
            found = re.findall(r'check\("(\d\d\.\d+)"', cell.source)
            if found:
                for exercise_id in found:
                    out[exercise_id] = "\n".join(pending)
                pending = []
    return out


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def _longest_common_substring(a: str, b: str) -> str:
    best, prev = (0, 0), [0] * (len(b) + 1)
    for i, ca in enumerate(a, 1):
        row = [0] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if ca == cb:
                row[j] = prev[j - 1] + 1
                if row[j] > best[0]:
                    best = (row[j], i)
        prev = row
    return a[best[1] - best[0]:best[1]]


def _gives_away(text: str, solution: str) -> bool:
    """Whether ``text`` shares 24 or more characters (spaces and case aside) with the solution's code."""
    return len(_longest_common_substring(_normal(text), _normal(solution)).strip()) >= 24


def test_no_hint_holds_its_solution():
    """A hint points the way; it must not contain a line of the worked solution's code."""
    solutions = _solution_code()
    assert set(solutions) >= set(exercise_ids())
    for exercise_id in exercise_ids():
        text = exercises.get_exercise(exercise_id).hint
        assert not _gives_away(text, solutions[exercise_id]), f"the hint of {exercise_id} gives away its solution"


def test_the_hint_test_catches_a_hint_that_is_the_solution():
    solution = _solution_code()["05.3"]
    line = next(x.strip() for x in solution.splitlines() if "einsum" in x)
    assert _gives_away(f"Pad the images, then {line}", solution)  # a hint that spells out the solution
    assert not _gives_away(exercises.get_exercise("05.3").hint, solution)
    # the hint 08.1 had before hints were rewritten spelled out its solution's comparison
    assert _gives_away("compare every pair with pos[:, None] > neg[None, :], add half of the ties",
                       _solution_code()["08.1"])


def test_hints_are_asked_for_not_printed_with_the_verdict(capsys):
    assert not check("05.2", lambda image: image)
    out = capsys.readouterr().out
    assert "hint('05.2')" in out and exercises.get_exercise("05.2").hint not in out
    hint("05.2")
    assert exercises.get_exercise("05.2").hint in capsys.readouterr().out
    with pytest.raises(UnknownExerciseError):
        hint("05.99")


# --- every chapter makes the learner write code ------------------------------------------------------------------


def test_every_chapter_has_an_exercise_where_the_learner_writes_a_function():
    """At least one exercise per chapter takes a function (the checker runs it on fresh random inputs)."""
    writes_code = set()
    for path in sorted((REPO_ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")):
        cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        for source in cells:
            for exercise_id, name in re.findall(r'check\("(\d\d\.\d+)", (\w+)\)', source):
                if re.search(rf"^def {name}\(", source, re.M):
                    writes_code.add(path.name[:2])
    chapters = {p.name[:2] for p in (REPO_ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")}
    assert writes_code == chapters, f"chapters without a write-the-code exercise: {sorted(chapters - writes_code)}"
    takes_function = {i[:2] for i in exercise_ids() if exercises.get_exercise(i).takes_function}
    assert takes_function == chapters


def test_an_exercise_that_takes_a_function_refuses_a_value():
    ok, message = verdict("05.3", 42)
    assert not ok and "answer with a function" in message


# --- the framework ------------------------------------------------------------------------------------------------


def test_chapter_checkers_are_imported_only_when_needed():
    import subprocess
    import sys

    code = ("import sys; from bigmodel_utils.exercises import check; check('00.1', ..., quiet=True); "
            "print(sorted(m for m in sys.modules if m.startswith('bigmodel_utils.exercises.ch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['bigmodel_utils.exercises.ch00']"


def test_each_chapter_module_registers_only_its_own_exercises():
    for exercise_id in exercise_ids():
        checker = exercises.get_exercise(exercise_id).checker
        assert checker.__module__ == f"bigmodel_utils.exercises.ch{exercise_id[:2]}", exercise_id


def test_check_passes_right_and_fails_wrong_without_raising(capsys):
    assert check("00.1", (1437, (8, 8))) is True
    assert "correct" in capsys.readouterr().out
    for wrong in [(1, (8, 8)), (1437, (4, 4)), "a string", 42, [None], ..., None]:
        assert check("00.1", wrong) is False
        out = capsys.readouterr().out
        assert "not yet" in out and "hint('00.1')" in out and "Traceback" not in out


def test_check_unknown_id_lists_known_ones():
    with pytest.raises(UnknownExerciseError, match="00.1"):
        check("99.9", 1)
    with pytest.raises(UnknownExerciseError, match="numbered like"):
        check("5.2", 1)


def test_exercise_registration_validates_ids():
    exercises.get_exercise("00.1")  # chapter 00's checkers are loaded, so a second 00.1 is a duplicate
    with pytest.raises(ValueError):
        exercise("5.x", hint="h")
    with pytest.raises(ValueError, match="twice"):
        exercise("00.1", hint="h")(lambda a: None)


def test_checker_errors_become_wrong_answers(capsys):
    @exercise("99.1", hint="the hint")
    def _(answer):
        if answer != 7:
            raise Wrong("not seven")
        return None

    try:
        assert check("99.1", 7, quiet=True)
        assert not check("99.1", 6)
        assert "not seven" in capsys.readouterr().out
        assert not check("99.1", object())
        assert "99.1" in exercise_ids()
    finally:
        exercises._EXERCISES.pop("99.1")
