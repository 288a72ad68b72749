"""A mini-BERT for Chinese text: character tokenizer, masked-language-model head, classifier (chapter 07).

The encoder itself is :func:`bigmodel_utils.models.transformer.build_encoder`; this module adds what BERT
puts around it: a vocabulary with special tokens, the masked-language-model corruption (:func:`mlm_mask`,
80/10/10), its targets gathered at the chosen positions (so the output layer runs on 15 % of the positions,
not all of them), the MLM head, a classifier head that averages over the real (non-padding) positions, and
per-head attention maps.
The Keras layers it uses live with the other encoder layers in :mod:`bigmodel_utils.models.transformer`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from bigmodel_utils.models.transformer import (GatherPositions, TiedLogits, TransformerEncoderBlock,  # noqa: F401
                                               gather_positions, keras)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class CharTokenizer:
    """Characters to ids and back, the way Chinese BERT tokenises: one token per character.

    Ids 0–4 are ``[PAD] [UNK] [CLS] [SEP] [MASK]``; ordinary characters follow, most frequent first.
    :meth:`encode` writes ``[CLS] text [SEP]`` and pads with 0 to ``seq_len``.
    """

    def __init__(self, vocabulary: list[str]):
        vocabulary = list(vocabulary)
        if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}, got {vocabulary[:5]}")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("the vocabulary has repeated entries")
        self.vocabulary = vocabulary
        self._index = {t: i for i, t in enumerate(vocabulary)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(len(SPECIAL_TOKENS))

    @classmethod
    def fit(cls, texts, max_size: int = 4000, min_count: int = 2) -> CharTokenizer:
        """Keep the ``max_size - 5`` most frequent characters seen at least ``min_count`` times."""
        if max_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {max_size}")
        counts = Counter()
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
            counts.update(text)
        if not counts:
            raise ValueError("cannot build a vocabulary from no text")
        chars = sorted((c for c, n in counts.items() if n >= min_count and c not in SPECIAL_TOKENS), key=lambda c: (-counts[c], c))
        return cls(list(SPECIAL_TOKENS) + chars[: max_size - len(SPECIAL_TOKENS)])

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, texts, seq_len: int, truncate: bool = True) -> np.ndarray:
        """``(len(texts), seq_len)`` int32 ids: ``[CLS]``, the characters, ``[SEP]``, then padding.

        A text with more than ``seq_len - 2`` characters is cut to its first ``seq_len - 2`` (BERT's
        behaviour; the chapter shows how much that keeps); with ``truncate=False`` it is an error instead.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap a single text in a list")
        if seq_len < 3:
            raise ValueError(f"seq_len must be at least 3 ([CLS], one character, [SEP]), got {seq_len}")
        room = seq_len - 2
        out = np.zeros((len(texts), seq_len), dtype=np.int32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {row} is {type(text).__name__}, not str")
            if len(text) > room and not truncate:
                raise ValueError(f"text {row} has {len(text)} characters but seq_len={seq_len} holds {room} "
                                 "(plus [CLS] and [SEP]); pass truncate=True to keep the first ones, or split the text")
            ids = [self._index.get(c, self.unk_id) for c in text[:room]]
            out[row, : len(ids) + 2] = [self.cls_id, *ids, self.sep_id]
        return out

    def decode(self, ids, keep_special: bool = False) -> str:
        """The characters of one row of ids; padding (and, unless ``keep_special``, other specials) dropped."""
        tokens = [self.vocabulary[int(i)] for i in np.asarray(ids).ravel() if int(i) != self.pad_id]
        return "".join(t for t in tokens if keep_special or t not in SPECIAL_TOKENS)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"vocabulary": self.vocabulary}, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8"))["vocabulary"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a saved CharTokenizer ({exc}); delete it and build the tokenizer again") from exc


def chunk_texts(texts, length: int) -> list[str]:
    """Cut each text into pieces of at most ``length`` characters, so that pre-training sees all of it."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    return [t[i:i + length] for t in texts for i in range(0, len(t), length) if t[i:i + length].strip()]


def mlm_mask(token_ids: np.ndarray, mask_id: int, vocab_size: int, special_ids=(0,), rate: float = 0.15,
             rng: np.random.Generator | None = None):
    """BERT's masked-language-model corruption (chapter 07); returns ``(inputs, labels, weights)``.

    Of the real tokens (not padding or other ``special_ids``), ``rate`` are chosen as prediction targets;
    of those, 80 % are replaced by ``mask_id``, 10 % by a random ordinary token and 10 % left unchanged (so
    the model cannot learn that only ``[MASK]`` positions matter). ``labels`` holds the original ids and
    ``weights`` is 1 at the chosen positions and 0 elsewhere: the loss counts only those.
    """
    ids = np.asarray(token_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"token_ids must be a 2-D integer array (batch, length), got {ids.dtype} {ids.shape}")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be between 0 and 1, got {rate}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id {mask_id} is outside the vocabulary of {vocab_size}")
    rng = np.random.default_rng() if rng is None else rng
    special = np.isin(ids, list(special_ids) + [mask_id])
    chosen = (rng.random(ids.shape) < rate) & ~special
    roll = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (roll < 0.8)] = mask_id
    ordinary = np.setdiff1d(np.arange(vocab_size), list(special_ids) + [mask_id])
    random_slots = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[random_slots] = rng.choice(ordinary, size=int(random_slots.sum()))
    return inputs, ids.copy(), chosen.astype(np.float32)


def mlm_targets(token_ids: np.ndarray, tokenizer: CharTokenizer, max_predictions: int, rng: np.random.Generator,
                rate: float = 0.15):
    """One masked-language-model batch: ``(inputs, positions, labels, weights)``.

    :func:`mlm_mask` corrupts 15 % of the characters (80/10/10); the chosen positions of each row are
    listed in ``positions`` (padded to ``max_predictions`` with weight 0) so that the model predicts only
    there. A row with more chosen positions than ``max_predictions`` keeps the first ones and gets the
    others back uncorrupted.
    """
    special = (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id)
    inputs, labels, chosen = mlm_mask(token_ids, tokenizer.mask_id, len(tokenizer), special_ids=special, rate=rate, rng=rng)
    n = len(token_ids)
    positions = np.zeros((n, max_predictions), dtype=np.int32)
    targets = np.zeros((n, max_predictions), dtype=np.int32)
    weights = np.zeros((n, max_predictions), dtype=np.float32)
    for row in range(n):
        where = np.flatnonzero(chosen[row])
        kept, dropped = where[:max_predictions], where[max_predictions:]
        inputs[row, dropped] = labels[row, dropped]
        positions[row, : len(kept)] = kept
        targets[row, : len(kept)] = labels[row, kept]
        weights[row, : len(kept)] = 1.0
    return inputs, positions, targets, weights


def build_mlm_model(encoder, vocab_size: int, max_predictions: int):
    """BERT's pre-training model: ``[token_ids, positions]`` -> logits over the vocabulary at ``positions``.

    The head is BERT's: a dense layer with GELU and a layer norm, then a score for each vocabulary entry:
    the dot product with that entry's input embedding, plus a bias (input and output embeddings are tied,
    which halves the parameters of the two largest matrices and makes a small model learn faster).
    The tied layer is not serialisable on its own: save the weights (``save_weights``) and rebuild.
    """
    tokens = encoder.get_layer("embeddings").tokens
    if tokens.input_dim != vocab_size:
        raise ValueError(f"the encoder embeds {tokens.input_dim} tokens but vocab_size is {vocab_size}")
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    positions = keras.Input((max_predictions,), dtype="int32", name="positions")
    hidden = encoder(ids)
    d_model = hidden.shape[-1]
    picked = GatherPositions(name="gather")(hidden, positions)
    h = keras.layers.Dense(d_model, activation="gelu", name="mlm_dense")(picked)
    h = keras.layers.LayerNormalization(epsilon=1e-12, name="mlm_norm")(h)
    logits = TiedLogits(tokens, name="mlm_logits")(h)
    return keras.Model([ids, positions], logits, name="mlm")


def fill_in_blank(mlm, tokenizer: CharTokenizer, text: str, index: int, top: int = 3, seq_len: int = 64) -> list[str]:
    """The pre-trained model's ``top`` guesses for character ``index`` of ``text`` after hiding it behind ``[MASK]``
    (chapter 07; its widget lets you hide any character). ``mlm`` is :func:`build_mlm_model`'s model."""
    import keras

    if not isinstance(text, str) or not text.strip():
        raise ValueError("type a sentence to hide a character of")
    if len(text) > seq_len - 2:
        raise ValueError(f"the model reads {seq_len - 2} characters; this text has {len(text)}: shorten it")
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(text):
        raise ValueError(f"index must name a character of the text, 0 to {len(text) - 1}, got {index!r}")
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= len(tokenizer) - len(SPECIAL_TOKENS):
        raise ValueError(f"top must be between 1 and the {len(tokenizer) - len(SPECIAL_TOKENS)} characters of the "
                         f"vocabulary, got {top!r}")
    ids = tokenizer.encode([text], seq_len)
    ids[0, index + 1] = tokenizer.mask_id  # +1: position 0 holds [CLS]
    positions = np.zeros((1, mlm.inputs[1].shape[1]), dtype="int32")
    positions[0, 0] = index + 1
    logits = keras.ops.convert_to_numpy(mlm([ids, positions], training=False))[0, 0].astype(np.float64)
    logits[: len(SPECIAL_TOKENS)] = -np.inf  # a guess is a character, never [PAD], [UNK], [CLS], [SEP] or [MASK]
    return [tokenizer.vocabulary[i] for i in np.argsort(-logits, kind="stable")[:top]]


def build_classifier(encoder, dropout: float = 0.1, name: str = "classifier"):
    """Token ids -> P(positive): the encoder's outputs averaged over the real (non-padding) positions.

    ``GlobalAveragePooling1D`` receives the padding mask that the encoder's embedding layer computes, so
    padding never enters the average (a unit test checks that adding padding changes nothing).
    """
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_over_tokens")(encoder(ids))
    pooled = keras.layers.Dropout(dropout)(pooled)
    return keras.Model(ids, keras.layers.Dense(1, activation="sigmoid", name="p_positive")(pooled), name=name)


def attention_maps(encoder, token_ids) -> list[np.ndarray]:
    """Attention weights of every block of a :func:`build_encoder` model: one (batch, heads, n, n) array per block.

    Runs the encoder's layers one by one (embeddings, optional embedding norm, blocks; no dropout) and asks
    each block for its weights. Rows of real tokens sum to 1 and give padding no weight; rows of padding
    positions are all zero.
    """
    ids = keras.ops.convert_to_tensor(np.asarray(token_ids, dtype=np.int32))
    embed = encoder.get_layer("embeddings")
    x = embed(ids)
    mask = embed.compute_mask(ids)
    names = [layer.name for layer in encoder.layers]
    if "embeddings_norm" in names:
        x = encoder.get_layer("embeddings_norm")(x)
    maps = []
    for layer in encoder.layers:
        if isinstance(layer, TransformerEncoderBlock):
            x, scores = layer(x, mask=mask, return_attention=True)
            maps.append(keras.ops.convert_to_numpy(scores))
    return maps


def save_classifier(model, tokenizer: CharTokenizer, path: str | Path) -> Path:
    """Save a fine-tuned classifier (``.keras``) with its tokenizer next to it (``<name>.tokenizer.json``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"save the classifier to a .keras file, got {path.name}")
    model.save(path)
    tokenizer.save(path.with_suffix(".tokenizer.json"))
    return path


def load_classifier(path: str | Path):
    """Load what :func:`save_classifier` saved: ``(model, tokenizer)``. Chapters 08 and 11 use it.

    Importing the encoder's module first registers its layers, which ``keras.saving.load_model`` needs.
    """
    path = Path(path)
    tokenizer_path = path.with_suffix(".tokenizer.json")
    for needed in (path, tokenizer_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: run chapter 07 to fine-tune and save the review classifier")
    return keras.saving.load_model(path), CharTokenizer.load(tokenizer_path)
