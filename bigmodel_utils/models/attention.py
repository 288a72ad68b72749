"""Attention in NumPy (chapter 07): the reference that ``keras.layers.MultiHeadAttention`` is checked against.

The Keras layers built on it are in :mod:`bigmodel_utils.models.transformer`.
"""

from __future__ import annotations

import numpy as np

# --- NumPy reference ------------------------------------------------------------------------------------


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = z - z.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def causal_mask(n: int) -> np.ndarray:
    """(n, n) boolean mask, True where query position i may attend to key position j (j <= i): GPT's mask."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return np.tril(np.ones((n, n), dtype=bool))


def scaled_dot_product_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None):
    """softmax(q k^T / sqrt(d)) v over the last two axes; returns ``(output, weights)``.

    ``q`` is (..., n_q, d), ``k`` (..., n_k, d), ``v`` (..., n_k, d_v). ``mask`` broadcasts to
    (..., n_q, n_k) and is True where attention is allowed; disallowed scores get -1e9 before the softmax.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"shapes do not fit: q {q.shape}, k {k.shape}, v {v.shape} (need q[-1] == k[-1] and k[-2] == v[-2])")
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(np.asarray(mask, dtype=bool), scores, -1e9)
    weights = softmax(scores, axis=-1)
    return weights @ v, weights


def multi_head_attention(x_q: np.ndarray, x_kv: np.ndarray, weights: list[np.ndarray], mask: np.ndarray | None = None):
    """Multi-head attention from ``keras.layers.MultiHeadAttention(...).get_weights()``; returns ``(output, weights)``.

    Keras's weights, in order: query kernel (d_model, heads, key_dim) and bias (heads, key_dim); the same
    for key and value; output kernel (heads, key_dim, d_model) and bias (d_model,). Each head projects the
    inputs, attends on its own, and the output projection mixes the heads back into d_model numbers.
    """
    if len(weights) != 8:
        raise ValueError(f"expected the 8 weight arrays of a MultiHeadAttention layer with biases, got {len(weights)}")
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w, dtype=np.float64) for w in weights)
    q = np.einsum("bnd,dhk->bhnk", x_q, wq) + bq[:, None, :]
    k = np.einsum("bnd,dhk->bhnk", x_kv, wk) + bk[:, None, :]
    v = np.einsum("bnd,dhk->bhnk", x_kv, wv) + bv[:, None, :]
    out, attn = scaled_dot_product_attention(q, k, v, None if mask is None else np.asarray(mask)[:, None])
    return np.einsum("bhnk,hkd->bnd", out, wo) + bo, attn


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
