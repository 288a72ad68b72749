"""Quantization, pruning, distillation and measurement helpers of chapter 10, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils import compress
from bigmodel_utils.compress import (Distiller, LiteRTModel, MagnitudePruning, compressed_size, latency_ms,
                                     magnitude_masks, polynomial_sparsity, sparsity, to_litert)

keras = compress.keras


def _tiny_cnn(seed=0):
    from bigmodel_utils.models import build_digits_cnn

    keras.utils.set_random_seed(seed)
    return build_digits_cnn((8, 8, 1), filters=(4, 8), dense=16, dropout=0.0)


def _images(n=40, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def cnn():
    return _tiny_cnn()


@pytest.mark.parametrize("mode", compress.LITERT_MODES)
def test_every_litert_mode_runs_and_stays_close_to_keras(cnn, mode):
    x = _images()
    expected = keras.ops.convert_to_numpy(cnn(x))
    model = LiteRTModel(to_litert(cnn, mode, representative=_images(100, seed=1)))
    got = model(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    tolerance = {"float32": 1e-5, "float16": 1e-2, "dynamic": 0.05, "int8": 0.05}[mode]
    assert np.abs(got - expected).max() < tolerance
    if mode == "int8":
        assert model.input_dtype == np.int8


def test_quantized_files_are_smaller():
    from bigmodel_utils.models import build_digits_cnn

    # the book's CNN: big enough that the converter quantizes its tensors (it skips tiny ones)
    model = build_digits_cnn((8, 8, 1))
    sizes = {mode: len(to_litert(model, mode, representative=_images())) for mode in compress.LITERT_MODES}
    assert sizes["dynamic"] < sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float16"]
    assert sizes["int8"] < 0.35 * sizes["float32"]


def test_litert_errors_say_what_to_do(cnn, tmp_path):
    with pytest.raises(ValueError, match="representative"):
        to_litert(cnn, "int8")
    with pytest.raises(ValueError, match="mode must be one of"):
        to_litert(cnn, "int4")
    with pytest.raises(FileNotFoundError, match="to_litert"):
        LiteRTModel(tmp_path / "missing.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(to_litert(cnn, "float32")[:200])
    with pytest.raises(ValueError, match="truncated"):
        LiteRTModel(broken)
    model = LiteRTModel(to_litert(cnn, "float32"))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\)"):
        model.predict_one(np.zeros((28, 28, 1), np.float32))


def test_magnitude_masks_zero_the_smallest_share():
    w = np.arange(1, 11, dtype=np.float32).reshape(2, 5) * np.array([1, -1] * 5, dtype=np.float32).reshape(2, 5)
    (mask,) = magnitude_masks([w], 0.3)
    assert mask.sum() == 7 and (mask.ravel()[:3] == 0).all()  # |1|, |2|, |3| go
    assert sparsity([w * mask]) == pytest.approx(0.3)
    assert magnitude_masks([w], 0.0)[0].all()
    with pytest.raises(ValueError):
        magnitude_masks([w], 1.0)


def test_polynomial_schedule_rises_to_the_target():
    values = [polynomial_sparsity(s, 0.8, begin=10, end=110) for s in (0, 10, 60, 110, 500)]
    assert values[0] == values[1] == 0.0 and 0.6 < values[2] < 0.8 and values[3] == values[4] == pytest.approx(0.8)
    with pytest.raises(ValueError):
        polynomial_sparsity(0, 0.5, begin=5, end=5)


def test_pruning_callback_reaches_and_keeps_the_sparsity():
    model = _tiny_cnn()
    x, y = _images(64), np.arange(64) % 10
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[MagnitudePruning(0.75, end_step=6, frequency=2)])
    assert sparsity(model) == pytest.approx(0.75, abs=0.01)
    biases = [w for w in model.trainable_weights if w.path.endswith("bias")]
    assert all(np.count_nonzero(b.numpy()) > 0 for b in biases), "biases are not pruned"
    with pytest.raises(ValueError):
        MagnitudePruning(1.5, end_step=10)


def test_zeros_compress():
    model = _tiny_cnn()
    before = compressed_size(model)
    for w in compress.prunable_weights(model):
        w.assign(np.zeros(w.shape, np.float32))
    assert compressed_size(model) < 0.3 * before


def test_distiller_trains_the_student_and_freezes_the_teacher():
    teacher, student = _tiny_cnn(0), _tiny_cnn(1)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student_weights = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = distiller.fit(_images(64), np.arange(64) % 10, epochs=3, batch_size=16, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(teacher.get_weights(), teacher_weights))
    assert any(not np.array_equal(a, b) for a, b in zip(student.get_weights(), student_weights))
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(ValueError):
        Distiller(student, teacher, temperature=0)
    with pytest.raises(ValueError):
        Distiller(student, teacher, alpha=2)


def test_distillation_loss_is_zero_soft_part_when_student_equals_teacher():
    teacher = _tiny_cnn(0)
    x = _images(8)
    distiller = Distiller(teacher, teacher, temperature=2.0, alpha=0.0)
    loss = float(distiller.compute_loss(x=x, y=np.zeros(8, int), y_pred=teacher(x)))
    assert abs(loss) < 1e-4


def test_latency_is_positive_and_checks_its_input():
    assert latency_ms(lambda x: x.sum(), np.ones((3, 4)), repeats=5, warmup=1) > 0
    with pytest.raises(ValueError):
        latency_ms(lambda x: x, np.ones((0, 4)))
