"""bigmodel_utils.plots and .models: right output, clear errors on bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from bigmodel_utils.models import build_digits_cnn, build_mlp, prepare_images
from bigmodel_utils.models.vision import first_bad_pixel
from bigmodel_utils.paths import model_path
from bigmodel_utils.plots import image_grid, plot_confusion_matrix, plot_history


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


# --- prepare_images -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 8), (3, 8, 8), (3, 8, 8, 1)])
def test_prepare_images_accepts_the_usual_shapes(shape):
    out = prepare_images(np.full(shape, 0.5))
    assert out.dtype == np.float32 and out.shape[1:] == (8, 8, 1)
    assert prepare_images(np.zeros((2, 28, 28)), image_shape=(28, 28)).shape == (2, 28, 28, 1)
    assert prepare_images([[0.0] * 8] * 8).shape == (1, 8, 8, 1)  # nested lists, as JSON delivers them


@pytest.mark.parametrize(
    "value, error, message",
    [
        (np.zeros((2, 5, 5)), ValueError, "expected grey images of 8x8"),
        (np.zeros((2, 8, 8, 3)), ValueError, "expected grey images"),
        (np.zeros((0, 8, 8)), ValueError, "expected grey images"),
        (np.zeros(64), ValueError, "expected grey images"),
        (np.full((1, 8, 8), np.nan), ValueError, "NaN or infinite"),
        (np.full((1, 8, 8), np.inf), ValueError, "NaN or infinite"),
        (np.full((1, 8, 8), 16.0), ValueError, r"must lie in \[0.0, 1.0\]"),
        ([["a"] * 8] * 8, TypeError, "numbers"),
        ([[0.0] * 8, [0.0] * 7], TypeError, "numbers"),  # ragged rows
        ([[10**400] * 8] * 8, ValueError, "too large for a float"),  # Python ints have no limit; floats have one
    ],
)
def test_prepare_images_refuses_bad_input_clearly(value, error, message):
    with pytest.raises(error, match=message):
        prepare_images(value)


def test_first_bad_pixel_is_the_one_pixel_rule():
    images = np.full((3, 8, 8), 0.5)
    assert first_bad_pixel(images) is None and first_bad_pixel(np.zeros((0, 8, 8))) is None
    images[2, 1, 5], images[1, 7, 7] = np.inf, 1.5
    assert first_bad_pixel(images) == (1, 7, 7), "the first in reading order"
    assert first_bad_pixel(images, value_range=(0, 2)) == (2, 1, 5), "infinity is never a pixel value"
    images[0, 0, 3] = np.nan
    assert first_bad_pixel(images) == (0, 0, 3)
    with pytest.raises(ValueError, match=r"image 1, pixel \(7, 7\) = 1.5"):  # prepare_images names it
        prepare_images(np.where(np.isfinite(images), images, 0.5))


# --- model builders -------------------------------------------------------------------------------


def test_build_mlp_binary_and_multiclass():
    binary = build_mlp((12,), 1, hidden=(128, 64))
    assert binary.count_params() == (12 * 128 + 128) + (128 * 64 + 64) + (64 + 1)
    assert binary.layers[-1].activation.__name__ == "sigmoid"
    images = build_mlp((8, 8), 10, hidden=(32,), dropout=0.5, l2=1e-3)
    assert images.count_params() == 64 * 32 + 32 + 32 * 10 + 10
    assert images.layers[-1].activation.__name__ == "softmax"
    assert images.predict(np.zeros((2, 8, 8)), verbose=0).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs",
    [dict(input_shape=(), n_outputs=2), dict(input_shape=(0,), n_outputs=2), dict(input_shape=(4,), n_outputs=0),
     dict(input_shape=(4,), n_outputs=2, hidden=(0,)), dict(input_shape=(4,), n_outputs=2, dropout=1.0),
     dict(input_shape=(4,), n_outputs=2, l2=-1.0)],
)
def test_build_mlp_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"\w"):
        build_mlp(**kwargs)


def test_digits_cnn_shapes_augmentation_and_round_trip(tmp_path):
    import keras

    model = build_digits_cnn(augment=True)
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (4, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # augmentation layers are the identity at inference: the same input gives the same output twice
    assert np.allclose(probs, keras.ops.convert_to_numpy(model(x, training=False)))
    path = tmp_path / "cnn.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    assert np.allclose(keras.ops.convert_to_numpy(again(x, training=False)), probs, atol=1e-6)
    with pytest.raises(ValueError):
        model.predict(np.zeros((1, 5, 5, 1)), verbose=0)  # a wrong shape fails in Keras, too


@pytest.mark.parametrize("kwargs", [dict(input_shape=(8, 8)), dict(input_shape=(2, 2, 1)), dict(n_classes=1)])
def test_digits_cnn_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"\w"):
        build_digits_cnn(**kwargs)


def test_model_path(data_cache):
    p = model_path("digits_cnn.keras")
    assert p.parent == data_cache / "models" and p.parent.is_dir()
    for bad in ["", "../x.keras", "a/b.keras", ".hidden"]:
        with pytest.raises(ValueError):
            model_path(bad)


# --- plots ----------------------------------------------------------------------------------------


def test_plot_history_draws_train_and_validation():
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7], "learning_rate": [1e-3, 1e-3]}
    fig = plot_history(hist, metrics=("loss", "accuracy", "learning_rate"))
    axes = fig.axes
    assert len(axes) == 3 and len(axes[0].lines) == 2 and len(axes[2].lines) == 1
    with pytest.raises(KeyError, match="available"):
        plot_history(hist, metrics=("auc",))
    with pytest.raises(TypeError):
        plot_history([1, 2, 3])


def test_image_grid_marks_mistakes():
    imgs = np.zeros((5, 8, 8))
    fig = image_grid(imgs, labels=[1, 2, 3, 4, 5], predictions=[1, 2, 0, 4, 5], ncols=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["1", "2", "3→0", "4", "5"]
    red = [ax for ax in fig.axes if ax.get_title() == "3→0"][0]
    assert red.title.get_color() == "tab:red"
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        image_grid(imgs, labels=[1, 2, 3, 4])
    with pytest.raises(ValueError):
        image_grid(np.zeros((0, 8, 8)))


def test_confusion_matrix_counts():
    fig = plot_confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], class_names=["a", "b", "c"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["1", "1", "0", "0", "1", "0", "0", "0", "1"]
    with pytest.raises(ValueError, match="same length"):
        plot_confusion_matrix([0, 1], [0])


def test_token_labels_never_floods_missing_glyph_warnings(monkeypatch, capsys):
    import warnings

    import matplotlib.pyplot as plt

    from bigmodel_utils import plots

    assert plots.token_labels(["the", "cat"]) == (["the", "cat"], {})  # no CJK: nothing to do
    monkeypatch.setattr(plots, "find_cjk_font", lambda candidates=plots.CJK_FONTS: None)
    monkeypatch.setattr(plots, "_cjk_note_shown", False)
    labels, kwargs = plots.token_labels(list("这本书很好"))
    assert labels == ["0", "1", "2", "3", "4"] and kwargs == {}
    plots.token_labels(list("质量太差"))
    assert capsys.readouterr().out.count("note: no font with Chinese") == 1  # one note, not one per call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing-glyph warning would fail the test
        fig, ax = plt.subplots()
        ax.set_xticks(range(5), labels, **kwargs)
        fig.canvas.draw()
    monkeypatch.setattr(plots, "find_cjk_font", lambda candidates=plots.CJK_FONTS: "Some CJK Font")
    assert plots.token_labels(list("好")) == (["好"], {"fontfamily": "Some CJK Font"})
