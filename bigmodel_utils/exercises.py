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


def _close(answer: Any, expected: float, rel: float, what: str) -> None:
    value = float(answer)
    if not abs(value - expected) <= rel * abs(expected):
        direction = "too high" if value > expected else "too low"
        raise Wrong(f"{value:.4g} is {direction} for {what}.")


# --- chapter 01 -------------------------------------------------------------------------------


@exercise("01.1", hint="An LSTM has three gates and a candidate: four blocks of weights, each with input weights (32 x 16), "
                        "recurrent weights (16 x 16) and a bias (16).")
def _ex_01_1(answer: Any) -> None:
    from bigmodel_utils.scale import lstm_params

    if int(answer) != answer:
        raise Wrong("a parameter count is a whole number.")
    if int(answer) != lstm_params(32, 16):
        raise Wrong(f"{int(answer):,} is not the count; an LSTM has three gates and a candidate: did you forget a block, the recurrent weights or the bias?")


@exercise("01.2", hint="Adam training keeps weights, gradients and two moments in float32: 16 bytes a parameter; 1 GiB = 2**30 bytes.")
def _ex_01_2(answer: Any) -> None:
    from bigmodel_utils.scale import adam_training_bytes

    _close(answer, adam_training_bytes(7e9) / 2**30, 0.01, "the training state in GiB")


@exercise("01.3", hint="C ≈ 6 · N · D, with N parameters and D training tokens.")
def _ex_01_3(answer: Any) -> None:
    from bigmodel_utils.scale import training_flops

    _close(answer, training_flops(1e9, 20e9), 0.01, "the training compute in FLOP")


# --- chapter 02 -------------------------------------------------------------------------------


def _callable(answer: Any) -> None:
    if not callable(answer):
        raise Wrong("answer with a function (def ...), not a value.")


def _returned(value: Any, name: str) -> Any:
    if value is None or value is Ellipsis:
        raise Wrong(f"{name} returned {value!r}: finish the function (did you forget `return`?).")
    return value


@exercise("02.1", hint="σ'(z) = σ(z) · (1 − σ(z)); compute σ(z) once with scratch.sigmoid and reuse it.")
def _ex_02_1(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.scratch import sigmoid

    _callable(answer)
    z = np.linspace(-30, 30, 121)
    got = np.asarray(_returned(answer(z), "sigmoid_grad(z)"), dtype=float)
    if got.shape != z.shape:
        raise Wrong(f"sigmoid_grad(z) should have z's shape {z.shape}, got {got.shape}.")
    s = sigmoid(z)
    if not np.allclose(got, s * (1 - s), atol=1e-9):
        worst = float(z[np.argmax(np.abs(got - s * (1 - s)))])
        raise Wrong(f"your derivative is wrong, for example at z = {worst:g}.")


@exercise("02.2", hint="GD on a quadratic converges when lr < 2 / λmax, λmax the largest eigenvalue of scratch.line_hessian(x).")
def _ex_02_2(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.scratch import line_data, line_hessian

    x, _ = line_data()
    _close(answer, 2 / np.linalg.eigvalsh(line_hessian(x)).max(), 0.01, "the stability limit")


@exercise("02.3", hint="d/dŷ of mean((ŷ − y)²) is 2(ŷ − y) / (number of entries).")
def _ex_02_3(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(1)
    for shape in [(5,), (4, 3), (2, 3, 2)]:
        y_pred, y_true = rng.normal(size=shape), rng.normal(size=shape)
        got = np.asarray(_returned(answer(y_pred, y_true), "mse_grad"), dtype=float)
        if got.shape != shape:
            raise Wrong(f"for inputs of shape {shape} the gradient has that shape too, got {got.shape}.")
        if not np.allclose(got, 2 * (y_pred - y_true) / y_pred.size, atol=1e-9):
            raise Wrong(f"the gradient is wrong for inputs of shape {shape} (did you divide by the number of entries?).")


# --- chapter 03 -------------------------------------------------------------------------------


def _clean_penguins():
    from bigmodel_utils.data import load_dataset
    from bigmodel_utils.tabular import clean_penguins

    return clean_penguins(load_dataset("penguins_raw"))


@exercise("03.1", hint="df.isna().any(axis=1) marks the rows with a missing value; its mean is the fraction.")
def _ex_03_1(answer: Any) -> None:
    df = _clean_penguins()
    expected = float(df.isna().any(axis=1).mean())
    value = float(answer)
    if value > 1:
        raise Wrong("a fraction lies between 0 and 1 (did you give a count or a percentage?).")
    _close(value, expected, 0.001, "the fraction of rows with a missing value")


@exercise("03.2", hint="set(train['individual_id']) & set(test['individual_id']), then len().")
def _ex_03_2(answer: Any) -> None:
    from bigmodel_utils.tabular import split_frame

    train, _, test = split_frame(_clean_penguins(), "species", seed=1)
    expected = len(set(train["individual_id"]) & set(test["individual_id"]))
    if int(answer) != answer or int(answer) != expected:
        raise Wrong(f"{answer!r} is not the number of birds on both sides (check the seed: 1).")


@exercise("03.3", hint="After fitting, pre.named_transformers_['num'].named_steps['scale'].mean_ holds the means, in PENGUIN_NUMERIC order.")
def _ex_03_3(answer: Any) -> None:
    from bigmodel_utils.tabular import split_frame

    train, _, _ = split_frame(_clean_penguins(), "sex", seed=0)
    expected = float(train["body_mass_g"].mean())
    if abs(float(answer) - float(_clean_penguins()["body_mass_g"].mean())) < 1e-6 and abs(float(answer) - expected) > 1e-6:
        raise Wrong("that is the mean over the whole table: the scaler must learn from the training split only.")
    _close(answer, expected, 1e-6, "the training split's mean body mass")


# --- chapter 04 -------------------------------------------------------------------------------


@exercise("04.1", hint="Flatten has no parameters; then Dense 64 → 32 (weights and biases) and Dense 32 → 10.")
def _ex_04_1(answer: Any) -> None:
    from bigmodel_utils.scale import mlp_params

    expected = mlp_params([64, 32, 10])
    if int(answer) != answer or int(answer) != expected:
        raise Wrong(f"{answer!r} is not the count; an 8x8 image flattens to 64 inputs.")


@exercise("04.2", hint="build_mlp((n_features,), 3), sparse_categorical_crossentropy, fit on x_train/y_train with validation data.")
def _ex_04_2(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.tabular import penguin_arrays

    if not hasattr(answer, "predict"):
        raise Wrong("answer with the trained Keras model itself.")
    data = penguin_arrays("species")
    probs = np.asarray(answer.predict(data["x_test"], verbose=0))
    if probs.ndim != 2 or probs.shape[1] != 3:
        raise Wrong(f"the model should output 3 class probabilities per penguin, got shape {probs.shape}.")
    acc = float(np.mean(probs.argmax(axis=1) == data["y_test"]))
    if acc < 0.95:
        raise Wrong(f"test accuracy {acc:.3f} is below 0.95: train longer, or check the loss and the labels.")


# --- chapter 05 -------------------------------------------------------------------------------


@exercise("05.1", hint="Without padding a 3x3 kernel loses one pixel on each side; each of 16 filters has 3*3*1 weights and a bias.")
def _ex_05_1(answer: Any) -> None:
    from bigmodel_utils.scale import conv2d_params

    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("answer with a pair: ((height, width, channels), number of parameters).")
    shape, n = answer
    if tuple(shape) != (26, 26, 16):
        raise Wrong(f"{tuple(shape)} is not the output shape.")
    if n != conv2d_params(3, 1, 16):
        raise Wrong(f"{n} is not the parameter count.")


@exercise("05.2", hint="Crop to even height and width, reshape to (h/2, 2, w/2, 2) and take the mean over axes 1 and 3.")
def _ex_05_2(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(5)
    for shape in [(4, 6), (7, 5), (2, 2)]:
        image = rng.normal(size=shape).astype(np.float32)
        got = np.asarray(_returned(answer(image), "avg_pool_2x2"), dtype=np.float32)
        h, w = shape[0] // 2 * 2, shape[1] // 2 * 2
        expected = image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        if got.shape != expected.shape:
            raise Wrong(f"for a {shape} image the result should have shape {expected.shape}, got {got.shape}.")
        if not np.allclose(got, expected, atol=1e-5):
            raise Wrong(f"the values are wrong for a {shape} image.")


# --- chapter 06 -------------------------------------------------------------------------------


@exercise("06.1", hint="train['text'].str.len() > 128, then its mean; use load_dataset('reviews_zh', split='train').")
def _ex_06_1(answer: Any) -> None:
    _share_of_long_reviews(answer, "train", 128, "the share of truncated training reviews")


def _share_of_long_reviews(answer: Any, split: str, limit: int, what: str) -> None:
    from bigmodel_utils.data import load_dataset

    texts = load_dataset("reviews_zh", split=split)["text"]
    value = float(answer)
    if value > 1:
        raise Wrong("a fraction lies between 0 and 1 (did you give a count or a percentage?).")
    _close(value, float((texts.str.len() > limit).mean()), 0.001, what)


@exercise("06.2", hint="3 · (inputs · units + units · units + 2 · units): a GRU has two gates and a candidate, three blocks of weights, "
                        "each with input and recurrent weights and two biases.")
def _ex_06_2(answer: Any) -> None:
    from bigmodel_utils.scale import gru_params

    if int(answer) != answer or int(answer) != gru_params(128, 64):
        raise Wrong(f"{answer!r} is not the count; with reset_after=True each of the GRU's three blocks (two gates and the candidate) has two bias vectors.")


# --- chapter 07 -------------------------------------------------------------------------------


@exercise("07.1", hint="Attention: four d x d matrices with biases; two layer norms (scale and shift); "
                       "the feed-forward network: d x d_ff plus bias, then d_ff x d plus bias.")
def _ex_07_1(answer: Any) -> None:
    from bigmodel_utils.scale import transformer_block_params

    d, expected = 128, transformer_block_params(128, 4, 512)
    if int(answer) != answer:
        raise Wrong("a parameter count is a whole number.")
    if int(answer) == expected - 4 * d:
        raise Wrong("almost: count the two layer norms too (a scale and a shift of d numbers each).")
    if int(answer) != expected:
        raise Wrong(f"{int(answer):,} is not the count; check each of the four attention matrices has a bias.")


@exercise("07.2", hint="scaled_dot_product_attention(q, k, v, mask=causal_mask(len(q))) and return the output, not the weights.")
def _ex_07_2(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.models.attention import causal_mask, scaled_dot_product_attention

    _callable(answer)
    rng = np.random.default_rng(7)
    for n, d in [(5, 4), (1, 3), (8, 2)]:
        q, k, v = (rng.normal(size=(n, d)) for _ in range(3))
        got = np.asarray(_returned(answer(q, k, v), "causal_attention"), dtype=float)
        expected, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(n))
        if got.shape != expected.shape:
            raise Wrong(f"for q, k, v of shape {(n, d)} the output should have shape {expected.shape}, got {got.shape}.")
        if not np.allclose(got[0], v[0]):
            raise Wrong("the first position may attend only to itself, so its output must be v[0]; is the mask applied?")
        if not np.allclose(got, expected, atol=1e-8):
            raise Wrong("the values are wrong; did you divide the scores by sqrt(d)?")


@exercise("07.3", hint="(test['text'].str.len() > 62).mean() with test = load_dataset('reviews_zh', split='test').")
def _ex_07_3(answer: Any) -> None:
    _share_of_long_reviews(answer, "test", 62, "the share of test reviews that SEQ_LEN = 64 cuts")


# --- chapter 08 -------------------------------------------------------------------------------


@exercise("08.1", hint="pos = scores[labels == 1], neg = scores[labels == 0]; compare every pair with "
                       "pos[:, None] > neg[None, :], add half of the ties, divide by the number of pairs.")
def _ex_08_1(answer: Any) -> None:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    _callable(answer)
    rng = np.random.default_rng(8)
    for n, rounding in [(50, None), (200, 1), (7, None)]:
        labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = rng.normal(size=n) + labels
        if rounding is not None:
            scores = np.round(scores, rounding)  # ties
        got = float(_returned(answer(scores, labels), "auc"))
        expected = roc_auc_score(labels, scores)
        if not abs(got - expected) < 1e-9:
            hint = " Count ties as half a pair." if rounding is not None else ""
            raise Wrong(f"for {n} examples you gave {got:.4f}, the AUC is {expected:.4f}.{hint}")


@exercise("08.2", hint="conf = probs.max(1); bins = np.minimum((conf * n_bins).astype(int), n_bins - 1) is close; "
                       "a confidence of exactly 1.0 belongs in the last bin.")
def _ex_08_2(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.evaluation import expected_calibration_error

    _callable(answer)
    rng = np.random.default_rng(9)
    for n, k, bins in [(500, 3, 10), (300, 10, 5), (50, 2, 15)]:
        logits = rng.normal(size=(n, k)) * 3
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = rng.integers(0, k, n)
        got = float(_returned(answer(probs, labels, n_bins=bins), "ece"))
        expected = expected_calibration_error(probs, labels, n_bins=bins)
        if not abs(got - expected) < 1e-3:
            raise Wrong(f"with {n} examples, {k} classes and {bins} bins you gave {got:.4f}, the ECE is {expected:.4f}.")


# --- chapter 09 -------------------------------------------------------------------------------


@exercise("09.1", hint="70e9 parameters × 16 bytes, divided by the bytes of one device (80 × 2**30), rounded up "
                       "with math.ceil.")
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


@exercise("09.2", hint="if step < warmup: return peak * step / warmup; then t = min(step - warmup, total - warmup) / "
                       "(total - warmup) and return peak * 0.5 * (1 + cos(pi * t)).")
def _ex_09_2(answer: Any) -> None:
    from bigmodel_utils.notebook import quiet_tensorflow

    _callable(answer)
    quiet_tensorflow()
    import keras

    for peak, warmup, total in [(1e-3, 10, 100), (0.5, 3, 7), (2e-4, 100, 1000)]:
        schedule = keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=peak, warmup_steps=warmup)
        for step in sorted({0, 1, warmup // 2, warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 5}):
            got = float(_returned(answer(step, peak, warmup, total), "warmup_cosine"))
            expected = float(schedule(step))
            if not abs(got - expected) <= 1e-6 * peak + 1e-12:
                phase = "warm-up" if step <= warmup else "decay"
                raise Wrong(f"at step {step} (peak {peak}, warm-up {warmup}, total {total}, {phase}) you gave "
                            f"{got:.6g}, expected {expected:.6g}.")


@exercise("09.3", hint="global_batch must equal replicas × micro_batch × steps: check that global_batch is divisible "
                       "by replicas × micro_batch, else raise ValueError.")
def _ex_09_3(answer: Any) -> None:
    _callable(answer)
    for args, expected in [((256, 32, 2), 4), ((64, 64, 1), 1), ((1024, 16, 8), 8), ((96, 8, 3), 4)]:
        got = _returned(answer(*args), "accumulation_steps")
        if got != expected:
            raise Wrong(f"accumulation_steps{args} gave {got!r}, expected {expected}.")
    for args in [(100, 32, 2), (64, 128, 1), (48, 8, 4)]:
        try:
            got = answer(*args)
        except ValueError:
            continue
        raise Wrong(f"accumulation_steps{args} returned {got!r}; it cannot be done exactly: raise ValueError.")


# --- chapter 10 -------------------------------------------------------------------------------


@exercise("10.1", hint="np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8): round first, clip "
                       "before the cast (a cast alone wraps 130 round to -126).")
def _ex_10_1(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(10)
    for scale, zero in [(0.02, 0), (0.05, -20), (0.01, 10)]:
        x = rng.normal(scale=1.5, size=(7, 5)).astype(np.float32)
        x[0, 0], x[0, 1] = 100.0, -100.0  # far outside the range: must clip
        got = np.asarray(_returned(answer(x, scale, zero), "quantize"))
        expected = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        if got.dtype != np.int8:
            raise Wrong(f"return an int8 array, not {got.dtype}.")
        if got.shape != x.shape:
            raise Wrong(f"the result has shape {got.shape}, the input {x.shape}.")
        if not np.array_equal(got, expected):
            if got[0, 0] != 127 or got[0, 1] != -128:
                raise Wrong("values outside the range must clip to 127 and -128, not wrap around.")
            raise Wrong(f"with scale {scale} and zero point {zero} some values differ: round x / scale, then add "
                        "the zero point.")


@exercise("10.2", hint="np.log(p) / T, then a softmax along the last axis (subtract the row maximum first).")
def _ex_10_2(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=3, size=(6, 10))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for t in (1.0, 2.0, 4.0, 0.5):
        got = np.asarray(_returned(answer(p, t), "soften"), dtype=float)
        z = np.log(p) / t
        expected = np.exp(z - z.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        if got.shape != p.shape:
            raise Wrong(f"the result has shape {got.shape}, expected {p.shape}: one row per example.")
        if not np.allclose(got.sum(1), 1, atol=1e-6):
            raise Wrong("each row must sum to 1: normalise along the last axis.")
        if not np.allclose(got, expected, atol=1e-6):
            raise Wrong(f"at T = {t} the values differ: divide log p by T, then take the softmax.")
    flat = np.asarray(answer(p, 4.0)).max(1).mean()
    if not flat < p.max(1).mean():
        raise Wrong("a higher temperature must flatten the distribution.")


@exercise("10.3", hint="k = round(sparsity * w.size); idx = np.argsort(np.abs(w).ravel())[:k]; copy w, set those "
                       "entries to 0, keep the shape.")
def _ex_10_3(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(12)
    for shape, s in [((20, 10), 0.5), ((3, 3, 4, 8), 0.8), ((50,), 0.9), ((6, 6), 0.0)]:
        w = rng.normal(size=shape).astype(np.float32)
        original = w.copy()
        got = np.asarray(_returned(answer(w, s), "prune"))
        if not np.array_equal(w, original):
            raise Wrong("prune changed its input: work on a copy.")
        if got.shape != w.shape:
            raise Wrong(f"the result has shape {got.shape}, the input {w.shape}.")
        k = int(round(s * w.size))
        if int((got == 0).sum()) != k:
            raise Wrong(f"with sparsity {s} on {w.size} weights, {k} must be zero, you have {int((got == 0).sum())}.")
        kept = got != 0
        if not np.array_equal(got[kept], w[kept]):
            raise Wrong("the weights you keep must be unchanged.")
        if k and np.abs(w[kept]).min() < np.abs(w[~kept]).max():
            raise Wrong("a weight you zeroed is larger in absolute value than one you kept: sort by |w|.")


# --- chapter 11 -------------------------------------------------------------------------------


@exercise("11.1", hint="s = sorted(latencies); pos = 0.99 * (len(s) - 1); lo = int(pos); return s[lo] + (pos - lo) * "
                       "(s[min(lo + 1, len(s) - 1)] - s[lo]).")
def _ex_11_1(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(13)
    for data in ([5.0], [1.0, 2.0], list(rng.exponential(3, 100)), list(rng.exponential(3, 1001)), [3, 1, 2, 10, 7]):
        got = float(_returned(answer(list(data)), "p99"))
        expected = float(np.percentile(data, 99))
        if not abs(got - expected) <= 1e-9 * max(1.0, abs(expected)):
            raise Wrong(f"for {len(data)} latencies you gave {got:.4f}, the 99th percentile is {expected:.4f}: "
                        "sort first, then interpolate at 0.99 × (n − 1).")


@exercise("11.2", hint="for row in probabilities: k = int(row.argmax()); {'class': k, 'label': labels[k], "
                       "'probabilities': [float(v) for v in row]}: int() and float() turn NumPy scalars into Python ones.")
def _ex_11_2(answer: Any) -> None:
    import json

    import numpy as np

    _callable(answer)
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    got = _returned(answer(p, ["a", "b", "c"]), "to_json")
    try:
        text = json.dumps(got)
    except TypeError as error:
        raise Wrong(f"json.dumps refuses the result ({error}): convert NumPy values with int() and float().") from None
    back = json.loads(text)
    if not isinstance(back, list) or len(back) != 2:
        raise Wrong("return a list with one dictionary per row.")
    for row, expected_class, label, probs in zip(back, (1, 0), ("b", "a"), p):
        if not isinstance(row, dict) or set(row) != {"class", "label", "probabilities"}:
            raise Wrong('each item is a dictionary with exactly "class", "label" and "probabilities".')
        if row["class"] != expected_class or row["label"] != label:
            raise Wrong("the class is the index of the largest probability, the label its name.")
        if not np.allclose(row["probabilities"], probs, atol=1e-6):
            raise Wrong("keep every probability of the row, in order.")


@exercise("11.3", hint="check isinstance(payload, dict), 'instances' in payload, a list of 1 to 64 items, each a str "
                       "with text.strip() and len(text) <= max_length; raise ValueError otherwise.")
def _ex_11_3(answer: Any) -> None:
    _callable(answer)
    good = {"instances": ["很好", "太差了"]}
    got = _returned(answer(good, 10), "validate_text")
    if list(got) != ["很好", "太差了"]:
        raise Wrong("for a valid payload, return its list of texts.")
    bad = [([], "a list instead of an object"), ({}, "no 'instances'"), ({"instances": "很好"}, "a string, not a list"),
           ({"instances": []}, "an empty list"), ({"instances": ["ok"] * 65}, "65 texts"),
           ({"instances": [3]}, "a number"), ({"instances": ["  "]}, "a blank text"),
           ({"instances": ["x" * 11]}, "a text longer than max_length"), (None, "None")]
    for payload, what in bad:
        try:
            answer(payload, 10)
        except ValueError as error:
            if not str(error):
                raise Wrong(f"for {what}, raise ValueError with a message that says what is wrong.") from None
            continue
        except Exception as error:  # noqa: BLE001 - a crash is the wrong answer here
            raise Wrong(f"for {what} your function raised {type(error).__name__}: raise ValueError instead.") from None
        raise Wrong(f"{what} was accepted: raise ValueError.")


# --- chapter 12 -------------------------------------------------------------------------------


@exercise("12.1", hint="total = sum(sizes); [sum(w[i] * n / total for w, n in zip(weight_sets, sizes)) for i in "
                       "range(len(weight_sets[0]))].")
def _ex_12_1(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.federated import average_weights

    _callable(answer)
    rng = np.random.default_rng(14)
    sets = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(4)]
    for sizes in ([10, 10, 10, 10], [100, 1, 50, 7]):
        got = _returned(answer(sets, sizes), "fedavg")
        expected = average_weights(sets, sizes)
        if len(got) != len(expected) or any(np.shape(g) != e.shape for g, e in zip(got, expected)):
            raise Wrong("return one array per layer weight, each with the shape of the inputs' arrays.")
        if not all(np.allclose(g, e) for g, e in zip(got, expected)):
            if all(np.allclose(g, sum(s[i] for s in sets) / 4) for i, g in enumerate(got)):
                raise Wrong("that is the plain mean: weight each client by its number of examples.")
            raise Wrong(f"with sizes {sizes} the average differs: multiply each by n / sum(sizes), then add.")


@exercise("12.2", hint="h = hashlib.sha256(); with open(path, 'rb') as f: for block in iter(lambda: f.read(1 << 20), "
                       "b''): h.update(block); return h.hexdigest().")
def _ex_12_2(answer: Any) -> None:
    import os
    import tempfile

    from bigmodel_utils.data import sha256_file

    _callable(answer)
    with tempfile.TemporaryDirectory() as folder:
        for size in (0, 10, 3 * (1 << 20) + 5):
            path = os.path.join(folder, f"f{size}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            got = _returned(answer(path), "sha256_of")
            if not isinstance(got, str) or got != sha256_file(path):
                raise Wrong(f"for a file of {size} bytes the digest differs: return h.hexdigest(), the hex string.")


@exercise("12.3", hint="keep start and used; for each t: if start is None or t >= start + window: start, used = t, 0; "
                       "then admit if used < quota (and count it).")
def _ex_12_3(answer: Any) -> None:
    _callable(answer)

    def reference(times, quota, window):  # the rule of ApiKeys.admit, with the first window at the first request
        start, used, out = None, 0, []
        for t in times:
            if start is None or t >= start + window:
                start, used = t, 0
            out.append(used < quota)
            used += out[-1]
        return out

    cases = [([0, 1, 2, 3], 2, 10), ([0, 1, 2, 10, 11, 12, 25], 2, 10), ([3, 9.99, 13, 13, 13], 1, 10), ([5], 1, 1),
             ([0, 0, 0, 0, 100], 3, 60)]
    for times, quota, window in cases:
        got = _returned(answer(list(times), quota, window), "admitted")
        expected = reference(times, quota, window)
        if [bool(g) for g in got] != expected:
            raise Wrong(f"for requests at {times}, quota {quota} per {window} s, expected {expected}, got {list(got)}.")


# --- chapter 13 -------------------------------------------------------------------------------


@exercise("13.1", hint="order = np.argsort(-p); before = cumulative mass of the tokens ahead of each one in that order; "
                       "keep where before <= p (so the first is always kept); zero the rest; divide by the sum.")
def _ex_13_1(answer: Any) -> None:
    import numpy as np

    from bigmodel_utils.models.gpt import sampling_probabilities

    _callable(answer)
    rng = np.random.default_rng(13)
    cases = [(np.array([0.5, 0.3, 0.15, 0.05]), 0.7), (np.array([0.5, 0.3, 0.15, 0.05]), 0.5),
             (np.array([0.1, 0.6, 0.3]), 0.01), (np.array([0.25, 0.25, 0.25, 0.25]), 1.0),
             (rng.dirichlet(np.ones(50)), 0.9), (rng.dirichlet(np.full(30, 0.2)), 0.6)]
    for probs, p in cases:
        got = _returned(answer(probs.copy(), p), "top_p_filter")
        got = np.asarray(got, dtype=float)
        expected = sampling_probabilities(np.log(probs), top_p=p)
        if got.shape != probs.shape:
            raise Wrong(f"return a vector of the same length as the input ({probs.shape}), got shape {got.shape}.")
        if np.allclose(got, expected, atol=1e-9):
            continue
        if not np.isclose(got.sum(), 1.0):
            raise Wrong(f"for p = {p} the result sums to {got.sum():.3f}: renormalise what you keep.")
        kept, should = int((got > 0).sum()), int((expected > 0).sum())
        if kept == should - 1:
            raise Wrong(f"for p = {p} you kept {kept} tokens, one too few: keep a token while the mass of the more "
                        "probable ones is at most p (the one that crosses p, and one that lands exactly on it, stay).")
        raise Wrong(f"for probabilities {np.round(probs[:6], 3)}... and p = {p} you kept {kept} tokens, expected {should}.")


@exercise("13.2", hint="2 (keys and values) x layers x heads x head size x positions x sequences x 2 bytes.")
def _ex_13_2(answer: Any) -> None:
    from bigmodel_utils.scale import kv_cache_bytes

    if answer is None or answer is Ellipsis:
        raise Wrong("no answer yet: compute the number of bytes.")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise Wrong(f"answer with a number of bytes, not {answer!r}.")
    expected = kv_cache_bytes(96, 96, 128, 2048, batch=1, bytes_per_value=2)
    if abs(answer - expected) <= 1e-6 * expected:
        return
    if abs(answer - expected / 2) <= 1e-6 * expected:
        raise Wrong("that is half of it: the cache keeps keys *and* values.")
    if abs(answer - 2 * expected) <= 1e-6 * expected:
        raise Wrong("twice too much: 16-bit numbers take 2 bytes each, and the cache holds keys and values once each.")
    raise Wrong(f"{answer:,.0f} bytes is {'too much' if answer > expected else 'too little'}: multiply every factor once.")


@exercise("13.3", hint="total nats = nll * tokens; per character: divide by characters; in bits: divide by ln 2.")
def _ex_13_3(answer: Any) -> None:
    import math

    _callable(answer)
    for nll, tokens, characters in [(2.0, 100, 150), (4.1, 5000, 7300), (1.0, 10, 10)]:
        got = _returned(answer(nll, tokens, characters), "bits_per_character")
        expected = nll * tokens / characters / math.log(2)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"return a number, not {got!r}.")
        if math.isclose(got, expected, rel_tol=1e-9):
            continue
        if math.isclose(got, nll * tokens / characters, rel_tol=1e-9):
            raise Wrong("that is nats per character: convert to bits (divide by ln 2).")
        if math.isclose(got, nll / math.log(2), rel_tol=1e-9):
            raise Wrong("that is bits per *token*: a token covers several characters here; spread the total over them.")
        raise Wrong(f"for nll={nll}, {tokens} tokens, {characters} characters expected {expected:.4f}, got {got!r}.")


@exercise("13.4", hint="count every pair of neighbouring characters over all four texts; the most frequent is merged first.")
def _ex_13_4(answer: Any) -> None:
    from bigmodel_utils.models.bpe import train_bpe

    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("pass (your answer, texts), as the cell does.")
    value, texts = answer
    if value is None or value is Ellipsis:
        raise Wrong("no answer yet: count the pairs.")
    if not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise Wrong(f"answer with a tuple of two strings such as ('酒', '店'), not {value!r}.")
    merges = train_bpe(texts, 2 + len(set("".join(texts))) + 1).merges
    if not merges:
        raise Wrong("in these texts no pair of neighbours occurs twice, so BPE merges nothing: use the texts given.")
    expected = merges[0]
    if value != expected:
        raise Wrong(f"{value[0]}{value[1]} is not the most frequent pair: count each text's pairs, overlapping ones too.")


# --- chapter 14 -------------------------------------------------------------------------------


@exercise("14.1", hint="A is d_in x r and B is r x d_out: r * (d_in + d_out) numbers, whatever the size of W.")
def _ex_14_1(answer: Any) -> None:
    _callable(answer)
    for d_in, d_out, rank in [(128, 512, 8), (512, 128, 4), (4096, 4096, 16), (10, 3, 1)]:
        got = _returned(answer(d_in, d_out, rank), "lora_parameters")
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"return a number of parameters, not {got!r}.")
        expected = rank * (d_in + d_out)
        if got == expected:
            continue
        if got == d_in * d_out:
            raise Wrong("that is the size of W itself, which LoRA freezes: count A and B.")
        if got in (rank * d_in, rank * d_out):
            raise Wrong("that counts one of the two matrices: A (d_in x r) and B (r x d_out) are both trained.")
        if got == d_in * d_out * rank:
            raise Wrong("A·B has d_in x d_out entries, but LoRA stores A and B, not their product.")
        raise Wrong(f"for d_in={d_in}, d_out={d_out}, r={rank} expected {expected:,}, got {got!r}.")


@exercise("14.2", hint="W + (alpha / rank) * (A @ B): the product has W's shape.")
def _ex_14_2(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(14)
    for d_in, d_out, rank, alpha in [(6, 4, 2, 4.0), (5, 7, 3, 3.0), (8, 8, 1, 16.0)]:
        W, A, B = rng.normal(size=(d_in, d_out)), rng.normal(size=(d_in, rank)), rng.normal(size=(rank, d_out))
        got = np.asarray(_returned(answer(W.copy(), A.copy(), B.copy(), alpha, rank), "merge"), dtype=float)
        expected = W + alpha / rank * A @ B
        if got.shape != W.shape:
            raise Wrong(f"the merged kernel must have W's shape {W.shape}, got {got.shape}.")
        if np.allclose(got, expected):
            continue
        if np.allclose(got, W + A @ B):
            raise Wrong("the scale is missing: LoRA adds (alpha / rank) * A @ B.")
        if np.allclose(got, W + rank / alpha * A @ B):
            raise Wrong("the scale is upside down: alpha / rank, not rank / alpha.")
        if np.allclose(got, A @ B):
            raise Wrong("that is the update alone: add it to W.")
        raise Wrong(f"for rank {rank} and alpha {alpha} the merged kernel differs from W + (alpha / rank) A @ B.")


@exercise("14.3", hint="p = k/n; centre (p + z²/2n) / (1 + z²/n); half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).")
def _ex_14_3(answer: Any) -> None:
    import math

    from scipy.stats import binomtest

    _callable(answer)
    for k, n in [(170, 200), (100, 200), (200, 200), (0, 50), (7, 10)]:
        got = _returned(answer(k, n), "wilson")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong(f"return (low, high), not {got!r}.")
        low, high = (float(v) for v in got)
        ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
        if math.isclose(low, ci.low, abs_tol=2e-4) and math.isclose(high, ci.high, abs_tol=2e-4):
            continue
        p = k / n
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        if math.isclose(low, p - half, abs_tol=2e-4) and math.isclose(high, p + half, abs_tol=2e-4):
            raise Wrong(f"that is the normal (Wald) interval: for {k} of {n} it is "
                        f"{'empty' if half == 0 else 'too narrow near 0 and 1'}; Wilson's moves the centre toward 1/2.")
        raise Wrong(f"for {k} of {n} expected ({ci.low:.4f}, {ci.high:.4f}), got ({low:.4f}, {high:.4f}).")


# --- chapter 15 -------------------------------------------------------------------------------


@exercise("15.1", hint="small = capacity[capacity['training images'] == capacity['training images'].min()]; "
                       "small.loc[small['test accuracy'].idxmax(), 'width'].")
def _ex_15_1(answer: Any) -> None:
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("pass (your answer, capacity), as the cell does.")
    value, table = answer
    if value is None or value is Ellipsis:
        raise Wrong("no answer yet: compute the width from the capacity table.")
    small = table[table["training images"] == table["training images"].min()]
    expected = int(small.loc[small["test accuracy"].idxmax(), "width"])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise Wrong(f"answer with a width (a whole number), not {value!r}.")
    if int(value) != expected:
        best_overall = int(table.loc[table["test accuracy"].idxmax(), "width"])
        why = " That is the best on all the data; look at the small training set only." if value == best_overall else ""
        raise Wrong(f"width {int(value)} is not the best on the small training set.{why}")


@exercise("15.2", hint="out = np.zeros_like(images); copy images[:, :h-dy, :w-dx] into out[:, dy:, dx:] for positive "
                       "shifts (and the mirror for negative ones).")
def _ex_15_2(answer: Any) -> None:
    import numpy as np

    _callable(answer)
    rng = np.random.default_rng(15)
    images = rng.random((3, 8, 8, 1)).astype(np.float32)

    def reference(x, dx, dy):
        out = np.zeros_like(x)
        h, w = x.shape[1:3]
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[:, yd, xd] = x[:, ys, xs]
        return out

    for dx, dy in [(1, 0), (0, 1), (-2, 0), (0, -1), (1, -1), (0, 0)]:
        got = np.asarray(_returned(answer(images, dx, dy), "shift"))
        expected = reference(images, dx, dy)
        if got.shape != images.shape:
            raise Wrong(f"the result has shape {got.shape}, expected {images.shape}.")
        if not np.allclose(got, expected):
            if np.allclose(got, np.roll(np.roll(images, dx, axis=2), dy, axis=1)):
                raise Wrong("that wraps pixels around like np.roll: the pixels that enter must be 0.")
            raise Wrong(f"shift by dx={dx}, dy={dy} differs: dx moves right along axis 2, dy moves down along axis 1.")
