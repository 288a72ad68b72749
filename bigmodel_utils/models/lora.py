"""LoRA, low-rank adaptation (Hu et al. 2021), written out as a Keras layer, and Keras's own (chapter 14).

A frozen layer computes ``x·W + b``; LoRA adds ``(alpha / r)·x·A·B`` with ``A`` of shape ``W.shape[:-1] + (r,)``
and ``B`` of shape ``(r, W.shape[-1])``: only ``A`` and ``B`` are trained. ``B`` starts at zero, so an adapted
model computes exactly what the base model computes until the first update. The product is taken as
``(x·A)·B``, through the narrow ``r`` columns, as Hu et al. do, never as ``x·(A·B)``: forming ``A·B`` first
costs a second full ``d_in x d_out`` product per token in the forward pass and two more in the backward pass,
more arithmetic than full fine-tuning itself. For a ``Dense`` layer ``A·B`` is a
``d_in x d_out`` matrix of rank at most ``r``; for an ``EinsumDense`` (the projections inside
``MultiHeadAttention``) the shapes are Keras's (``EinsumDense.enable_lora``), so the two implementations can be
compared weight for weight. :func:`merge_lora` folds ``(alpha / r)·A·B`` into ``W`` for serving (no extra
work per token); :func:`save_adapters` keeps only ``A`` and ``B``. An ``Embedding`` can be adapted the same way
(its table is ``W``, a row is looked up), which a GPT with new tokens needs: the tied output layer then reads
the adapted table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bigmodel_utils.models.transformer import TransformerEncoderBlock, keras

# the projections of a pre-LN block that an adapter can wrap, by the attribute that holds each
ATTENTION_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
FEED_FORWARD = ("ff1", "ff2")


class LoRA(keras.layers.Layer):
    """``base(x) + (alpha / rank)·(x·A)·B``, with ``base`` (a ``Dense``, ``EinsumDense`` or ``Embedding``) frozen.

    ``A`` starts random (He-uniform, as Keras's), ``B`` at zero. ``A`` is applied to the input with the base
    layer's own equation (``Dense``: a matrix product; ``EinsumDense``: its einsum, whose kernel's last axis is the
    output's last axis), which gives ``r`` numbers where the layer gives its last output axis; ``B`` maps those to
    the output. An ``Embedding`` looks a row up in the adapted table instead, which the GPT's tied output layer
    also reads (that table, ``W + (alpha / rank)·A·B``, is formed in full: the output layer needs all of it).
    """

    def __init__(self, base, rank: int, alpha: float | None = None, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{base.name}_lora"), **kwargs)
        if not isinstance(base, (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)):
            raise TypeError(f"LoRA wraps a Dense, EinsumDense or Embedding layer, got {type(base).__name__}")
        if getattr(base, "activation", None) not in (None, keras.activations.linear):
            raise ValueError(f"{base.name} has an activation: LoRA adds to the layer's linear output, before any activation")
        if int(rank) < 1:
            raise ValueError(f"rank must be a positive integer, got {rank}")
        if not base.built:
            raise ValueError(f"build {base.name} (call the model once) before wrapping it")
        if isinstance(base, keras.layers.EinsumDense):
            inputs, output = base.equation.replace(" ", "").split("->")
            x_axes, kernel_axes = inputs.split(",")
            if kernel_axes[-1] != output[-1] or kernel_axes[-1] in x_axes:
                raise ValueError(f"{base.name}'s equation {base.equation!r}: LoRA needs the kernel's last axis to be "
                                 "the output's last axis, and not an axis of the input (as in every Keras attention "
                                 "projection)")
        self.base, self.rank = base, int(rank)
        self.alpha = float(rank if alpha is None else alpha)
        base.trainable = False
        shape = tuple(self._table(base).shape)
        self.a = self.add_weight(shape=shape[:-1] + (self.rank,), initializer="he_uniform", name="lora_a")
        self.b = self.add_weight(shape=(self.rank, shape[-1]), initializer="zeros", name="lora_b")

    @staticmethod
    def _table(layer):
        return layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self):
        """The change of the kernel (or embedding table), ``(alpha / rank)·A·B``, in its shape."""
        return keras.ops.matmul(self.a, self.b) * self.scale

    @property
    def embeddings(self):
        """For a wrapped ``Embedding``: the adapted table, which the GPT's tied output layer reads too."""
        return self.base.embeddings + self.delta()

    def call(self, x):
        if isinstance(self.base, keras.layers.Embedding):  # a lookup in the adapted table: row i + (alpha/r)·A[i]·B
            return keras.ops.take(self.embeddings, keras.ops.cast(x, "int32"), axis=0)
        if isinstance(self.base, keras.layers.EinsumDense):
            narrow = keras.ops.einsum(self.base.equation, x, self.a)  # (..., r): x·A, never x·(A·B)
        else:
            narrow = keras.ops.matmul(x, self.a)
        return self.base(x) + keras.ops.matmul(narrow, self.b) * self.scale


def _projections(model, embedding: bool = False):
    """``(owner, attribute, layer)`` for every projection of every block: four in attention, two in the FFN;
    with ``embedding``, the token embedding first (which the tied output layer reads too)."""
    if embedding:
        yield model.get_layer("embeddings"), "tokens", model.get_layer("embeddings").tokens
    for block in model.layers:
        if isinstance(block, TransformerEncoderBlock):
            for attribute in ATTENTION_PROJECTIONS:
                yield block.attention, attribute, getattr(block.attention, attribute)
            for attribute in FEED_FORWARD:
                yield block, attribute, getattr(block, attribute)


def _replace(owner, attribute, layer) -> None:
    """Put ``layer`` where ``owner.attribute`` was (Keras locks a built layer's state: unlock it, as ``enable_lora`` does)."""
    old = getattr(owner, attribute)
    owner._tracker.unlock()
    owner._tracker.untrack(old)  # tracked once, inside the wrapper (or, unwrapped again, by its owner)
    setattr(owner, attribute, layer)
    owner._tracker.lock()


def freeze(model) -> None:
    """Make every weight of ``model`` non-trainable (the adapters added afterwards are the only trainable ones)."""
    model.trainable = True
    for variable in model.weights:
        variable.trainable = False


def _tie(model, table) -> None:
    """Point the GPT's tied output layer at ``table`` (the token embedding, wrapped or not)."""
    if "logits" in [layer.name for layer in model.layers]:
        object.__setattr__(model.get_layer("logits"), "_embedding", (table,))  # a reference, not a sub-layer to track


def add_lora(model, rank: int, alpha: float | None = None, seed: int | None = None, embedding: bool = False) -> list[LoRA]:
    """Freeze ``model`` (a :func:`~bigmodel_utils.models.gpt.build_gpt` model) and wrap every projection in a :class:`LoRA`.

    Every block's query, key, value and output projections and both feed-forward layers get an adapter; with
    ``embedding``, the token embedding too (and so the tied output layer: new tokens need it, chapter 14). The
    rest (position embedding, layer norms, biases) stays frozen. Returns the adapters, in order.
    """
    if any(isinstance(layer, LoRA) for _, _, layer in _projections(model, True)):
        raise ValueError("this model already has LoRA adapters: merge them (merge_lora) or start from the base model")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    freeze(model)
    adapters = []
    for owner, attribute, layer in _projections(model, embedding):
        adapter = LoRA(layer, rank, alpha)
        _replace(owner, attribute, adapter)
        adapters.append(adapter)
        if isinstance(layer, keras.layers.Embedding):
            _tie(model, adapter)
    return adapters


def enable_keras_lora(model, rank: int, alpha: float | None = None, embedding: bool = False) -> list:
    """The same with Keras's built-in ``layer.enable_lora``: freeze everything, then enable LoRA on each projection
    (and, with ``embedding``, on the token embedding, whose adapted table the tied output layer reads)."""
    freeze(model)
    layers = [layer for _, _, layer in _projections(model, embedding)]
    for layer in layers:
        layer.enable_lora(rank, lora_alpha=alpha)
    return layers


def adapters_of(model) -> list[LoRA]:
    return [layer for _, _, layer in _projections(model, True) if isinstance(layer, LoRA)]


def merge_lora(model) -> int:
    """Fold every adapter into its base kernel (``W += (alpha / r)·A·B``) and unwrap it; returns how many were merged.

    The merged model has the base model's shape and speed again, and computes what the adapted one did (to
    float32 rounding).
    """
    merged = 0
    for owner, attribute, layer in list(_projections(model, True)):
        if isinstance(layer, LoRA):
            table = LoRA._table(layer.base)
            table.assign(table + layer.delta())
            _replace(owner, attribute, layer.base)
            if isinstance(layer.base, keras.layers.Embedding):
                _tie(model, layer.base)
            merged += 1
    return merged


def save_adapters(model, path: str | Path, info: dict | None = None) -> Path:
    """Save only the adapters' ``A`` and ``B`` (and ``rank``, ``alpha``, ``info``) to one ``.npz`` file."""
    adapters = adapters_of(model)
    if not adapters:
        raise ValueError("the model has no LoRA adapters to save (add_lora adds them)")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"adapters are saved as .npz, got {path.name}")
    arrays = {}
    for i, adapter in enumerate(adapters):
        arrays[f"a_{i}"] = keras.ops.convert_to_numpy(adapter.a)
        arrays[f"b_{i}"] = keras.ops.convert_to_numpy(adapter.b)
    meta = {"rank": adapters[0].rank, "alpha": adapters[0].alpha, "count": len(adapters), "info": info or {},
            "embedding": isinstance(adapters[0].base, keras.layers.Embedding)}
    np.savez(path, meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)
    return path


def load_adapters(model, path: str | Path) -> dict:
    """Add adapters to a base ``model`` and load their ``A`` and ``B`` from :func:`save_adapters`'s file; returns its info."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: save the adapters with save_adapters first")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(f"{path} is not an adapter file saved by save_adapters ({error})") from None
    adapters = add_lora(model, meta["rank"], meta["alpha"], embedding=meta.get("embedding", False))
    if len(adapters) != meta["count"]:
        raise ValueError(f"{path} holds {meta['count']} adapters but this model has {len(adapters)} projections: "
                         "load them into the model they were trained on")
    for i, adapter in enumerate(adapters):
        a, b = arrays[f"a_{i}"], arrays[f"b_{i}"]
        if a.shape != tuple(adapter.a.shape) or b.shape != tuple(adapter.b.shape):
            raise ValueError(f"adapter {i} in {path} has shapes {a.shape}, {b.shape}; this model needs "
                             f"{tuple(adapter.a.shape)}, {tuple(adapter.b.shape)}")
        adapter.a.assign(a)
        adapter.b.assign(b)
    return meta["info"]
