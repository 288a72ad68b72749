"""Pre-training speed of chapter 07's mini-BERT and chapter 13's GPT under different settings, one change at a time,
and where a training step's time goes.

    .venv/bin/python benchmarks/pretraining_speed.py                  # both models, every setting
    .venv/bin/python benchmarks/pretraining_speed.py --model gpt --rounds 12 --json out.json

**Settings.** Each model is built with its chapter's shape and optimizer and trained on random tokens under the
chapter's compile arguments, under op determinism as in the chapters (``setup_notebook`` switches it on): XLA
through ``bigmodel_utils.training.compile_with_xla``, at the chapter's batch (Keras declines a plain
``jit_compile=True`` under op determinism, and before that function the chapters trained without XLA).
The alternatives change one thing: no XLA (``jit_compile=False``: what the chapters had, and what Keras picks on a
CPU-only machine), twice and four times the batch, and attention computed without
returning its weights (a proposed change to ``TransformerEncoderBlock``, which asks Keras for the weights on every
call, and so keeps Keras from ``keras.ops.dot_product_attention``, its attention without the weights as outputs;
the chapters don't use it yet), ``model.fit`` given the arrays themselves (Keras then builds its own ``tf.data``
pipeline, with parallel slicing, prefetching and an autotuner: the chapters' way before they switched to
``bigmodel_utils.training.batches``), and a training loop of ``model.train_on_batch`` calls instead of ``model.fit``
(the same compiled step on the same batches, with no pipeline at all).

**Paired timing.** A shared 2-core machine changes speed by tens of per cent from one 10-second stretch to the next
(seen here: the same step ran at two steady levels, 6,000 and 8,000 tokens/s, minutes apart). Timing one setting
after another therefore compares moments, not settings. Here every alternative is timed in ``--rounds`` pairs with
the chapter's setting, back to back, in alternating order, each on the same ``--block-steps`` × (chapter's batch)
sequences; the script reports each setting's median tokens per second and the median (and quartiles) of the
pair-by-pair ratio, which is what to read: a ratio whose quartiles straddle 1 is no measurable difference.

**Same quality.** A faster setting must compute the same thing: each setting also trains a fresh model from the same
seed on the same ``--quality-steps`` × 64 sequences (a larger batch reads them in fewer updates) and reports the
final training loss. XLA and the attention change must give the same loss to a few digits; a larger batch may
not, and on random tokens says nothing about learning: the chapters' held-out losses judge that.

**Where the time goes.** XLA lists the matrix products (``dot``) of one training step's forward pass, loss and
gradients; ``bigmodel_utils.profiling.step_and_products`` times that compiled computation and each product alone,
as a plain (batched) product of its size, in alternating rounds. The products' share of it, and their FLOP rate
alone against this CPU's matrix-multiply speed (measured as chapter 00 does), bound the model FLOPs utilisation
(MFU) that the step could reach if everything else took no time. The whole training step (the optimizer's update
and Keras's work per step included) is the chapter setting's median. Speed depends on the machine: the script
prints what it measures, it checks nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bigmodel_utils.notebook import quiet_tensorflow, seed_everything  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bigmodel_utils.training import batches, compile_with_xla  # noqa: E402

from bigmodel_utils import profiling, scale  # noqa: E402
from bigmodel_utils.models import transformer  # noqa: E402
from bigmodel_utils.models.bert import build_mlm_model  # noqa: E402
from bigmodel_utils.models.gpt import build_gpt  # noqa: E402

VOCAB = {"gpt": 4000, "bert": 3000}  # chapter 13 keeps 4,000 characters, chapter 07 3,000
CHAPTER_BATCH = {"gpt": 16, "bert": 64}
LENGTH = {"gpt": 128, "bert": 64}


def attention_without_weights(self, x, mask=None, training=False, return_attention=False):
    """``TransformerEncoderBlock.call`` as proposed: the attention weights are asked for only when the caller wants
    them, and the causal mask is left to Keras (``use_causal_mask``), so that Keras can use ``dot_product_attention``."""
    attention_mask = None
    if mask is not None:
        n = keras.ops.shape(x)[1]
        attention_mask = keras.ops.repeat(keras.ops.cast(mask, "bool")[:, None, :], n, axis=1)
    h = self.norm1(x) if self.norm_first else x
    out = self.attention(h, h, attention_mask=attention_mask, use_causal_mask=self.causal, training=training,
                         return_attention_scores=return_attention)
    attn, scores = out if return_attention else (out, None)
    attn = self.drop(attn, training=training)
    if self.norm_first:
        x = x + attn
        x = x + self._ffn(self.norm2(x), training)
    else:
        x = self.norm1(x + attn)
        x = self.norm2(x + self._ffn(x, training))
    return (x, scores) if return_attention else x


def build(case: str, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    if case == "gpt":  # chapter 13: context 128, width 128, 2 blocks, 4 heads, feed-forward 512
        return build_gpt(VOCAB[case], LENGTH[case], 128, 2, 4)
    # chapter 07: 64 positions, width 128, 2 blocks, 4 heads, feed-forward 256, pre-LN, no dropout, 16 targets
    encoder = transformer.build_encoder(VOCAB[case], LENGTH[case], 128, 2, 4, 256, norm_first=True, dropout=0.0,
                                        name="mini_bert")
    return build_mlm_model(encoder, VOCAB[case], 16)


def data(case: str, sequences: int, seed: int):
    """Random token batches in the model's input format: next-token pairs (GPT) or 16 masked targets (BERT)."""
    rng = np.random.default_rng(seed)
    if case == "gpt":
        x = rng.integers(5, VOCAB[case], size=(sequences, LENGTH[case] + 1))
        return x[:, :-1], x[:, 1:]
    ids = rng.integers(5, VOCAB[case], size=(sequences, LENGTH[case]))
    ids[rng.random(sequences) < 0.5, 48:] = 0  # half the rows end in padding, as short reviews do
    pos = np.sort(rng.integers(1, 47, size=(sequences, 16)), axis=1)
    return (ids, pos), rng.integers(5, VOCAB[case], size=(sequences, 16))


def compiled(case: str, setting: dict, seed: int = 0) -> keras.Model:
    """The model compiled under ``setting``; the proposed attention is swapped in while the model is built and its
    training step traced (the first ``fit``), then the class is restored."""
    original = transformer.TransformerEncoderBlock.call
    if setting["attention"] == "without weights":
        transformer.TransformerEncoderBlock.call = attention_without_weights
    try:
        model = build(case, seed)
        args = {"optimizer": keras.optimizers.AdamW(1e-3, weight_decay=0.1 if case == "gpt" else 0.01),
                "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        if setting["jit_compile"]:
            compile_with_xla(model, **args)
        else:
            model.compile(**args, jit_compile=False)
        x, y = data(case, 2 * setting["batch"], seed=99)
        tokens_per_second(model, x, y, setting, 1)  # trace (and compile) now, through the loop that will be timed
    finally:
        transformer.TransformerEncoderBlock.call = original
    return model


def tokens_per_second(model, x, y, setting: dict, tokens: int) -> float:
    """Tokens per second of one pass over ``x, y``: with ``model.fit`` on ``batches`` (the chapters' loop) or on the
    arrays, or batch by batch with ``model.train_on_batch`` (the same compiled step, the same batches in the same
    order)."""
    batch = setting["batch"]
    start = time.perf_counter()
    if setting["loop"] == "fit on batches()":
        model.fit(batches(x, y, batch_size=batch), epochs=1, shuffle=False, verbose=0)
    elif setting["loop"] == "fit on arrays":
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    else:
        rows = len(y)
        for i in range(0, rows, batch):
            xb = tuple(part[i:i + batch] for part in x) if isinstance(x, tuple) else x[i:i + batch]
            model.train_on_batch(xb, y[i:i + batch])
    return tokens / (time.perf_counter() - start)


def final_loss(case: str, setting: dict, quality_steps: int) -> float:
    """Training loss after the same ``quality_steps`` x 64 sequences from the same start."""
    model = compiled(case, setting, seed=1)
    x, y = data(case, quality_steps * 64, seed=2)
    b = setting["batch"]
    if setting["loop"] == "fit on batches()":
        return round(float(model.fit(batches(x, y, batch_size=b), epochs=1, shuffle=False, verbose=0).history["loss"][-1]), 4)
    if setting["loop"] == "fit on arrays":
        return round(float(model.fit(x, y, batch_size=b, epochs=1, verbose=0, shuffle=False).history["loss"][-1]), 4)
    # fit reports the mean of the epoch's batch losses; train_on_batch returns each batch's own
    losses = [model.train_on_batch(tuple(p[i:i + b] for p in x) if isinstance(x, tuple) else x[i:i + b], y[i:i + b])
              for i in range(0, len(y), b)]
    return round(float(np.mean(losses)), 4)


def gradient_step(case: str, batch: int):
    """One training step's arithmetic without the optimizer's update (forward pass, loss, gradients) of a fresh model,
    and a batch for it: ``(function, x, y)``."""
    model = build(case)
    x, y = data(case, batch, seed=3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return gradients, x, y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["gpt", "bert", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=8, help="timed pairs per alternative")
    parser.add_argument("--block-steps", type=int, default=16, help="steps at the chapter's batch in one timing")
    parser.add_argument("--quality-steps", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.block_steps < 4 or args.quality_steps < 1:
        parser.error("--rounds must be at least 2 (for quartiles), --block-steps at least 4 (so that four times the "
                     "batch still makes a step), --quality-steps at least 1")
    seed_everything(0, deterministic=True)  # seeds and op determinism, as setup_notebook sets them in the chapters
    peak = scale.matmul_gflops()
    print(f"matmul speed of this CPU (chapter 00's measurement): {peak:.0f} GFLOP/s", flush=True)
    report = {"matmul_gflops": peak, "models": {}}
    for case in (["gpt", "bert"] if args.model == "both" else [args.model]):
        b = CHAPTER_BATCH[case]
        chapter = {"name": f"chapter's: XLA, batch {b}, fit on batches()", "batch": b, "jit_compile": True,
                   "attention": "with weights", "loop": "fit on batches()"}
        alternatives = [chapter | {"name": f"no XLA, batch {b}", "jit_compile": False},
                        chapter | {"name": f"XLA, batch {2 * b}", "batch": 2 * b},
                        chapter | {"name": f"XLA, batch {4 * b}", "batch": 4 * b},
                        chapter | {"name": f"XLA, batch {b}, attention without weights", "attention": "without weights"},
                        chapter | {"name": f"XLA, batch {b}, fit on arrays", "loop": "fit on arrays"},
                        chapter | {"name": f"XLA, batch {b}, train_on_batch loop", "loop": "train_on_batch"}]
        sequences = args.block_steps * b
        x, y = data(case, sequences, seed=4)
        tokens = sequences * LENGTH[case]
        step = gradient_step(case, b)
        flops_per_token = sum(2.0 * math.prod(p) for p in profiling.matrix_products(*step)) / (b * LENGTH[case])
        reference = compiled(case, chapter)
        rows = [{"setting": chapter["name"], "loss_after_quality_steps": final_loss(case, chapter, args.quality_steps),
                 "tokens_per_second": []}]
        for alternative in alternatives:
            model = compiled(case, alternative)
            ours, theirs = [], []
            for r in range(args.rounds):
                pair = [(reference, chapter, ours), (model, alternative, theirs)]
                for m, s, out in (pair if r % 2 == 0 else pair[::-1]):
                    out.append(tokens_per_second(m, x, y, s, tokens))
            ratios = sorted(t / o for o, t in zip(ours, theirs))
            rows[0]["tokens_per_second"] += ours
            rows.append({"setting": alternative["name"], "tokens_per_second": round(statistics.median(theirs)),
                         "chapter_setting_in_the_same_pairs": round(statistics.median(ours)),
                         "ratio_median": round(statistics.median(ratios), 3),
                         "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
                         "mfu": round(statistics.median(theirs) * flops_per_token / (peak * 1e9), 3),
                         "loss_after_quality_steps": final_loss(case, alternative, args.quality_steps)})
            print(case, json.dumps(rows[-1]), flush=True)
        median = statistics.median(rows[0]["tokens_per_second"])
        rows[0]["tokens_per_second"] = round(median)
        rows[0]["mfu"] = round(median * flops_per_token / (peak * 1e9), 3)
        print(case, json.dumps(rows[0]), flush=True)
        timed = profiling.step_and_products(*step)
        where = {"training_step_seconds": round(b * LENGTH[case] / median, 4),
                 "forward_and_backward_seconds": round(timed["step_seconds"], 4), "products": timed["products"],
                 "products_alone_seconds": round(timed["products_seconds"], 4),
                 "products_share_of_forward_and_backward": round(timed["share"], 2),
                 "products_alone_gflops": round(timed["flops"] / timed["products_seconds"] / 1e9, 1),
                 "products_alone_mfu": round(timed["flops"] / timed["products_seconds"] / 1e9 / peak, 2)}
        print(case, "where the chapter's step goes:", json.dumps(where), flush=True)
        report["models"][case] = {"flops_per_token": flops_per_token, "settings": rows, "where_the_time_goes": where}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
