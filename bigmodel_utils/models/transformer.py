"""The Transformer encoder as Keras 3 layers (chapter 07).

``TransformerEncoderBlock`` supports both block layouts in use: post-LN (the original Transformer and BERT,
so BERT checkpoints load into it) and pre-LN (easier to train from scratch), exact and tanh-approximated
GELU, and a causal mask (GPT). Importing this module imports Keras and registers the layers, so models
saved with them load with ``keras.saving.load_model``. The NumPy reference is
:mod:`bigmodel_utils.models.attention`.
"""

from __future__ import annotations

from bigmodel_utils.notebook import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402  (after quiet_tensorflow, which silences TensorFlow's start-up log)


def gelu(x, approximate: bool = False):
    """GELU: x * Phi(x); exact (erf) as BERT was trained, or the tanh approximation."""
    return keras.activations.gelu(x, approximate=approximate)


@keras.saving.register_keras_serializable(package="bigmodel")
class PositionalEmbedding(keras.layers.Layer):
    """Token embedding plus a learned embedding of each position (BERT-style), optionally token types."""

    def __init__(self, vocab_size: int, max_length: int, d_model: int, type_vocab_size: int = 0, mask_zero: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.mask_zero = bool(mask_zero)  # id 0 is padding (BERT); a GPT's stream has none
        for name, v in {"vocab_size": vocab_size, "max_length": max_length, "d_model": d_model}.items():
            if int(v) < 1:
                raise ValueError(f"{name} must be positive, got {v}")
        self.vocab_size, self.max_length, self.d_model = int(vocab_size), int(max_length), int(d_model)
        self.type_vocab_size = int(type_vocab_size)
        self.tokens = keras.layers.Embedding(self.vocab_size, self.d_model, name="tokens")
        self.positions = keras.layers.Embedding(self.max_length, self.d_model, name="positions")
        self.types = keras.layers.Embedding(self.type_vocab_size, self.d_model, name="types") if self.type_vocab_size else None

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions.build(input_shape)
        if self.types is not None:
            self.types.build(input_shape)
        super().build(input_shape)

    def call(self, token_ids, token_types=None):
        length = keras.ops.shape(token_ids)[-1]
        if isinstance(length, int) and length > self.max_length:  # known now (eager or a fixed shape): say so plainly
            raise ValueError(f"{length} tokens do not fit the {self.max_length} positions of {self.name}: "
                             f"cut or split the input to at most {self.max_length} tokens")
        x = self.tokens(token_ids) + self.positions(keras.ops.arange(length))[None]
        if self.types is not None:
            types = keras.ops.zeros_like(token_ids) if token_types is None else token_types
            x = x + self.types(types)
        return x

    def compute_mask(self, token_ids, mask=None):
        return keras.ops.not_equal(token_ids, 0) if self.mask_zero else None

    def get_config(self):
        return super().get_config() | {"vocab_size": self.vocab_size, "max_length": self.max_length,
                                       "d_model": self.d_model, "type_vocab_size": self.type_vocab_size,
                                       "mask_zero": self.mask_zero}

@keras.saving.register_keras_serializable(package="bigmodel")
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention and a feed-forward network, each with a residual connection and layer norm.

    ``norm_first=False`` (post-LN, BERT): x = LN(x + Attn(x)); x = LN(x + FFN(x)).
    ``norm_first=True`` (pre-LN): x = x + Attn(LN(x)); x = x + FFN(LN(x)).
    ``causal=True`` lets each position attend only to itself and earlier positions (GPT).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False,
                 approximate_gelu: bool = False, causal: bool = False, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        if int(d_ff) < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"d_ff must be positive and dropout in [0, 1), got {d_ff}, {dropout}")
        self.d_model, self.n_heads, self.d_ff = int(d_model), int(n_heads), int(d_ff)
        self.dropout_rate, self.norm_first = float(dropout), bool(norm_first)
        self.approximate_gelu, self.causal, self.epsilon = bool(approximate_gelu), bool(causal), float(epsilon)
        self.attention = keras.layers.MultiHeadAttention(self.n_heads, self.d_model // self.n_heads, dropout=self.dropout_rate, name="attention")
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.epsilon, name="norm1")
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.epsilon, name="norm2")
        self.ff1 = keras.layers.Dense(self.d_ff, name="ff1")
        self.ff2 = keras.layers.Dense(self.d_model, name="ff2")
        self.drop = keras.layers.Dropout(self.dropout_rate)
        self.supports_masking = True

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.norm1.build(input_shape)
        self.norm2.build(input_shape)
        self.ff1.build(input_shape)
        self.ff2.build(tuple(input_shape[:-1]) + (self.d_ff,))
        super().build(input_shape)

    def _ffn(self, x, training):
        return self.drop(self.ff2(gelu(self.ff1(x), self.approximate_gelu)), training=training)

    def call(self, x, mask=None, training=False, return_attention=False):
        n = keras.ops.shape(x)[1]
        attention_mask = None
        if mask is not None:  # no position attends to padding (BERT masks keys, not queries)
            attention_mask = keras.ops.repeat(keras.ops.cast(mask, "bool")[:, None, :], n, axis=1)
        if self.causal:  # position i attends to positions j <= i only (GPT)
            lower = keras.ops.tril(keras.ops.ones((n, n), dtype="bool"))[None]
            attention_mask = lower if attention_mask is None else keras.ops.logical_and(attention_mask, lower)
        h = self.norm1(x) if self.norm_first else x
        attn, scores = self.attention(h, h, attention_mask=attention_mask, training=training, return_attention_scores=True)
        attn = self.drop(attn, training=training)
        if self.norm_first:
            x = x + attn
            x = x + self._ffn(self.norm2(x), training)
        else:
            x = self.norm1(x + attn)
            x = self.norm2(x + self._ffn(x, training))
        return (x, scores) if return_attention else x

    def compute_mask(self, x, mask=None):
        return mask

    def get_config(self):
        return super().get_config() | {
            "d_model": self.d_model, "n_heads": self.n_heads, "d_ff": self.d_ff, "dropout": self.dropout_rate,
            "norm_first": self.norm_first, "approximate_gelu": self.approximate_gelu, "causal": self.causal,
            "epsilon": self.epsilon,
        }


def gather_positions(hidden, positions):
    """``hidden[b, positions[b, p]]`` for every row ``b``: (batch, length, d) -> (batch, P, d)."""
    return keras.ops.take_along_axis(hidden, keras.ops.expand_dims(keras.ops.cast(positions, "int32"), -1), axis=1)


@keras.saving.register_keras_serializable(package="bigmodel")
class GatherPositions(keras.layers.Layer):
    """The hidden states at the masked positions only, for BERT's MLM head (a saveable layer, unlike a ``Lambda``)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the padding mask is used up here: targets are never padding

    def call(self, hidden, positions, mask=None):
        return gather_positions(hidden, positions)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, hidden_shape, positions_shape):
        return tuple(positions_shape) + (hidden_shape[-1],)


class TiedLogits(keras.layers.Layer):
    """Scores against an ``Embedding``'s matrix plus a bias: BERT ties its output layer to its input embeddings
    (GPT-2 too, without the bias: ``use_bias=False``).

    It holds a reference to the encoder's embedding layer, so it is not serialisable on its own: save the
    weights of a model that uses it (``save_weights``) and rebuild the model to load them.
    """

    def __init__(self, embedding, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self._embedding = (embedding,)  # a plain tuple: the embedding's weights stay owned by the encoder
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        if self.use_bias:
            self.bias = self.add_weight(shape=(self._embedding[0].input_dim,), initializer="zeros", name="bias")

    def call(self, h):
        embedding = self._embedding[0]
        if getattr(embedding, "quantization_mode", None) == "int8":  # model.quantize("int8") (chapter 14)
            # the table is stored as int8 rows with one float scale each (row = int8 / scale): multiply by the
            # int8 table, then divide each token's score by its row's scale
            table = keras.ops.cast(embedding._embeddings, self.compute_dtype)
            logits = keras.ops.matmul(h, keras.ops.transpose(table)) / embedding.embeddings_scale
        elif getattr(embedding, "quantization_mode", None):
            raise NotImplementedError(f"tied logits read an Embedding quantized as {embedding.quantization_mode!r}; "
                                      "only int8 is supported: use model.quantize('int8')")
        else:
            logits = keras.ops.matmul(h, keras.ops.transpose(embedding.embeddings))
        return logits + self.bias if self.use_bias else logits


def build_encoder(vocab_size: int, max_length: int, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                  type_vocab_size: int = 2, norm_first: bool = False, approximate_gelu: bool = False,
                  epsilon: float = 1e-12, dropout: float = 0.1, name: str = "encoder") -> keras.Model:
    """A BERT-style encoder: token ids (0 = padding) -> one ``d_model`` vector per position.

    Embeddings (token + position + token type), then, for post-LN models (BERT, ``norm_first=False``), a
    layer norm on the embeddings, then ``n_layers`` :class:`TransformerEncoderBlock`s; pre-LN models end
    with a final layer norm instead. Chapter 07 builds its mini-BERT and loads all-MiniLM-L6-v2 with this.
    """
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = PositionalEmbedding(vocab_size, max_length, d_model, type_vocab_size, name="embeddings")(ids)
    if not norm_first:
        x = keras.layers.LayerNormalization(epsilon=epsilon, name="embeddings_norm")(x)
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)
    for i in range(n_layers):
        x = TransformerEncoderBlock(d_model, n_heads, d_ff, dropout=dropout, norm_first=norm_first,
                                    approximate_gelu=approximate_gelu, epsilon=epsilon, name=f"block_{i}")(x)
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=epsilon, name="final_norm")(x)
    return keras.Model(ids, x, name=name)
