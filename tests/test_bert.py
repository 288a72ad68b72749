"""The mini-BERT pieces of chapter 07: tokenizer, MLM targets, heads, attention maps."""

from __future__ import annotations

import numpy as np
import pytest

from bigmodel_utils.models.bert import SPECIAL_TOKENS, CharTokenizer, chunk_texts, mlm_targets


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.fit(["好书好书", "质量很好", "很差"], max_size=50, min_count=1)


def test_tokenizer_round_trip_and_specials(tok, tmp_path):
    assert tuple(tok.vocabulary[:5]) == SPECIAL_TOKENS and tok.vocabulary[5] == "好"  # most frequent first
    ids = tok.encode(["好书", "很差吗"], seq_len=6)
    assert ids.dtype == np.int32 and ids.shape == (2, 6)
    assert ids[0].tolist()[:4] == [tok.cls_id, tok.vocabulary.index("好"), tok.vocabulary.index("书"), tok.sep_id]
    assert ids[0, 4:].tolist() == [0, 0]
    assert ids[1, 3] == tok.unk_id  # 吗 was never seen
    assert tok.decode(ids[0]) == "好书" and tok.decode(ids[1], keep_special=True) == "[CLS]很差[UNK][SEP]"
    assert CharTokenizer.load(tok.save(tmp_path / "t.json")).vocabulary == tok.vocabulary


def test_tokenizer_long_text_truncates_or_errors(tok):
    assert tok.decode(tok.encode(["好书好书好书"], seq_len=5)[0]) == "好书好"
    with pytest.raises(ValueError, match="truncate=True"):
        tok.encode(["好书好书好书"], seq_len=5, truncate=False)


def test_tokenizer_bad_input(tok, tmp_path):
    with pytest.raises(TypeError, match="list of texts"):
        tok.encode("好书", seq_len=8)
    with pytest.raises(TypeError, match="not str"):
        tok.encode(["好", 3], seq_len=8)
    with pytest.raises(ValueError, match="must start with"):
        CharTokenizer(["a", "b"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(bad)


def test_chunk_texts_keeps_every_character():
    text = "一二三四五六七"
    assert chunk_texts([text, "八"], 3) == ["一二三", "四五六", "七", "八"]
    assert "".join(chunk_texts([text], 2)) == text


def test_mlm_targets_point_at_the_corrupted_positions():
    tok = CharTokenizer(list(SPECIAL_TOKENS) + [chr(0x4E00 + i) for i in range(95)])
    rng = np.random.default_rng(0)
    ids = tok.encode(["".join(chr(0x4E00 + i % 95) for i in range(r, r + 40)) for r in range(300)], seq_len=48)
    inputs, positions, targets, weights = mlm_targets(ids, tok, max_predictions=8, rng=rng)
    assert positions.shape == targets.shape == weights.shape == (300, 8)
    rows = np.repeat(np.arange(300)[:, None], 8, axis=1)
    real = weights > 0
    assert (targets[real] == ids[rows[real], positions[real]]).all()  # labels are the original characters
    assert not np.isin(targets[real], [tok.pad_id, tok.cls_id, tok.sep_id]).any()
    changed = inputs != ids
    predicted = np.zeros_like(changed)
    predicted[rows[real], positions[real]] = True
    assert not (changed & ~predicted).any(), "every corrupted position is a prediction target"
    assert 0.12 < real.sum() / (ids > 2).sum() < 0.16  # about 15 % of the 40 characters, a few capped at 8
    assert 0.7 < (inputs[rows[real], positions[real]] == tok.mask_id).mean() < 0.9


@pytest.fixture(scope="module")
def small_encoder():
    from bigmodel_utils.models.transformer import build_encoder

    import keras

    keras.utils.set_random_seed(0)
    return build_encoder(30, 16, 8, 2, 2, 16, norm_first=True, dropout=0.0)


def test_classifier_ignores_padding(small_encoder):
    import keras

    from bigmodel_utils.models.bert import build_classifier

    model = build_classifier(small_encoder, dropout=0.0)
    short = np.array([[2, 7, 8, 9, 3]], dtype="int32")
    padded = np.pad(short, ((0, 0), (0, 6)))
    a, b = (keras.ops.convert_to_numpy(model(x)) for x in (short, padded))
    assert np.abs(a - b).max() < 1e-6


def test_mlm_model_weights_round_trip_and_gather(small_encoder, tmp_path):
    import keras

    from bigmodel_utils.models.bert import build_mlm_model, gather_positions

    hidden = np.arange(24, dtype="float32").reshape(2, 4, 3)
    picked = keras.ops.convert_to_numpy(gather_positions(hidden, np.array([[3, 0], [1, 1]])))
    assert np.array_equal(picked, hidden[[[0, 0], [1, 1]], [[3, 0], [1, 1]]])
    model = build_mlm_model(small_encoder, 30, max_predictions=3)
    assert model.count_params() == small_encoder.count_params() + (8 * 8 + 8) + 2 * 8 + 30  # tied: no 8 x 30 matrix
    ids, pos = np.array([[2, 4, 5, 6, 3]], dtype="int32"), np.array([[1, 2, 3]], dtype="int32")
    before = keras.ops.convert_to_numpy(model([ids, pos]))
    assert before.shape == (1, 3, 30)
    model.save_weights(tmp_path / "mlm.weights.h5")
    from bigmodel_utils.models.transformer import build_encoder

    again = build_mlm_model(build_encoder(30, 16, 8, 2, 2, 16, norm_first=True, dropout=0.0), 30, max_predictions=3)
    again.load_weights(tmp_path / "mlm.weights.h5")
    assert np.abs(keras.ops.convert_to_numpy(again([ids, pos])) - before).max() < 1e-6
    with pytest.raises(ValueError, match="vocab_size"):
        build_mlm_model(small_encoder, 31, max_predictions=3)


def test_attention_maps_match_the_encoder(small_encoder):
    import keras

    from bigmodel_utils.models.bert import attention_maps

    ids = np.array([[2, 5, 6, 7, 3, 0, 0]], dtype="int32")
    maps = attention_maps(small_encoder, ids)
    assert len(maps) == 2 and maps[0].shape == (1, 2, 7, 7)
    assert np.allclose(maps[0][..., :5, :].sum(-1), 1.0, atol=1e-5)
    assert np.abs(maps[1][..., 5:]).max() < 1e-6, "no position attends to padding"
    assert np.abs(maps[1][..., 5:, :]).max() < 1e-6, "padding rows are empty"


def test_plot_attention_draws_one_panel_per_head():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bigmodel_utils.plots import plot_attention

    weights = np.full((3, 4, 4), 0.25)
    fig = plot_attention(weights, ["a", "b", "c", "d"], title="t", max_cols=2)
    assert sum(ax.has_data() for ax in fig.axes) == 3 and len(fig.axes) == 4  # 2 x 2 grid, the last one empty
    plt.close(fig)
    with pytest.raises(ValueError, match="heads, n, n"):
        plot_attention(weights, ["a", "b"])


def test_classifier_save_and_load_with_its_tokenizer(small_encoder, tmp_path):
    import keras

    from bigmodel_utils.models.bert import build_classifier, load_classifier, save_classifier

    tok = CharTokenizer(list(SPECIAL_TOKENS) + [chr(0x4E00 + i) for i in range(25)])
    model = build_classifier(small_encoder, dropout=0.0)
    ids = tok.encode([chr(0x4E00) + chr(0x4E01)], seq_len=8)
    path = save_classifier(model, tok, tmp_path / "clf.keras")
    again, tok_again = load_classifier(path)
    assert tok_again.vocabulary == tok.vocabulary
    assert np.abs(keras.ops.convert_to_numpy(again(ids)) - keras.ops.convert_to_numpy(model(ids))).max() < 1e-6
    with pytest.raises(FileNotFoundError, match="run chapter 07"):
        load_classifier(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match=".keras"):
        save_classifier(model, tok, tmp_path / "clf.h5")
