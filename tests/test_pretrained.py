"""all-MiniLM-L6-v2 in the book's own encoder: checksum first, then parity with keras-hub's BERT."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bigmodel_utils.data import ChecksumError, load_dataset
from bigmodel_utils.pretrained import load_minilm, mean_pool


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

    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=str(folder / "vocab.txt"), lowercase=True, strip_accents=True)
    sentences = ["Return the absolute value of a number.", "Open a file and return a stream."]
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    rows = [[cls_id, *np.asarray(tokenizer(s)).tolist(), sep_id] for s in sentences]
    width = max(map(len, rows))
    ids = np.array([r + [0] * (width - len(r)) for r in rows], dtype="int32")

    reference = keras_hub.models.BertBackbone.from_preset(str(folder))
    ref = keras.ops.convert_to_numpy(reference({"token_ids": ids, "segment_ids": np.zeros_like(ids),
                                                "padding_mask": ids != 0})["sequence_output"])
    ours, _ = load_minilm(folder, approximate_gelu=True)  # keras-hub uses the tanh approximation of GELU
    out = keras.ops.convert_to_numpy(ours(ids))
    real = ids != 0
    assert np.abs(out[real] - ref[real]).max() <= 1e-4

    exact, _ = load_minilm(folder)  # as trained: exact GELU; close to, but not the same as, the approximation
    gap = np.abs(keras.ops.convert_to_numpy(exact(ids))[real] - out[real]).max()
    assert 0 < gap < 0.05

    emb = mean_pool(keras.ops.convert_to_numpy(exact(ids)), ids)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_mean_pool_ignores_padding():
    hidden = np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    a = mean_pool(hidden, np.array([[5, 6, 0, 0]]))
    b = mean_pool(hidden[:, :2], np.array([[5, 6]]))
    assert np.allclose(a, b)
    with pytest.raises(ValueError):
        mean_pool(hidden, np.array([[1, 2]]))
