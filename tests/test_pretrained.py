"""all-MiniLM-L6-v2 in the book's own encoder: checksum first, then parity with keras-hub's BERT."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bigmodel_utils.data import ChecksumError, load_dataset
from bigmodel_utils.pretrained import encode_wordpiece, keras_hub_reference, load_minilm, mean_pool, wordpiece_tokenizer


@pytest.fixture(scope="module")
def folder():
    return load_dataset("minilm_l6_v2")


def test_tampered_weights_are_refused_before_loading(folder, tmp_path):
    copy = tmp_path / "minilm"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # flip one byte of the last weight
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        load_minilm(copy)


def test_missing_config_is_a_clear_error(folder, tmp_path):
    copy = tmp_path / "noconfig"
    copy.mkdir()
    shutil.copy(folder / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_minilm(copy)


def test_minilm_matches_keras_hub(folder):
    import keras
    import keras_hub

    tokenizer = wordpiece_tokenizer(folder)
    assert isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer)
    sentences = ["Return the absolute value of a number.", "Open a file and return a stream."]
    ids = encode_wordpiece(tokenizer, sentences)
    assert ids[0, 0] == tokenizer.token_to_id("[CLS]") and (ids[1] == tokenizer.token_to_id("[SEP]")).sum() == 1
    real = ids != 0
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": real}

    outputs = {}
    for exact_gelu in (True, False):
        ref = keras.ops.convert_to_numpy(keras_hub_reference(folder, exact_gelu=exact_gelu)(inputs)["sequence_output"])
        ours, _ = load_minilm(folder, approximate_gelu=not exact_gelu)
        out = keras.ops.convert_to_numpy(ours(ids))
        assert np.abs(out[real] - ref[real]).max() <= 1e-4
        outputs[exact_gelu] = out
    gap = np.abs(outputs[True][real] - outputs[False][real]).max()  # the two GELUs differ, a little
    assert 0 < gap < 0.05

    emb = mean_pool(outputs[True], ids)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_mean_pool_ignores_padding():
    hidden = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    a = mean_pool(hidden, np.array([[5, 6, 0, 0]]))
    b = mean_pool(hidden[:, :2], np.array([[5, 6]]))
    assert np.allclose(a, b)
    with pytest.raises(ValueError):
        mean_pool(hidden, np.array([[1, 2]]))


def test_wordpiece_long_text_truncates_or_errors(folder):
    tokenizer = wordpiece_tokenizer(folder)
    long_text = "the quick brown fox jumps over the lazy dog " * 40
    ids = encode_wordpiece(tokenizer, [long_text, "short"], max_length=32)
    assert ids.shape == (2, 32) and ids[0, -1] == tokenizer.token_to_id("[SEP]")
    with pytest.raises(ValueError, match="truncate=True"):
        encode_wordpiece(tokenizer, [long_text], max_length=32, truncate=False)
    with pytest.raises(TypeError, match="list of texts"):
        encode_wordpiece(tokenizer, "one text")


def test_default_length_is_sentence_transformers_and_too_long_is_refused(folder):
    import json

    from bigmodel_utils.pretrained import MINILM_MAX_LENGTH, embed_sentences

    shipped = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert MINILM_MAX_LENGTH == shipped == 256
    tokenizer = wordpiece_tokenizer(folder)
    long_text = "the quick brown fox jumps over the lazy dog " * 60  # 540 word pieces
    assert encode_wordpiece(tokenizer, [long_text]).shape == (1, 256)
    with pytest.raises(ValueError, match="more than the 512 positions"):
        encode_wordpiece(tokenizer, [long_text], max_length=600, positions=512)
    model, _ = load_minilm(folder)
    with pytest.raises(ValueError, match="more than the 512 positions minilm has: pass max_length=512 or less"):
        embed_sentences(model, tokenizer, [long_text], max_length=600)
    with pytest.raises(ValueError, match="542 tokens do not fit the 512 positions"):
        model(encode_wordpiece(tokenizer, [long_text], max_length=10_000))


def test_missing_keras_hub_is_a_clear_error(monkeypatch, folder):
    import sys

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # what a missing package looks like to import
    with pytest.raises(ImportError, match="pip install keras-hub"):
        wordpiece_tokenizer(folder)
