"""A small GPT: a decoder-only Transformer, its training text, sampling and a KV cache (chapter 13).

The model is chapter 07's :class:`~bigmodel_utils.models.transformer.TransformerEncoderBlock` with the causal
mask, pre-LN, the tanh GELU and GPT-2's layer-norm epsilon, under a learned position embedding, with a final
layer norm and an output layer tied to the token embedding (no output bias, as GPT-2). It reads characters
through chapter 07's :class:`~bigmodel_utils.models.bert.CharTokenizer`; ``[SEP]`` marks the end of each text
in the training stream, so a generation starts after a ``[SEP]``.

Two forward passes compute the same logits: the Keras model (training, batch scoring) and
:func:`forward_numpy`, the same arithmetic in NumPy from the model's weights, which can keep each layer's
keys and values in a :class:`KVCache` and then needs only the newest token at each step of generation.
``tests/test_gpt.py`` checks that the two agree, with and without the cache.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bigmodel_utils.data.download import sha256_file
from bigmodel_utils.models.bert import CharTokenizer
from bigmodel_utils.models.transformer import PositionalEmbedding, TiedLogits, TransformerEncoderBlock, keras
from bigmodel_utils.scale import kv_cache_bytes  # noqa: F401  (the memory arithmetic lives with the rest of it)

LN_EPSILON = 1e-5  # GPT-2's


# --- the model -----------------------------------------------------------------------------------------


def build_gpt(vocab_size: int, context: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4,
              d_ff: int | None = None, dropout: float = 0.0, name: str = "gpt") -> keras.Model:
    """Token ids ``(batch, length <= context)`` -> next-token logits ``(batch, length, vocab_size)``.

    Embeddings (token + learned position), ``n_layers`` causal pre-LN blocks, a final layer norm, and logits
    that score each token by the dot product with its own input embedding (tied weights, no bias).
    ``d_ff`` defaults to ``4 * d_model``. No position is masked as padding: every id is a real token.
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    embed = PositionalEmbedding(vocab_size, context, d_model, 0, mask_zero=False, name="embeddings")
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(embed(ids))
    for i in range(n_layers):
        x = TransformerEncoderBlock(d_model, n_heads, d_ff, dropout=dropout, norm_first=True, approximate_gelu=True,
                                    causal=True, epsilon=LN_EPSILON, name=f"block_{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="final_norm")(x)
    logits = TiedLogits(embed.tokens, use_bias=False, name="logits")(x)
    return keras.Model(ids, logits, name=name)


def gpt_shape(model: keras.Model):
    """The :class:`~bigmodel_utils.scale.TransformerShape` of a model made by :func:`build_gpt` (chapter 01's formula)."""
    from bigmodel_utils.scale import TransformerShape

    embed = model.get_layer("embeddings")
    blocks = [layer for layer in model.layers if isinstance(layer, TransformerEncoderBlock)]
    b = blocks[0]
    return TransformerShape(model.name, len(blocks), b.d_model, b.n_heads, embed.vocab_size, embed.max_length, b.d_ff,
                            kind="gpt")


def matmul_params(model: keras.Model) -> int:
    """The parameters that multiply an activation, per token: every block, and the tied output matrix.

    The embedding lookups are not multiplications (a row is read), so they are left out; the output layer
    multiplies by the token embedding matrix, so that matrix counts once. This ``N`` is the one in 6·N·D.
    """
    shape = gpt_shape(model)
    return shape.n_layers * shape.block_params() + shape.vocab_size * shape.d_model


# --- training text -------------------------------------------------------------------------------------


def token_stream(tokenizer: CharTokenizer, texts) -> np.ndarray:
    """All ``texts`` as one int32 stream of character ids, each text followed by ``[SEP]`` (end of text)."""
    index, unk, sep = tokenizer._index, tokenizer.unk_id, tokenizer.sep_id
    out: list[int] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, not str")
        out.extend(index.get(c, unk) for c in text)
        out.append(sep)
    return np.asarray(out, dtype=np.int32)


def windows(stream: np.ndarray, context: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping training windows: inputs ``stream[i:i+context]`` and targets shifted by one token."""
    if context < 1 or offset < 0:
        raise ValueError(f"context must be positive and offset non-negative, got {context}, {offset}")
    n = (len(stream) - offset - 1) // context
    if n < 1:
        raise ValueError(f"a stream of {len(stream)} tokens holds no window of {context + 1} tokens")
    x = stream[offset: offset + n * context].reshape(n, context)
    y = stream[offset + 1: offset + 1 + n * context].reshape(n, context)
    return x, y


def mean_nll(model: keras.Model, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    """Mean negative log-likelihood (nats per token) of targets ``y`` under ``model``; exp of it is the perplexity.

    The logits come from Keras's compiled prediction step (``predict_on_batch``: XLA when the model was compiled
    with it), not from calling the model eagerly, which is slower (chapter 13's GPT on a 2-core CPU: about 1.7
    times the compiled step's time, 2.5 times the XLA step's). Each token's loss is
    ``logsumexp(logits) - logits[target]``: the exponentials in float32 (every logit minus the row's largest, so at
    most 1), their sums and the total in float64, with no full table of log-probabilities.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows and y {len(y)}: one row of targets per row of inputs")
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        logits = np.asarray(model.predict_on_batch(x[i:i + batch]), dtype=np.float32)
        top = logits.max(-1, keepdims=True)
        log_sum = np.log(np.exp(logits - top).sum(-1, dtype=np.float64)) + top[..., 0]
        total += float((log_sum - np.take_along_axis(logits, y[i:i + batch, :, None], -1)[..., 0]).sum())
        count += y[i:i + batch].size
    return total / count


def ngram_perplexity(train: np.ndarray, held_out: np.ndarray, vocab_size: int, order: int, prior: float = 1.0) -> float:
    """Perplexity of a unigram (``order=1``) or bigram (``order=2``) model of ``train`` on ``held_out``.

    Unigram: add-one counts. Bigram: P(b | a) = (count(a, b) + prior * P_unigram(b)) / (count(a) + prior), the
    bigram counts smoothed toward the unigram (a Dirichlet prior of strength ``prior``).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    uni = (np.bincount(train, minlength=vocab_size) + 1.0) / (len(train) + vocab_size)
    if order == 1:
        return float(np.exp(-np.log(uni[held_out]).mean()))
    pair = held_out[:-1].astype(np.int64) * vocab_size + held_out[1:]
    counts = np.bincount(train[:-1].astype(np.int64) * vocab_size + train[1:], minlength=vocab_size * vocab_size)
    first = np.bincount(train[:-1], minlength=vocab_size)
    p = (counts[pair] + prior * uni[held_out[1:]]) / (first[held_out[:-1]] + prior)
    return float(np.exp(-np.log(p).mean()))


# --- sampling ------------------------------------------------------------------------------------------


def sampling_probabilities(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                           top_p: float | None = None) -> np.ndarray:
    """The distribution a sampler draws the next token from, for one logits vector.

    ``softmax(logits / temperature)``; then ``top_k`` keeps the k most probable tokens, and ``top_p`` (nucleus)
    keeps the most probable tokens until their probabilities add up to ``p`` (the token that crosses ``p`` is
    kept, and so is the first token whatever ``p``); what is kept is renormalised. The rules of keras-hub's ``TopKSampler`` and ``TopPSampler``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"logits must be one non-empty vector, got shape {logits.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive (use greedy decoding for 'temperature 0'), got {temperature}")
    z = logits / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.ones_like(p, dtype=bool)
    if top_k is not None:
        if int(top_k) < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        keep[order[int(top_k):]] = False
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        before = np.concatenate([[0.0], np.cumsum(p[order])[:-1]])  # the mass of the more probable tokens
        keep[order[before > top_p]] = False  # kept while the mass before it is at most p (keras-hub's rule)
    p = np.where(keep, p, 0.0)
    return p / p.sum()


def greedy(logits: np.ndarray, rng: np.random.Generator | None = None) -> int:
    """The most probable token (the first of equals)."""
    return int(np.argmax(logits))


def sampler(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> Callable:
    """A function ``(logits, rng) -> token id`` that draws from :func:`sampling_probabilities`."""
    def draw(logits: np.ndarray, rng: np.random.Generator) -> int:
        p = sampling_probabilities(logits, temperature, top_k, top_p)
        return int(rng.choice(len(p), p=p))
    return draw


def repeated_ngram_share(ids, n: int = 4) -> float:
    """The share of a text's n-grams that already occurred earlier in the same text (0: no repetition)."""
    ids = list(ids)
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


# --- the same forward pass in NumPy, with a KV cache ----------------------------------------------------


def numpy_weights(model: keras.Model) -> dict:
    """The weights of a :func:`build_gpt` model as NumPy arrays, named for :func:`forward_numpy`."""
    embed = model.get_layer("embeddings")
    blocks = []
    for layer in model.layers:
        if isinstance(layer, TransformerEncoderBlock):
            a = layer.attention
            wq, bq, wk, bk, wv, bv, wo, bo = [np.asarray(w) for w in a.get_weights()]
            blocks.append({"ln1": [np.asarray(w) for w in layer.norm1.get_weights()],
                           "ln2": [np.asarray(w) for w in layer.norm2.get_weights()],
                           "wq": wq, "bq": bq, "wk": wk, "bk": bk, "wv": wv, "bv": bv, "wo": wo, "bo": bo,
                           "ff1": [np.asarray(w) for w in layer.ff1.get_weights()],
                           "ff2": [np.asarray(w) for w in layer.ff2.get_weights()]})
    def array(variable):
        return keras.ops.convert_to_numpy(variable)

    return {"tokens": array(embed.tokens.embeddings), "positions": array(embed.positions.embeddings),
            "blocks": blocks, "final": [np.asarray(w) for w in model.get_layer("final_norm").get_weights()]}


@dataclass
class KVCache:
    """Each layer's keys and values so far: arrays ``(layers, batch, heads, positions, head size)``, preallocated."""

    keys: np.ndarray
    values: np.ndarray
    length: int = 0

    @classmethod
    def empty(cls, weights: dict, batch: int = 1, dtype=np.float32) -> KVCache:
        layers, (positions, _) = len(weights["blocks"]), weights["positions"].shape
        _, heads, head_size = weights["blocks"][0]["wk"].shape
        shape = (layers, batch, heads, positions, head_size)
        return cls(np.zeros(shape, dtype), np.zeros(shape, dtype))

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes


def _layer_norm(x, gamma_beta):
    gamma, beta = gamma_beta
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPSILON) * gamma + beta


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward_numpy(weights: dict, ids: np.ndarray, cache: KVCache | None = None) -> np.ndarray:
    """Logits ``(batch, t, vocab)`` for token ids ``(batch, t)``: the Keras model's arithmetic, in NumPy.

    Without a cache, ``ids`` is the whole text so far. With a cache, ``ids`` are the *new* tokens, which
    follow the ``cache.length`` tokens whose keys and values the cache already holds; their keys and values
    are added to it, so that the next call needs only the token after them.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids must be (batch, tokens), got shape {ids.shape}")
    start = cache.length if cache is not None else 0
    t, context = ids.shape[1], weights["positions"].shape[0]
    if start + t > context:
        raise ValueError(f"{start} cached + {t} new tokens exceed the model's context of {context} positions")
    x = weights["tokens"][ids] + weights["positions"][start:start + t]
    end = start + t
    allowed = np.arange(end)[None, :] <= (start + np.arange(t))[:, None]  # query i sees keys j <= its position
    for layer, b in enumerate(weights["blocks"]):
        h = _layer_norm(x, b["ln1"])
        q = np.einsum("btd,dhk->bhtk", h, b["wq"]) + b["bq"][None, :, None]
        k = np.einsum("btd,dhk->bhtk", h, b["wk"]) + b["bk"][None, :, None]
        v = np.einsum("btd,dhk->bhtk", h, b["wv"]) + b["bv"][None, :, None]
        if cache is not None:
            cache.keys[layer, :, :, start:end], cache.values[layer, :, :, start:end] = k, v
            k, v = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        scores = np.where(allowed, scores, -np.inf)
        a = np.exp(scores - scores.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("bhtk,hkd->btd", a @ v, b["wo"]) + b["bo"]
        h = _layer_norm(x, b["ln2"])
        x = x + _gelu_tanh(h @ b["ff1"][0] + b["ff1"][1]) @ b["ff2"][0] + b["ff2"][1]
    if cache is not None:
        cache.length = end
    return _layer_norm(x, weights["final"]) @ weights["tokens"].T


# --- generation ----------------------------------------------------------------------------------------


def prompt_ids(tokenizer: CharTokenizer, prompt: str, prefix=()) -> list[int]:
    """``[SEP]`` (a text begins), the ``prefix`` ids (control tokens, chapter 14) and the prompt's characters.

    Unknown characters become ``[UNK]``, with a warning that names them.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be a str, got {type(prompt).__name__}")
    unknown = sorted({c for c in prompt if c not in tokenizer._index})
    if unknown:
        warnings.warn(f"{len(unknown)} character(s) of the prompt are not in the vocabulary and are read as [UNK]: "
                      f"{''.join(unknown)!r}", UserWarning, stacklevel=3)
    prefix = [int(i) for i in prefix]
    if any(not 0 <= i < len(tokenizer) for i in prefix):
        raise ValueError(f"prefix ids must lie in [0, {len(tokenizer)}), got {prefix}")
    return [tokenizer.sep_id] + prefix + [tokenizer._index.get(c, tokenizer.unk_id) for c in prompt]


def never_drawn(tokenizer: CharTokenizer) -> list[int]:
    """The ids a sampler never draws: ``[PAD] [UNK] [CLS] [MASK]`` and any ``[...]`` control token added later."""
    specials = [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.mask_id]
    added = [i for i, t in enumerate(tokenizer.vocabulary[5:], 5) if len(t) > 1 and t.startswith("[") and t.endswith("]")]
    return specials + added


def generate_ids(weights: dict, tokenizer: CharTokenizer, ids: list[int], max_new_tokens: int,
                 pick: Callable = greedy, rng: np.random.Generator | None = None, use_cache: bool = True,
                 stop_at_end: bool = True):
    """Yield the ids that continue ``ids`` (a text so far, from :func:`prompt_ids`), one at a time, as drawn.

    The engine of :func:`generate` and of the book's generation service (chapter 14), which streams each token
    as soon as it exists. Tokens of :func:`never_drawn` are never drawn; ``[SEP]`` ends the text (it is yielded)
    when ``stop_at_end``. The model sees at most its context: whenever the text no longer fits, it keeps the last
    ``context // 2`` tokens and goes on from there (with the cache: re-reads them once), the same rule with and
    without the cache, so both give the same tokens.
    """
    if int(max_new_tokens) < 0:
        raise ValueError(f"max_new_tokens must be non-negative, got {max_new_tokens}")
    rng = np.random.default_rng(0) if rng is None else rng
    context = weights["positions"].shape[0]
    banned = never_drawn(tokenizer)
    window = list(ids[-(context // 2):]) if len(ids) > context else list(ids)
    cache = KVCache.empty(weights) if use_cache else None
    fresh = window  # tokens the model has not read yet (all of them at first)
    for _ in range(int(max_new_tokens)):
        if use_cache:
            logits = forward_numpy(weights, np.asarray([fresh]), cache)[0, -1]
        else:
            logits = forward_numpy(weights, np.asarray([window]))[0, -1]
        logits = logits.astype(np.float64)
        logits[banned] = -np.inf
        token = pick(logits, rng)
        yield token
        if stop_at_end and token == tokenizer.sep_id:
            return
        window = window + [token]
        fresh = [token]
        if len(window) > context:
            window = window[-(context // 2):]
            if use_cache:
                cache, fresh = KVCache.empty(weights), window


def token_text(tokenizer: CharTokenizer, token: int) -> str:
    """What a drawn token adds to the text: its character, or a line break for ``[SEP]`` (a new text begins)."""
    return "\n" if token == tokenizer.sep_id else tokenizer.vocabulary[token]


def generate(weights: dict, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int,
             pick: Callable = greedy, rng: np.random.Generator | None = None, use_cache: bool = True,
             stop_at_end: bool = True, return_ids: bool = False, prefix=()):
    """Continue ``prompt`` by up to ``max_new_tokens`` characters, drawn by ``pick(logits, rng)``; the new text.

    The text begins with ``[SEP]`` (and the ``prefix`` ids: control tokens, chapter 14), so an empty prompt is
    allowed (the model starts a new text). Special tokens other than ``[SEP]`` are never drawn; ``[SEP]`` ends
    the text when ``stop_at_end``, and otherwise appears as a line break (a new text begins). The model sees at
    most its context: whenever the text no longer fits, it keeps the last ``context // 2`` tokens and goes on
    from there (with the cache: re-reads them once), the same rule with and without the cache, so both give the
    same tokens (:func:`generate_ids`).
    """
    if int(max_new_tokens) < 0:
        raise ValueError(f"max_new_tokens must be non-negative, got {max_new_tokens}")
    context = weights["positions"].shape[0]
    ids = prompt_ids(tokenizer, prompt, prefix)
    if len(ids) > context:
        warnings.warn(f"the prompt is {len(ids)} tokens ([SEP] included) and the context holds {context}: the model "
                      f"reads its last {context // 2}", UserWarning, stacklevel=2)
    new = list(generate_ids(weights, tokenizer, ids, max_new_tokens, pick, rng, use_cache, stop_at_end))
    text = "".join(token_text(tokenizer, i) for i in new)
    text = text[:-1] if stop_at_end and text.endswith("\n") else text
    return (text, ids + new) if return_ids else text


def sample_text(weights: dict, tokenizer: CharTokenizer, prompt: str, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, max_new_tokens: int = 60, seed: int = 0) -> str:
    """:func:`generate` with a widget's settings (chapter 13): ``top_k = 0`` and ``top_p = 1`` switch those filters
    off; the same settings and seed give the same text."""
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt is a string, got {type(prompt).__name__}")
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k must be a whole number >= 0 (0: no top-k filter), got {top_k!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1: no nucleus filter), got {top_p!r}")
    pick = sampler(temperature, top_k=int(top_k) or None, top_p=None if top_p >= 1 else float(top_p))
    return generate(weights, tokenizer, prompt, max_new_tokens, pick, np.random.default_rng(seed))


# --- saving ---------------------------------------------------------------------------------------------


def save_gpt(model: keras.Model, tokenizer: CharTokenizer, stem: str | Path, settings: dict, log: dict | None = None) -> Path:
    """Save ``stem.weights.h5`` and ``stem.json`` (settings, vocabulary, the weights' sha256, the training log)."""
    stem = Path(stem)
    weights_file, info_file = stem.with_suffix(".weights.h5"), stem.with_suffix(".json")
    model.save_weights(weights_file)
    shape = gpt_shape(model)
    info = {"settings": settings, "shape": {"context": shape.max_positions, "d_model": shape.d_model,
                                            "n_layers": shape.n_layers, "n_heads": shape.n_heads, "d_ff": shape.ff},
            "vocabulary": tokenizer.vocabulary, "weights_sha256": sha256_file(weights_file), "log": log or {}}
    info_file.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    return info_file


def load_gpt(stem: str | Path) -> tuple[keras.Model, CharTokenizer, dict]:
    """The model, tokenizer and saved information of :func:`save_gpt`; the weights' checksum is verified first."""
    stem = Path(stem)
    weights_file, info_file = stem.with_suffix(".weights.h5"), stem.with_suffix(".json")
    for f in (weights_file, info_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: run chapter 13 to train and save the GPT")
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        shape, vocabulary, digest = info["shape"], info["vocabulary"], info["weights_sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{info_file} is not a GPT description saved by save_gpt ({error}): delete it and "
                         "train again (chapter 13, RETRAIN = True)") from None
    if sha256_file(weights_file) != digest:
        raise ValueError(f"{weights_file} does not match the sha256 recorded when it was saved (changed or truncated "
                         "since): delete it and train again (chapter 13, RETRAIN = True)")
    tokenizer = CharTokenizer(vocabulary)
    model = build_gpt(len(tokenizer), shape["context"], shape["d_model"], shape["n_layers"], shape["n_heads"], shape["d_ff"])
    model.load_weights(weights_file)
    return model, tokenizer, info
