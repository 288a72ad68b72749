"""The arithmetic of large models: parameters, memory and compute (chapter 01; memory again in chapter 09).

Closed-form parameter counts for the layers the book builds, checked in chapter 01 against what Keras
counts; a :class:`TransformerShape` that turns a published architecture into parameters, memory and
training compute (≈ 6·N·D floating-point operations for N parameters and D training tokens).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


def _positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


# --- layers -----------------------------------------------------------------------------------------


def dense_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """A fully connected layer: an ``n_in x n_out`` weight matrix plus ``n_out`` biases."""
    _positive(n_in=n_in, n_out=n_out)
    return n_in * n_out + (n_out if bias else 0)


def mlp_params(sizes: list[int] | tuple[int, ...]) -> int:
    """A stack of dense layers with widths ``sizes`` (input first): the sum of :func:`dense_params`."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs an input size and at least one layer, got {sizes!r}")
    return sum(dense_params(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def conv2d_params(kernel: int | tuple[int, int], c_in: int, c_out: int, bias: bool = True) -> int:
    """A 2-D convolution: one ``kh x kw x c_in`` kernel per output channel, plus a bias each."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    _positive(kh=kh, kw=kw, c_in=c_in, c_out=c_out)
    return kh * kw * c_in * c_out + (c_out if bias else 0)


def embedding_params(vocab_size: int, dim: int) -> int:
    """An embedding table: one ``dim``-vector per token of the vocabulary."""
    _positive(vocab_size=vocab_size, dim=dim)
    return vocab_size * dim


def lstm_params(n_in: int, units: int) -> int:
    """An LSTM layer: three gates (input, forget, output) and a candidate cell value, so four blocks of weights,
    each with input weights, recurrent weights and a bias."""
    _positive(n_in=n_in, units=units)
    return 4 * (n_in * units + units * units + units)


def gru_params(n_in: int, units: int, reset_after: bool = True) -> int:
    """A GRU layer: two gates (update, reset) and a candidate, so three blocks of weights, each with input weights,
    recurrent weights and a bias (two bias vectors each with Keras's default ``reset_after=True``)."""
    _positive(n_in=n_in, units=units)
    return 3 * (n_in * units + units * units + units * (2 if reset_after else 1))


def layer_norm_params(dim: int) -> int:
    """Layer normalisation: a scale and an offset per feature."""
    _positive(dim=dim)
    return 2 * dim


def attention_params(d_model: int, n_heads: int, key_dim: int | None = None, bias: bool = True) -> int:
    """Multi-head attention as in ``keras.layers.MultiHeadAttention``: query, key, value and output
    projections (``key_dim`` defaults to ``d_model // n_heads``)."""
    key_dim = d_model // n_heads if key_dim is None else key_dim
    _positive(d_model=d_model, n_heads=n_heads, key_dim=key_dim)
    inner = n_heads * key_dim
    return 4 * d_model * inner + ((3 * inner + d_model) if bias else 0)


def transformer_block_params(d_model: int, n_heads: int, d_ff: int) -> int:
    """One Transformer encoder block: attention, a two-layer feed-forward network, two layer norms."""
    _positive(d_ff=d_ff)
    return (
        attention_params(d_model, n_heads)
        + dense_params(d_model, d_ff)
        + dense_params(d_ff, d_model)
        + 2 * layer_norm_params(d_model)
    )


# --- whole Transformers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerShape:
    """A Transformer's published shape. ``kind`` is ``"bert"`` (encoder with token-type embeddings,
    an embedding layer norm and a pooler) or ``"gpt"`` (decoder with a final layer norm and output
    weights tied to the token embedding)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int
    max_positions: int
    d_ff: int | None = None  # default 4 * d_model
    kind: str = "gpt"
    type_vocab_size: int = 2  # bert only
    published_params: float | None = None
    source: str = ""

    def __post_init__(self):
        _positive(n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                  vocab_size=self.vocab_size, max_positions=self.max_positions)
        if self.d_ff is not None:
            _positive(d_ff=self.d_ff)
        if self.kind not in {"bert", "gpt"}:
            raise ValueError(f"kind must be 'bert' or 'gpt', got {self.kind!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def ff(self) -> int:
        return self.d_ff or 4 * self.d_model

    def embedding_params(self) -> int:
        n = embedding_params(self.vocab_size, self.d_model) + embedding_params(self.max_positions, self.d_model)
        if self.kind == "bert":
            n += embedding_params(self.type_vocab_size, self.d_model) + layer_norm_params(self.d_model)
        return n

    def block_params(self) -> int:
        return transformer_block_params(self.d_model, self.n_heads, self.ff)

    def params(self) -> int:
        """Every parameter: embeddings, ``n_layers`` blocks, and the final norm (GPT) or pooler (BERT)."""
        head = layer_norm_params(self.d_model) if self.kind == "gpt" else dense_params(self.d_model, self.d_model)
        return self.embedding_params() + self.n_layers * self.block_params() + head

    def relative_error(self) -> float | None:
        """(ours - published) / published, or None when no published count is known."""
        if self.published_params is None:
            return None
        return (self.params() - self.published_params) / self.published_params


def weight_memory_bytes(n_params: int | float, dtype: str = "fp32") -> float:
    """Bytes to store the weights alone (inference) at ``dtype``: fp32, fp16, bf16, int8 or int4."""
    if dtype not in BYTES_PER_PARAM:
        raise KeyError(f"unknown dtype {dtype!r}; known: {', '.join(BYTES_PER_PARAM)}")
    if n_params < 0:
        raise ValueError(f"n_params must be non-negative, got {n_params}")
    return n_params * BYTES_PER_PARAM[dtype]


def adam_training_bytes(n_params: int | float, mixed_precision: bool = False) -> float:
    """Bytes of training state with Adam, activations not included.

    fp32 training keeps weights, gradients and Adam's two moments: 4 + 4 + 4 + 4 = 16 bytes a parameter.
    Mixed precision keeps bf16/fp16 weights and gradients (2 + 2) *plus* an fp32 master copy and the two
    fp32 moments (4 + 4 + 4): also 16 bytes. It saves time and activation memory, not weight state.
    """
    if n_params < 0:
        raise ValueError(f"n_params must be non-negative, got {n_params}")
    return n_params * (2 + 2 + 4 + 4 + 4 if mixed_precision else 4 + 4 + 4 + 4)


def activation_bytes(n_layers: int, d_model: int, n_heads: int, seq_len: int, batch: int = 1,
                     recompute: bool = False) -> float:
    """Activations a Transformer keeps for the backward pass, in 16-bit precision (chapter 09).

    Per layer ``s·b·h·(34 + 5·a·s/h)`` bytes for sequence length ``s``, batch ``b``, width ``h`` and
    ``a`` heads (Korthikanti et al. 2022, "Reducing activation recomputation in large transformer
    models", eq. 1: the inputs of every matrix product, the softmax and its dropout mask, the norms).
    The ``5·a·s/h`` term is the ``s × s`` attention matrices, which grow with the square of the
    sequence. With ``recompute=True`` (full activation checkpointing) only each layer's input is kept,
    ``2·s·b·h`` bytes, and the rest is computed again during the backward pass.
    """
    _positive(n_layers=n_layers, d_model=d_model, n_heads=n_heads, seq_len=seq_len, batch=batch)
    s, b, h, a = seq_len, batch, d_model, n_heads
    per_layer = 2 * s * b * h if recompute else s * b * h * (34 + 5 * a * s / h)
    return float(n_layers * per_layer)


def training_flops(n_params: int | float, n_tokens: int | float) -> float:
    """Training compute ≈ 6·N·D: per token, a forward pass costs about 2 FLOPs a parameter (a multiply
    and an add) and the backward pass about twice the forward."""
    if n_params < 0 or n_tokens < 0:
        raise ValueError("n_params and n_tokens must be non-negative")
    return 6.0 * n_params * n_tokens


def training_plan(n_params: float, n_tokens: float, n_devices: int, flops_per_device: float, utilisation: float,
                  device_memory_bytes: float = 80 * 2**30) -> dict[str, float]:
    """What training ``n_params`` parameters on ``n_tokens`` tokens asks of ``n_devices`` devices (chapter 01's widget).

    Each device reaches ``utilisation`` of its peak ``flops_per_device`` (FLOP/s). Returns the compute (6·N·D), the
    training days, the Adam training state (16 bytes a parameter, activations not counted) and how many devices of
    ``device_memory_bytes`` that state alone fills.
    """
    for name, value in (("n_params", n_params), ("n_tokens", n_tokens)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not (isinstance(n_devices, int) and not isinstance(n_devices, bool) and n_devices >= 1):
        raise ValueError(f"n_devices must be a whole number >= 1, got {n_devices!r}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation is a share of the peak speed, in (0, 1], got {utilisation!r}")
    if flops_per_device <= 0 or device_memory_bytes <= 0:
        raise ValueError("flops_per_device and device_memory_bytes must be positive")
    flops = training_flops(n_params, n_tokens)
    state = adam_training_bytes(n_params)
    return {"flops": flops,
            "days": flops / (n_devices * flops_per_device * utilisation) / 86_400,
            "training_state_bytes": state,
            "devices_to_hold_state": math.ceil(state / device_memory_bytes)}


def training_flops_per_token(n_matmul_params: int | float, n_layers: int, context: int, d_model: int,
                             causal: bool = True) -> float:
    """Training FLOPs per token of a Transformer, attention included (Kaplan et al. 2020, Table 1, times 3).

    The forward pass costs ``2·N`` for the weights that multiply (``N`` without the embedding lookups) plus, per
    layer, the attention scores ``Q·Kᵀ`` and the weighted sum of the values, which grow with the context: each
    ``2·context·d_model`` for a token that attends to the whole context (``causal=False``, BERT), half that on
    average for a causal model, whose token attends only to those before it (Kaplan's ``2·n_layers·context·d_model``
    in all). The backward pass costs twice the forward. Chapter 01 checks it against XLA's count of a compiled
    training step (:func:`xla_flops`); chapter 13 uses it for model FLOPs utilisation.
    """
    _positive(n_layers=n_layers, context=context, d_model=d_model)
    if n_matmul_params < 0:
        raise ValueError(f"n_matmul_params must be non-negative, got {n_matmul_params}")
    attention = 2.0 * n_layers * context * d_model * (1 if causal else 2)
    return 3.0 * (2.0 * n_matmul_params + attention)


_HLO_DOT = re.compile(r"=\s*\w+\[([\d,]*)\][^=]*?\sdot\(\w+\[([\d,]*)\]")
_HLO_CONTRACT = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def hlo_dot_flops(hlo: str) -> float:
    """The FLOPs of every matrix product (``dot``) in XLA's HLO text: 2 x output elements x contracted size."""
    total = 0.0
    for line in hlo.splitlines():
        if " dot(" not in line:
            continue
        shapes, contract = _HLO_DOT.search(line), _HLO_CONTRACT.search(line)
        if shapes is None or contract is None:
            raise ValueError(f"cannot read this HLO dot instruction: {line.strip()[:200]}")
        out = [int(d) for d in shapes.group(1).split(",") if d]
        lhs = [int(d) for d in shapes.group(2).split(",") if d]
        k = math.prod(lhs[int(i)] for i in contract.group(1).split(",") if i)
        total += 2.0 * math.prod(out) * k
    return total


def xla_flops(function, *args) -> float:
    """FLOPs of one call of ``function(*args)`` (tensors in, tensors out), counted by XLA: the function is compiled
    with ``tf.function(jit_compile=True)`` and every matrix product of its HLO program is counted
    (:func:`hlo_dot_flops`). Element-wise work (activations, softmax, normalisation, the optimizer's update) is
    not counted: it is a few FLOPs per element, not per parameter. Chapter 01 uses it to check ``6·N·D``."""
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    compiled = tf.function(function, jit_compile=True)
    hlo = compiled.experimental_get_compiler_ir(*args)(stage="hlo")
    if " convolution(" in hlo:
        raise ValueError("the function holds a convolution: xla_flops counts matrix products only")
    return hlo_dot_flops(hlo)


def kv_cache_bytes(layers: int, heads: int, head_size: int, positions: int, batch: int = 1, bytes_per_value: int = 4) -> int:
    """Memory of a KV cache: 2 (keys and values) x layers x heads x head size x positions x batch x bytes.

    A generating Transformer keeps each layer's keys and values of every token read so far (chapter 13), so that
    each step computes only the newest token; chapter 09's memory table lists it next to the weights.
    """
    for name, v in {"layers": layers, "heads": heads, "head_size": head_size, "positions": positions, "batch": batch,
                    "bytes_per_value": bytes_per_value}.items():
        if int(v) < 1:
            raise ValueError(f"{name} must be positive, got {v}")
    return 2 * layers * heads * head_size * positions * batch * bytes_per_value


def inference_flops_per_token(n_params: int | float) -> float:
    """Forward pass only: ≈ 2·N FLOPs per token."""
    if n_params < 0:
        raise ValueError(f"n_params must be non-negative, got {n_params}")
    return 2.0 * n_params


def human_bytes(n: float) -> str:
    """``1.5e9`` -> ``'1.40 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    raise AssertionError("unreachable")


#: Published shapes, from the papers: BERT (Devlin et al., 2019, §3), GPT-2 (Radford et al., 2019,
#: Table 2; vocabulary and context from §2.3) and GPT-3 (Brown et al., 2020, Table 2.1; d_ff = 4·d_model,
#: vocabulary and context 2048 from §2.1). GPT-2's 117M for its smallest model is a known miscount in
#: the paper: the released checkpoint has 124,439,808 parameters, so that row is not in this table.
PUBLISHED = [
    TransformerShape("BERT-base", 12, 768, 12, 30522, 512, kind="bert", published_params=110e6, source="Devlin et al. 2019"),
    TransformerShape("BERT-large", 24, 1024, 16, 30522, 512, kind="bert", published_params=340e6, source="Devlin et al. 2019"),
    TransformerShape("GPT-2 XL", 48, 1600, 25, 50257, 1024, published_params=1542e6, source="Radford et al. 2019"),
    TransformerShape("GPT-3 Small", 12, 768, 12, 50257, 2048, published_params=125e6, source="Brown et al. 2020"),
    TransformerShape("GPT-3 Medium", 24, 1024, 16, 50257, 2048, published_params=350e6, source="Brown et al. 2020"),
    TransformerShape("GPT-3 6.7B", 32, 4096, 32, 50257, 2048, published_params=6.7e9, source="Brown et al. 2020"),
    # the paper prints d_model = 5140 for 13B; 40 heads x 128 = 5120 is the consistent reading
    TransformerShape("GPT-3 13B", 40, 5120, 40, 50257, 2048, published_params=13e9, source="Brown et al. 2020"),
    TransformerShape("GPT-3 175B", 96, 12288, 96, 50257, 2048, published_params=175e9, source="Brown et al. 2020"),
]

#: GPT-2 small as released (the paper's "117M" miscounts it); see :data:`PUBLISHED`.
GPT2_SMALL = TransformerShape("GPT-2 small", 12, 768, 12, 50257, 1024, published_params=124_439_808, source="released checkpoint")


def matmul_gflops(n: int = 1024, repeats: int = 5, device: str = "/CPU:0") -> float:
    """Measured speed of this machine's float32 ``n x n`` matrix product, in GFLOP/s (chapter 00; used in 01).

    A product of two ``n x n`` matrices takes ``2 n^3`` floating-point operations (a multiply and an add
    for each of the ``n`` terms of each of the ``n^2`` outputs). The best of ``repeats`` timed runs is
    taken, after one untimed warm-up that pays one-off set-up costs.
    """
    import time

    from bigmodel_utils.notebook import quiet_tensorflow

    if not isinstance(n, int) or n < 1 or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"n and repeats must be positive integers, got {n!r}, {repeats!r}")
    quiet_tensorflow()
    import tensorflow as tf

    with tf.device(device):
        a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
        (a @ b).numpy()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            (a @ b).numpy()  # .numpy() waits for the result
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
