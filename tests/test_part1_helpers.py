"""bigmodel_utils.scale, .scratch, .tabular and .glossary: right answers and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigmodel_utils import scale, scratch, tabular
from bigmodel_utils.glossary import glossary, glossary_rows

# --- scale ----------------------------------------------------------------------------------------


def test_layer_formulas_match_keras():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras

    cases = [
        (keras.layers.Dense(7), (None, 5), scale.dense_params(5, 7)),
        (keras.layers.Conv2D(4, (3, 2)), (None, 9, 9, 3), scale.conv2d_params((3, 2), 3, 4)),
        (keras.layers.Embedding(11, 6), (None, 4), scale.embedding_params(11, 6)),
        (keras.layers.LSTM(5), (None, 4, 3), scale.lstm_params(3, 5)),
        (keras.layers.GRU(5), (None, 4, 3), scale.gru_params(3, 5)),
        (keras.layers.LayerNormalization(), (None, 8), scale.layer_norm_params(8)),
    ]
    for layer, shape, expected in cases:
        layer.build(shape)
        assert layer.count_params() == expected, layer.name
    mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    x = np.zeros((1, 3, 32), dtype="float32")
    mha(x, x)
    assert mha.count_params() == scale.attention_params(32, 4)


def test_published_shapes_within_two_percent_and_gpt2_exact():
    for s in scale.PUBLISHED:
        assert abs(s.relative_error()) < 0.02, s.name
    assert scale.GPT2_SMALL.params() == 124_439_808


def test_memory_and_compute():
    assert scale.weight_memory_bytes(1000, "bf16") == 2000
    assert scale.adam_training_bytes(10) == scale.adam_training_bytes(10, mixed_precision=True) == 160
    assert scale.training_flops(2, 3) == 36 and scale.inference_flops_per_token(5) == 10
    # GPT-3 175B (Kaplan's attention term at context 2048): the weights dominate, attention adds about 1.4 %
    per_token = scale.training_flops_per_token(174.6e9, 96, 2048, 12288)
    assert per_token - 6 * 174.6e9 == pytest.approx(6 * 96 * 2048 * 12288) and 0.01 < per_token / (6 * 174.6e9) - 1 < 0.02
    with pytest.raises(ValueError):
        scale.training_flops_per_token(1, 0, 1, 1)
    # a token that attends to the whole context costs twice the attention FLOPs of a causal one
    full = scale.training_flops_per_token(174.6e9, 96, 2048, 12288, causal=False)
    assert full - 6 * 174.6e9 == pytest.approx(2 * (per_token - 6 * 174.6e9))
    assert scale.human_bytes(1536) == "1.50 KiB" and scale.human_bytes(10) == "10 B"


def test_activation_bytes_follow_korthikanti_et_al():
    # one layer, s=4, b=1, h=8, a=2: 4*8*(34 + 5*2*4/8) = 32 * 39 bytes
    assert scale.activation_bytes(1, 8, 2, 4) == 32 * 39
    assert scale.activation_bytes(3, 8, 2, 4, batch=2) == 3 * 2 * 32 * 39
    assert scale.activation_bytes(3, 8, 2, 4, batch=2, recompute=True) == 3 * 2 * 2 * 4 * 8
    # the attention term grows with the square of the sequence
    assert scale.activation_bytes(1, 64, 8, 4096) > 4 * scale.activation_bytes(1, 64, 8, 1024) * 0.99


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: scale.dense_params(0, 3), ValueError),
        (lambda: scale.dense_params(3, -1), ValueError),
        (lambda: scale.conv2d_params(3, 1.5, 2), ValueError),
        (lambda: scale.mlp_params([5]), ValueError),
        (lambda: scale.lstm_params(True, 3), ValueError),
        (lambda: scale.weight_memory_bytes(10, "fp8e9"), KeyError),
        (lambda: scale.weight_memory_bytes(-1), ValueError),
        (lambda: scale.adam_training_bytes(-1), ValueError),
        (lambda: scale.training_flops(-1, 1), ValueError),
        (lambda: scale.activation_bytes(1, 8, 2, 0), ValueError),
        (lambda: scale.TransformerShape("x", 2, 10, 3, 100, 10), ValueError),  # 10 not divisible by 3
        (lambda: scale.TransformerShape("x", 2, 12, 3, 100, 10, kind="t5"), ValueError),
        (lambda: scale.TransformerShape("x", 0, 12, 3, 100, 10), ValueError),
    ],
)
def test_scale_bad_input(call, error):
    with pytest.raises(error, match=r"\w"):
        call()


# --- scratch --------------------------------------------------------------------------------------


def test_softmax_and_sigmoid_are_stable():
    z = np.array([[1000.0, 1001.0], [-1000.0, -999.0]])
    p = scratch.softmax(z)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1)
    s = scratch.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert np.allclose(s, [0, 0.5, 1])


def test_backprop_matches_central_differences():
    params = scratch.init_mlp(6, 5, 3, seed=1)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(7, 6)), rng.integers(0, 3, size=7)
    _, grads = scratch.mlp_backward(params, X, y)
    numeric = scratch.numerical_gradient(lambda: scratch.mlp_loss(params, X, y), params)
    for k in grads:
        assert scratch.relative_error(grads[k], numeric[k]) < 1e-7, k


def test_optimizers_reduce_a_quadratic():
    for opt in (scratch.GradientDescent(0.1), scratch.Momentum(0.05), scratch.Adam(0.1)):
        p = {"w": np.array([3.0, -2.0])}
        for _ in range(200):
            opt.step(p, {"w": 2 * p["w"]})
        assert np.linalg.norm(p["w"]) < 0.05, type(opt).__name__


def test_line_problem_hessian_matches_finite_differences():
    x, y = scratch.line_data(n=50, seed=3)
    H = scratch.line_hessian(x)
    theta, h = np.array([0.5, -1.0]), 1e-5
    numeric = np.column_stack([
        (scratch.line_loss_and_grad(theta + h * e, x, y)[1] - scratch.line_loss_and_grad(theta - h * e, x, y)[1]) / (2 * h)
        for e in np.eye(2)
    ])
    assert np.allclose(H, numeric, atol=1e-6)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: scratch.mse(np.zeros(3), np.zeros(4)), ValueError),
        (lambda: scratch.binary_cross_entropy(np.full(2, 0.5), np.array([0, 2])), ValueError),
        (lambda: scratch.categorical_cross_entropy(np.zeros(3), np.zeros(3)), ValueError),
        (lambda: scratch.categorical_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError),
        (lambda: scratch.categorical_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError),
        (lambda: scratch.init_mlp(0, 2, 2), ValueError),
        (lambda: scratch.mlp_forward(scratch.init_mlp(3, 2, 2), np.zeros((4, 5))), ValueError),
        (lambda: scratch.mlp_backward(scratch.init_mlp(3, 2, 2), np.zeros((4, 3)), np.zeros(5, dtype=int)), ValueError),
        (lambda: scratch.numerical_gradient(lambda: 0.0, {}, eps=0), ValueError),
        (lambda: scratch.GradientDescent(-0.1), ValueError),
        (lambda: scratch.Momentum(0.1, momentum=1.0), ValueError),
        (lambda: scratch.Adam(0.1, beta1=1.0), ValueError),
        (lambda: scratch.GradientDescent(0.1).step({"a": np.zeros(2)}, {"b": np.zeros(2)}), KeyError),
        (lambda: scratch.GradientDescent(0.1).step({"a": np.zeros(2)}, {"a": np.zeros(3)}), ValueError),
        (lambda: scratch.line_data(n=1), ValueError),
        (lambda: scratch.line_loss_and_grad(np.zeros(3), np.zeros(2), np.zeros(2)), ValueError),
    ],
)
def test_scratch_bad_input(call, error):
    with pytest.raises(error, match=r"\w"):
        call()


# --- tabular --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw():
    from bigmodel_utils.data import load_dataset

    return load_dataset("penguins_raw")


def test_clean_penguins(raw):
    dirty = raw.copy()
    dirty.loc[0, "Sex"] = "."  # a code some copies of this table use for "unknown"
    df = tabular.clean_penguins(dirty)
    assert len(df) == 342 and pd.isna(df.loc[0, "sex"])
    assert list(df["sex"].cat.categories) == ["female", "male"]
    assert df["body_mass_g"].min() > 2000
    with pytest.raises(KeyError, match="not the raw penguins table"):
        tabular.clean_penguins(df)


def test_split_frame_is_stratified_disjoint_and_fixed(raw):
    df = tabular.clean_penguins(raw)
    a = tabular.split_frame(df, "species", seed=3)
    b = tabular.split_frame(df, "species", seed=3)
    assert all(x.index.equals(y.index) for x, y in zip(a, b))
    train, val, test = a
    assert len(train) + len(val) + len(test) == len(df)
    assert not (set(train.index) & set(test.index))
    overall = df["species"].value_counts(normalize=True)
    assert (train["species"].value_counts(normalize=True) - overall).abs().max() < 0.02
    sexed = tabular.split_frame(df, "sex", seed=0)
    assert sum(len(p) for p in sexed) == df["sex"].notna().sum()  # unknown targets dropped


@pytest.mark.parametrize("kwargs, error", [({"target": "colour"}, KeyError), ({"target": "species", "fractions": (0.5, 0.5)}, ValueError),
                                           ({"target": "species", "fractions": (0.8, 0.3, -0.1)}, ValueError)])
def test_split_frame_bad_input(raw, kwargs, error):
    with pytest.raises(error, match=r"\w"):
        tabular.split_frame(tabular.clean_penguins(raw), **kwargs)


def test_preprocessor_learns_from_train_only(raw):
    df = tabular.clean_penguins(raw)
    train, val, test = tabular.split_frame(df, "sex", seed=0)
    pre = tabular.make_preprocessor(["body_mass_g", "delta_15n"], ["island"])
    out = pre.fit_transform(train)
    assert out.shape == (len(train), 2 + 3) and not np.isnan(out).any()
    assert np.isclose(pre.named_transformers_["num"].named_steps["scale"].mean_[0], train["body_mass_g"].mean())
    unseen = test.copy()
    unseen["island"] = "Atlantis"  # an unknown category becomes all zeros, not an error
    assert np.all(pre.transform(unseen)[:, 2:] == 0)
    with pytest.raises(ValueError, match="both numeric and categorical"):
        tabular.make_preprocessor(["island"], ["island"])
    with pytest.raises(ValueError, match="at least one"):
        tabular.make_preprocessor([], [])


def test_penguin_arrays():
    d = tabular.penguin_arrays("sex")
    assert d["classes"] == ["female", "male"]
    assert d["x_train"].dtype == np.float32 and d["x_train"].shape[1] == len(d["feature_names"])
    assert not any(n.startswith("sex") for n in d["feature_names"]), "the target is never a feature"
    assert len(d["y_test"]) == len(d["x_test"]) and set(np.unique(d["y_train"])) == {0, 1}
    with pytest.raises(ValueError, match="target"):
        tabular.penguin_arrays("island")
    with pytest.raises(ValueError, match="must not also be a feature"):
        tabular.penguin_arrays("sex", features=(["body_mass_g"], ["sex"]))


# --- glossary -------------------------------------------------------------------------------------


def test_glossary_is_consistent():
    rows = glossary_rows()
    assert len({r["english"].lower() for r in rows}) == len(rows), "an English term listed twice"
    assert len({r["chinese"] for r in rows}) == len(rows), "a Chinese term listed twice"
    assert all(0 <= r["chapter"] <= 15 and r["english"] and r["chinese"] for r in rows)
    assert {"预训练", "微调", "反向传播", "大模型即服务"} <= {r["chinese"] for r in rows}
    assert len(glossary(1)) < len(glossary())
    with pytest.raises(ValueError):
        glossary(-1)


def test_matmul_gflops_measures_something_sane():
    rate = scale.matmul_gflops(128, repeats=2)
    assert 0.01 < rate < 1e6  # GFLOP/s: a CPU does tens to hundreds, a GPU up to ~1e3-1e5
    with pytest.raises(ValueError):
        scale.matmul_gflops(0)


def test_xla_counts_a_matrix_product_exactly():
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    dense = keras.layers.Dense(16)
    x = tf.ones((8, 32))
    dense(x)
    assert scale.xla_flops(lambda x: dense(x), x) == 2 * 8 * 32 * 16
    hlo = "%d = f32[2,4,10,8]{3,2,1,0} dot(f32[2,4,10,10]{3,2,1,0} %a, f32[2,10,4,8]{3,2,1,0} %b), lhs_contracting_dims={3}"
    assert scale.hlo_dot_flops(hlo) == 2 * (2 * 4 * 10 * 8) * 10
    with pytest.raises(ValueError, match="cannot read"):
        scale.hlo_dot_flops("%d = dot(something unexpected)")


def test_xla_confirms_6n_plus_attention_for_a_transformer_training_step():
    """Chapter 01's check, small: XLA's count of one training step of an encoder = 6N + the attention term."""
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    from bigmodel_utils.models.transformer import TransformerEncoderBlock

    vocab, ctx, d, layers, batch = 50, 32, 64, 2, 4
    ids = keras.Input((ctx,), dtype="int32")
    h = keras.layers.Embedding(vocab, d)(ids)
    for _ in range(layers):
        h = TransformerEncoderBlock(d, 4, 4 * d, dropout=0.0)(h)
    model = keras.Model(ids, keras.layers.Dense(vocab)(h))
    x = tf.random.uniform((batch, ctx), 0, vocab, dtype=tf.int32)

    def step(x):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(x, model(x), from_logits=True)
        return tape.gradient(loss, model.trainable_variables)

    n = model.count_params() - vocab * d  # the embedding lookup multiplies nothing
    counted = scale.xla_flops(step, x) / (batch * ctx)
    expected = scale.training_flops_per_token(n, layers, ctx, d, causal=False)
    assert 0.98 < counted / expected <= 1.0, counted / expected  # N also counts biases and norms, which add, not multiply
    matrices = sum(int(np.prod(v.shape)) for v in model.trainable_variables if len(v.shape) >= 2) - vocab * d
    # with N the weight matrices only, the formula is within half a percent of what XLA counts (0.9965 here)
    assert 0.995 < counted / scale.training_flops_per_token(matrices, layers, ctx, d, causal=False) <= 1.0
