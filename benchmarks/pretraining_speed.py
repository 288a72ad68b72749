"""Pre-training speed of chapter 07's mini-BERT and chapter 13's GPT under different settings, one change at a time.

    .venv/bin/python benchmarks/pretraining_speed.py                  # both models, every setting
    .venv/bin/python benchmarks/pretraining_speed.py --model gpt --steps 60 --json out.json

For each setting it builds the chapter's model with the chapter's shape and optimizer, compiles it, warms it up
(the first steps trace and, with XLA, compile), then times ``--steps`` training steps of ``model.fit`` on random
tokens and reports tokens per second and model FLOPs utilisation (MFU: the matrix-product FLOPs of one training step,
counted by XLA as chapter 01 does with ``scale.xla_flops``, per token, against this CPU's matrix-multiply speed
measured here as chapter 00 does). It also trains a fresh model from
the same seed on the same ``--quality-steps`` × 64 sequences under each setting (a larger batch reads them in fewer
updates) and reports the final training loss, so that a faster setting that computes differently shows up (XLA must
give the same loss; a larger batch may not, and on random tokens says nothing about learning: the chapters'
held-out losses judge that). Speed depends on the machine: the script prints
what it measures, it checks nothing.

Settings: today's (``jit_compile`` off, which Keras chooses on a CPU-only machine; the chapter's batch), XLA
(``jit_compile=True``), and larger batches with XLA at the same tokens per step budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bigmodel_utils.notebook import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bigmodel_utils import scale  # noqa: E402
from bigmodel_utils.models.bert import build_mlm_model  # noqa: E402
from bigmodel_utils.models.gpt import build_gpt  # noqa: E402
from bigmodel_utils.models.transformer import build_encoder  # noqa: E402

VOCAB = 3000


def gpt_case(batch: int, jit: bool, seed: int = 0):
    """Chapter 13's GPT (context 128, width 128, 2 blocks, 4 heads) with its AdamW; random next-token batches."""
    keras.utils.set_random_seed(seed)
    model = build_gpt(VOCAB, 128, 128, 2, 4)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    rng = np.random.default_rng(seed)

    def batches(n):
        x = rng.integers(5, VOCAB, size=(n * batch, 129))
        return x[:, :-1], x[:, 1:]

    return model, batches, 128


def bert_case(batch: int, jit: bool, seed: int = 0):
    """Chapter 07's mini-BERT MLM (64 positions, width 128, 2 blocks, 4 heads, feed-forward 256, 16 targets)."""
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(VOCAB, 64, 128, 2, 4, 256, norm_first=True, dropout=0.0, name="mini_bert")
    model = build_mlm_model(encoder, VOCAB, 16)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    rng = np.random.default_rng(seed)

    def batches(n):
        ids = rng.integers(5, VOCAB, size=(n * batch, 64))
        pos = np.sort(rng.integers(1, 63, size=(n * batch, 16)), axis=1)
        return (ids, pos), rng.integers(5, VOCAB, size=(n * batch, 16))

    return model, batches, 64


CASES = {"gpt": gpt_case, "bert": bert_case}


def flops_per_token(model, x, y, tokens: int) -> float:
    """Matrix-product FLOPs of one training step (forward pass, loss and every gradient), counted by XLA, per token."""
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return scale.xla_flops(gradients, x, y) / tokens


def measure(case, batch: int, jit: bool, steps: int, quality_steps: int, peak: float) -> dict:
    model, batches, length = CASES[case](batch, jit)
    x, y = batches(1)
    per_token = flops_per_token(model, x, y, batch * length)
    x, y = batches(3)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # trace (and compile) first
    x, y = batches(steps)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch * length / seconds
    # quality: the same tokens (64 sequences a step, whatever the batch) from the same start under each setting
    model, batches, _ = CASES[case](64, jit, seed=1)
    model.fit(*batches(2), batch_size=64, epochs=1, verbose=0)
    history = model.fit(*batches(quality_steps), batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return {"model": case, "batch": batch, "jit_compile": jit, "steps": steps, "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens_per_s), "mfu": round(tokens_per_s * per_token / (peak * 1e9), 3),
            "loss_after_quality_steps": round(float(history.history["loss"][-1]), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*CASES, "both"], default="both")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per setting")
    parser.add_argument("--quality-steps", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    peak = scale.matmul_gflops()
    print(f"matmul peak on this CPU: {peak:.0f} GFLOP/s")
    chapter_batch = {"gpt": 16, "bert": 64}
    rows = []
    for case in (CASES if args.model == "both" else [args.model]):
        b = chapter_batch[case]
        for batch, jit in [(b, False), (b, True), (2 * b, True), (4 * b, True), (2 * b, False)]:
            steps = max(10, args.steps * b // batch)  # about the same tokens for each setting
            row = measure(case, batch, jit, steps, args.quality_steps, peak)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"matmul_gflops": peak, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
