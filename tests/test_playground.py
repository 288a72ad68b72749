"""The chapters' widgets: the play() machinery, and every plain function a widget calls (issue 17).

A widget only calls a function; these tests call the same functions without a browser. The one real-browser test
that moves a slider in JupyterLab is in tests/test_lab.py.
"""

from __future__ import annotations

import re
import warnings

import ipywidgets as widgets
import nbformat
import numpy as np
import pytest

from bigmodel_utils import scale, scratch
from bigmodel_utils.book import chapter_paths
from bigmodel_utils.playground import Playground, play


# --- play() ---------------------------------------------------------------------------------------------------


def test_play_shows_the_first_result_and_recomputes_when_a_control_moves():
    calls = []

    def view(x, word):
        calls.append((x, word))
        return f"{word} {x * 2}"

    p = play(view, x=widgets.IntSlider(value=3, min=0, max=10), word=widgets.Text(value="double"))
    assert p.latest == "double 6" and p.error is None and calls == [(3, "double")]
    p.controls["x"].value = 5
    assert p.latest == "double 10" and calls[-1] == (5, "double")
    p.controls["word"].value = "twice"
    assert p.latest == "twice 10" and p.calls == 3


def test_play_turns_bad_input_into_a_message_and_recovers():
    def view(n):
        if n < 0:
            raise ValueError("n must be non-negative")
        return n

    p = play(view, n=widgets.IntText(value=1))
    p.controls["n"].value = -1
    assert p.latest is None and p.error == "ValueError: n must be non-negative"
    p.controls["n"].value = 2
    assert p.latest == 2 and p.error is None


def test_play_does_not_hide_a_bug():
    def view(n):
        return {}[n]  # a KeyError is a bug in the view, not bad input: it must surface

    with pytest.raises(KeyError):
        play(view, n=widgets.IntText(value=1))


def test_play_rejects_what_is_not_a_control():
    with pytest.raises(TypeError, match="ipywidgets control"):
        play(lambda n: n, n=3)
    with pytest.raises(ValueError, match="at least one control"):
        play(lambda: 1)
    with pytest.raises(TypeError, match="function"):
        Playground("not callable", {"n": widgets.IntText()})


def test_sliders_update_on_release_unless_asked():
    assert play(lambda n: n, n=widgets.IntSlider()).controls["n"].continuous_update is False
    assert play(lambda n: n, continuous=True, n=widgets.IntSlider()).controls["n"].continuous_update is True


def test_a_figure_is_closed_so_the_inline_backend_does_not_show_it_twice():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def view(n):
        fig, ax = plt.subplots()
        ax.plot(range(n))
        return fig

    before = len(plt.get_fignums())
    p = play(view, n=widgets.IntSlider(value=3, min=1, max=5))
    p.controls["n"].value = 4
    assert len(plt.get_fignums()) == before and p.latest.axes[0].lines[0].get_xdata().size == 4


def test_a_view_that_fails_leaves_no_figure_open():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def view(n):
        plt.subplots()
        if n > 2:
            raise ValueError("too many")
        return "fine"

    before = len(plt.get_fignums())
    p = play(view, n=widgets.IntSlider(value=1, max=5))
    p.controls["n"].value = 4
    assert p.error == "ValueError: too many" and len(plt.get_fignums()) == before


def test_the_static_page_gets_a_note_with_the_values_shown():
    p = play(lambda lr: lr, lr=widgets.FloatSlider(value=0.25, description="learning rate"))
    assert p.note() == "Controls (live in JupyterLab; shown here with learning rate = 0.25)"


def test_display_updates_the_same_output_in_place(monkeypatch):
    """In a kernel the first result is displayed with a display id, and every change updates that display."""
    from IPython.core.interactiveshell import InteractiveShell

    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(repr(obj))

    def fake_display(obj, **kwargs):
        shown.append((obj, kwargs))
        return Handle() if kwargs.get("display_id") else None

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", fake_display)
    InteractiveShell.instance()
    p = play(lambda n: f"n is {n}", n=widgets.IntSlider(value=1))
    p._ipython_display_()
    bundle, kwargs = shown[0]
    assert kwargs == {"raw": True}
    assert {"application/vnd.jupyter.widget-view+json", "text/html", "text/plain"} <= set(bundle)
    assert "live in JupyterLab" in bundle["text/html"]
    assert repr(shown[1][0]) == "n is 1" and shown[1][1] == {"display_id": True}  # shown as text, not as 'n is 1'
    p.controls["n"].value = 7
    assert updates == ["n is 7"]


# --- the chapters use play() where the issue asks ----------------------------------------------------------------


WIDGET_CHAPTERS = {"01", "02", "05", "06", "07", "08", "10", "13"}


def test_eight_chapters_have_a_widget_and_say_how_to_use_it():
    found = {}
    for path in chapter_paths():
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code" and re.search(r"^play\(", c.source, re.M)]
        if cells:
            found[path.name[:2]] = cells
            index = nb.cells.index(cells[0])
            assert nb.cells[index - 1].cell_type == "markdown" and "JupyterLab" in nb.cells[index - 1].source, (
                f"{path.name}: say above the widget that it is live in JupyterLab and what to try")
    assert WIDGET_CHAPTERS <= set(found), f"chapters without a widget: {sorted(WIDGET_CHAPTERS - set(found))}"


# --- the functions the widgets call ------------------------------------------------------------------------------


def test_training_plan_is_the_chapters_arithmetic():
    plan = scale.training_plan(7e9, 140e9, 64, 312e12, 0.4)
    assert plan["flops"] == 6 * 7e9 * 140e9
    assert plan["days"] == pytest.approx(6 * 7e9 * 140e9 / (64 * 312e12 * 0.4) / 86_400)
    assert plan["training_state_bytes"] == 16 * 7e9
    assert plan["devices_to_hold_state"] == 2  # 112 GB of state over 80 GiB devices
    assert scale.training_plan(1e9, 1e9, 1, 1e12, 1.0)["devices_to_hold_state"] == 1
    for bad in [dict(n_devices=0), dict(n_devices=2.5), dict(utilisation=0), dict(utilisation=1.5), dict(flops_per_device=0)]:
        with pytest.raises(ValueError):
            scale.training_plan(**{**dict(n_params=1e9, n_tokens=1e9, n_devices=1, flops_per_device=1e12, utilisation=0.5), **bad})


def test_optimizer_path_converges_below_the_limit_and_diverges_above():
    x, y = scratch.line_data(seed=0)
    loss_grad = lambda t: scratch.line_loss_and_grad(t, x, y)  # noqa: E731
    limit = 2 / np.linalg.eigvalsh(scratch.line_hessian(x)).max()
    start = np.array([-2.0, 8.0])
    below = scratch.optimizer_path(scratch.GradientDescent(0.9 * limit), loss_grad, start, 200)
    above = scratch.optimizer_path(scratch.GradientDescent(1.1 * limit), loss_grad, start, 200)
    assert below.shape == (201, 2) and np.array_equal(below[0], start)
    assert loss_grad(below[-1])[0] < loss_grad(start)[0] < loss_grad(above[-1])[0]
    # the path is the optimizer's steps, one full-batch gradient each
    theta = start.copy()
    for _ in range(3):
        theta = theta - 0.9 * limit * loss_grad(theta)[1]
    assert np.allclose(below[3], theta)
    runaway = scratch.optimizer_path(scratch.GradientDescent(1e6), loss_grad, start, 10_000)
    assert not np.all(np.isfinite(runaway[-1])) and len(runaway) < 10_001, "stops at the first non-finite point"
    with pytest.raises(ValueError):
        scratch.optimizer_path(scratch.GradientDescent(0.1), loss_grad, start, -1)


def test_parse_kernel_reads_rows_and_explains_mistakes():
    from bigmodel_utils.models.vision import parse_kernel

    assert np.array_equal(parse_kernel("-1 0 1; -2 0 2; -1 0 1"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    assert np.allclose(parse_kernel("1/9, 1/9, 1/9\n1/9 1/9 1/9;1/9 1/9 1/9"), np.full((3, 3), 1 / 9))
    assert parse_kernel("1 2 3; 4 5 6; 7 8 9").dtype == np.float32
    assert parse_kernel("3.4028235e38 0 0; 0 0 0; 0 0 0")[0, 0] == np.finfo(np.float32).max  # as NumPy prints it
    for bad, message in [("1 2; 3 4; 5 6", "row 1 .* 2 numbers"), ("1 2 3; 4 5 6", "2 rows"),
                         ("1 x 3; 4 5 6; 7 8 9", "'x' in row 1"), ("1/0 0 0; 0 0 0; 0 0 0", "not a number"),
                         ("inf 0 0; 0 0 0; 0 0 0", "not a finite"), ("1e39 0 0; 0 0 0; 0 0 0", "not a finite"),
                         ("", "0 rows")]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the message is the whole answer: no NumPy overflow warning beside it
            with pytest.raises(ValueError, match=message):
                parse_kernel(bad)
    with pytest.raises(TypeError):
        parse_kernel([[1, 0, 0]] * 3)


def test_score_review_puts_models_side_by_side():
    from bigmodel_utils.models.text import score_review

    table = score_review("很好", {"always 0.9": lambda texts: [0.9] * len(texts), "length": lambda t: [len(t[0]) / 10]})
    assert list(table.index) == ["always 0.9", "length"]
    assert table["P(positive)"].tolist() == [0.9, 0.2] and table["verdict"].tolist() == ["positive", "negative"]
    for text in ["", "   "]:
        with pytest.raises(ValueError, match="empty"):
            score_review(text, {"m": lambda t: [0.5]})
    with pytest.raises(ValueError, match="characters"):
        score_review("好" * 3000, {"m": lambda t: [0.5]})
    with pytest.raises(TypeError):
        score_review(None, {"m": lambda t: [0.5]})
    with pytest.raises(ValueError, match="one probability"):
        score_review("好", {"broken": lambda t: [1.5]})


def test_threshold_report_matches_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    from bigmodel_utils.evaluation import threshold_report

    r = threshold_report([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9], 0.5)  # by hand: TN 1, FP 1, FN 1, TP 2
    assert r["confusion"].tolist() == [[1, 1], [1, 2]] and r["called_positive"] == 3
    assert (r["precision"], r["recall"], r["accuracy"]) == pytest.approx((2 / 3, 2 / 3, 3 / 5))
    rng = np.random.default_rng(17)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, 300), 0, 1)
    for threshold in (0.0, 0.2, 0.5, 0.77, 1.0, 1.5):
        r = threshold_report(labels, scores, threshold)
        pred = (scores >= threshold).astype(int)
        assert np.array_equal(r["confusion"], confusion_matrix(labels, pred, labels=[0, 1]))
        assert r["precision"] == pytest.approx(precision_score(labels, pred, zero_division=0))
        assert r["recall"] == pytest.approx(recall_score(labels, pred))
        assert r["f1"] == pytest.approx(f1_score(labels, pred, zero_division=0))
        assert r["accuracy"] == pytest.approx(accuracy_score(labels, pred)) and r["called_positive"] == pred.sum()
    for bad in [([0, 1], [0.5]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, np.nan]), ([], [])]:
        with pytest.raises(ValueError):
            threshold_report(*bad, 0.5)


def test_fake_quantize_at_8_bits_is_keras_int8():
    import keras

    from bigmodel_utils.compress import fake_quantize

    w = np.random.default_rng(3).normal(size=(3, 3, 4, 16)).astype(np.float32)
    q, s = keras.quantizers.abs_max_quantize(w, axis=(0, 1, 2), to_numpy=True)
    assert np.allclose(fake_quantize(w, 8), np.asarray(q, np.float32) / np.asarray(s), atol=1e-6)
    # by hand, per output channel: round(w / step) * step with step = max|w| / 127
    step8 = np.abs(w).max(axis=(0, 1, 2)) / 127
    assert np.allclose(fake_quantize(w, 8), np.round(w / step8) * step8, atol=1e-5)
    errors = [np.abs(fake_quantize(w, b) - w).max() for b in range(2, 9)]
    assert all(a > b for a, b in zip(errors, errors[1:])), "more bits, smaller error"
    step = np.abs(w).max(axis=(0, 1, 2)) / 7  # 4 bits: levels -7..7 per output channel
    assert (np.abs(fake_quantize(w, 4) - w) <= step / 2 + 1e-6).all()
    assert len(np.unique(fake_quantize(w, 2)[..., 0])) <= 3
    assert np.array_equal(fake_quantize(np.zeros((2, 3)), 4), np.zeros((2, 3)))
    for bits in (1, 9, 4.5, True):
        with pytest.raises(ValueError, match="bits"):
            fake_quantize(w, bits)
    for bad_axis in (4, -5, 1.0):
        with pytest.raises(ValueError, match="axis"):
            fake_quantize(w, 8, axis=bad_axis)
    with pytest.raises(ValueError, match="two axes"):
        fake_quantize(np.ones(5), 8)


def test_sample_text_follows_the_settings():
    import keras

    from bigmodel_utils.models.bert import CharTokenizer
    from bigmodel_utils.models.gpt import build_gpt, generate, greedy, numpy_weights, sample_text

    tokenizer = CharTokenizer.fit(["这家酒店很好", "这本书不错"] * 3, min_count=1)
    keras.utils.set_random_seed(0)
    weights = numpy_weights(build_gpt(len(tokenizer), 16, d_model=16, n_layers=1, n_heads=2))
    same = sample_text(weights, tokenizer, "这家", 1.0, 0, 0.9, max_new_tokens=8, seed=3)
    assert same == sample_text(weights, tokenizer, "这家", 1.0, 0, 0.9, max_new_tokens=8, seed=3)
    assert sample_text(weights, tokenizer, "这家", 1.0, 1, 1.0, max_new_tokens=8, seed=5) == generate(
        weights, tokenizer, "这家", 8, greedy), "top-k 1 is greedy decoding"
    for bad in [dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(temperature=0.0)]:
        with pytest.raises(ValueError):
            sample_text(weights, tokenizer, "这家", **{**dict(max_new_tokens=4), **bad})
    with pytest.raises(TypeError):
        sample_text(weights, tokenizer, None)


def test_fill_in_blank_checks_its_input():
    import keras

    from bigmodel_utils.models.bert import SPECIAL_TOKENS, CharTokenizer, build_mlm_model, fill_in_blank
    from bigmodel_utils.models.transformer import build_encoder

    tokenizer = CharTokenizer.fit(["这家酒店很好", "这本书不错"] * 3, min_count=1)
    keras.utils.set_random_seed(0)
    encoder = build_encoder(len(tokenizer), 16, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    mlm = build_mlm_model(encoder, len(tokenizer), 4)
    guesses = fill_in_blank(mlm, tokenizer, "这家酒店", 1, top=3, seq_len=16)
    assert len(guesses) == 3 and not set(guesses) & set(SPECIAL_TOKENS)

    seen = {}

    class FakeMLM:  # records what it is given; scores the special tokens highest, then "好", then "店"
        inputs = mlm.inputs

        def __call__(self, inputs, training=False):
            seen["ids"], seen["positions"] = (np.array(x) for x in inputs)
            logits = np.zeros((1, 4, len(tokenizer)), np.float32)
            logits[..., : len(SPECIAL_TOKENS)] = 10.0
            logits[..., tokenizer.vocabulary.index("好")] = 5.0
            logits[..., tokenizer.vocabulary.index("店")] = 4.0
            return logits

    assert fill_in_blank(FakeMLM(), tokenizer, "这家酒店", 2, top=2, seq_len=16) == ["好", "店"]
    assert seen["ids"][0, 3] == tokenizer.mask_id and seen["positions"][0, 0] == 3, "position 0 holds [CLS]"
    assert tokenizer.decode(seen["ids"][0]) == "这家店", "only the hidden character is masked" 
    for text, index, message in [("", 0, "type a sentence"), ("这家", 2, "index"), ("这家", -1, "index"),
                                 ("好" * 20, 0, "reads 14 characters")]:
        with pytest.raises(ValueError, match=message):
            fill_in_blank(mlm, tokenizer, text, index, seq_len=16)
