"""Attention in NumPy (chapter 07): the reference that ``keras.layers.MultiHeadAttention`` is checked against.

The Keras layers built on it are in :mod:`bigmodel_utils.models.transformer`.
"""

from __future__ import annotations

import numpy as np

from bigmodel_utils.scratch import softmax  # chapter 02's, shifted by the maximum so exp never overflows

# --- NumPy reference ------------------------------------------------------------------------------------


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
