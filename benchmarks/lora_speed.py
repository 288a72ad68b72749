"""Training-step time of chapter 14's fine-tuning: full fine-tuning, and LoRA with its products in either order.

    .venv/bin/python benchmarks/lora_speed.py                    # 6 rounds of paired timings
    .venv/bin/python benchmarks/lora_speed.py --rounds 10 --json out.json

**Settings.** Chapter 13's GPT shape (a vocabulary of 4,002 tokens: the characters and chapter 14's two control
tokens; width 128, 2 blocks, 4 heads) trained on rows of 64 tokens in batches of 32, with chapter 14's ``finetune``
compile arguments (AdamW, XLA under op determinism through ``bigmodel_utils.training.compile_with_xla``), on random
tokens. Three ways to train it:

- **full**: every weight trains (chapter 14's full fine-tuning);
- **LoRA (x·A)·B**: rank-8 adapters on every projection and on the token embedding, as
  ``bigmodel_utils.models.lora.LoRA`` computes them (through the ``r`` columns, as Hu et al. do);
- **LoRA x·(A·B)**: the same adapters, but each projection forms ``A·B`` first and multiplies ``x`` by it: the same
  numbers for a second full product per token forward and two more backward (the book's LoRA did this before).

**Paired timing.** A shared 2-core machine changes speed by tens of per cent from minute to minute, so each
alternative is timed against LoRA (x·A)·B in ``--rounds`` back-to-back pairs, in alternating order, on the same
``--steps`` batches; the script prints each one's median milliseconds per step and the median (and quartiles) of
the pair-by-pair ratio (alternative / (x·A)·B), and the loss after the timed steps (the two LoRA orders compute the
same function, so their losses agree to float32 rounding). Speed depends on the machine: the script prints what it
measures, it checks nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bigmodel_utils.notebook import quiet_tensorflow, seed_everything  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bigmodel_utils.models import lora  # noqa: E402
from bigmodel_utils.models.gpt import build_gpt  # noqa: E402
from bigmodel_utils.training import batches, compile_with_xla  # noqa: E402

VOCAB, CONTEXT, WIDTH, BLOCKS, HEADS, ROW, BATCH, RANK = 4002, 128, 128, 2, 4, 64, 32, 8  # chapters 13 and 14


class FullProductLoRA(lora.LoRA):
    """The same adapter, with ``A·B`` formed first: ``base(x) + x·((alpha / r)·A·B)``."""

    def call(self, x):
        if isinstance(self.base, keras.layers.Embedding):
            return super().call(x)
        if isinstance(self.base, keras.layers.EinsumDense):
            return self.base(x) + keras.ops.einsum(self.base.equation, x, self.delta())
        return self.base(x) + keras.ops.matmul(x, self.delta())


def compiled(kind: str):
    keras.utils.set_random_seed(0)
    model = build_gpt(VOCAB, CONTEXT, WIDTH, BLOCKS, HEADS)
    model(np.zeros((1, ROW), "int32"))
    if kind != "full":
        original = lora.LoRA
        lora.LoRA = FullProductLoRA if kind == "LoRA x·(A·B)" else original  # add_lora builds lora.LoRA
        try:
            lora.add_lora(model, RANK, alpha=4 * RANK, seed=0, embedding=True)  # chapter 14: LORA_SCALE 4, embedding too
        finally:
            lora.LoRA = original
    compile_with_xla(model, optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.0),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def seconds_per_step(model, x, y, w) -> tuple[float, float]:
    start = time.perf_counter()
    history = model.fit(batches(x, y, w, batch_size=BATCH), epochs=1, shuffle=False, verbose=0)
    return (time.perf_counter() - start) / (len(x) // BATCH), float(history.history["loss"][-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="timed pairs per alternative")
    parser.add_argument("--steps", type=int, default=30, help="training steps in one timing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.steps < 2:
        parser.error("--rounds must be at least 2 (for quartiles), --steps at least 2")
    seed_everything(0, deterministic=True)  # seeds and op determinism, as setup_notebook sets them in the chapters
    rng = np.random.default_rng(4)
    x = rng.integers(1, VOCAB, (args.steps * BATCH, ROW)).astype("int32")
    y = rng.integers(1, VOCAB, (args.steps * BATCH, ROW)).astype("int32")
    w = np.ones(x.shape, "float32")
    models = {kind: compiled(kind) for kind in ("LoRA (x·A)·B", "LoRA x·(A·B)", "full")}
    for model in models.values():  # compile each once, untimed
        model.fit(batches(x[:BATCH * 2], y[:BATCH * 2], w[:BATCH * 2], batch_size=BATCH), epochs=1, verbose=0)
    reference = "LoRA (x·A)·B"
    rows = []
    for kind in ("LoRA x·(A·B)", "full"):
        ours, theirs, losses = [], [], {}
        for r in range(args.rounds):
            pair = [(reference, ours), (kind, theirs)]
            for name, out in (pair if r % 2 == 0 else pair[::-1]):
                seconds, losses[name] = seconds_per_step(models[name], x, y, w)
                out.append(seconds)
        ratios = sorted(t / o for o, t in zip(ours, theirs))
        rows.append({"setting": kind, "ms_per_step": round(1000 * statistics.median(theirs), 1),
                     "lora_xa_b_ms_per_step_in_the_same_pairs": round(1000 * statistics.median(ours), 1),
                     "ratio_median": round(statistics.median(ratios), 3),
                     "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)],
                     "loss_after_the_timed_steps": round(losses[kind], 4)}
                    | ({"lora_xa_b_loss_after_as_many_steps": round(losses[reference], 4)} if kind.startswith("LoRA") else {}))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
