"""Speed of chapter 07's fine-tuning sweep with and without XLA, and the accuracy each reaches.

    .venv/bin/python benchmarks/finetuning_speed.py                   # 100 and 3,000 labels, both settings
    .venv/bin/python benchmarks/finetuning_speed.py --labels 300 --json out.json
    .venv/bin/python benchmarks/finetuning_speed.py --concurrent      # two fits at once vs one after the other

Chapter 07 fine-tunes a classifier on its mini-BERT encoder for each number of labels (its ``fit_classifier``:
AdamW with warm-up and cosine decay, batches of 32, about 4,000 examples seen, early stopping on 500 validation
reviews, then accuracy on the test split). This script runs that recipe, copied from the chapter, on the real reviews
for one network (the same architecture from random weights: no pre-trained model needed), with op determinism on
as in the chapter, without XLA (``jit_compile=False``: what Keras picks on a CPU-only machine, and the chapter's
setting) and with it (``bigmodel_utils.training.compile_with_xla``: a plain ``jit_compile=True`` is declined by Keras
under op determinism, so before that function this script compared no XLA with no XLA), one change at a time, same seed, after one untimed warm-up fit (TensorFlow's
first-use costs). It reports the wall time of the whole call (compiling included: each call builds a new model, as
the sweep does), the epochs early stopping let run and the time per epoch (the two settings may stop at different
epochs, since XLA's arithmetic differs in the last bits), and the test accuracy. XLA compiles once per batch shape,
so a small label count pays its compilation on few steps. Each row also gives ``cores_busy``: the process's CPU
seconds over the wall seconds, out of the machine's cores (a small model leaves some of them idle).

``--concurrent`` asks whether running two of the sweep's fits at once would use the idle cores: two models (seeds 0
and 1, the chapter's setting, no XLA) are trained one after the other, and two fresh copies of them at once in two
threads, in ``--rounds`` back-to-back pairs in alternating order (a shared machine's speed drifts: README,
"Contributing and testing"). The script prints each pair's wall times and the cores each way kept busy, the median
of the pair-by-pair ratio, and whether the two ways, in every pair, trained the same weights and test accuracies,
bit for bit.
Speed depends on the machine: the script prints what it measures, it checks nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bigmodel_utils.notebook import quiet_tensorflow, seed_everything  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bigmodel_utils.data import load_dataset  # noqa: E402
from bigmodel_utils.fitting import build_for_fit  # noqa: E402
from bigmodel_utils.models.bert import CharTokenizer, build_classifier  # noqa: E402
from bigmodel_utils.models.transformer import build_encoder  # noqa: E402
from bigmodel_utils.training import compile_with_xla  # noqa: E402

SEQ_LEN, D_MODEL, N_LAYERS, N_HEADS, D_FF, VOCAB_SIZE, SEED = 64, 128, 2, 4, 256, 3000, 0  # chapter 07's


def data():
    train, val, test = (load_dataset("reviews_zh", split=s) for s in ("train", "validation", "test"))
    tokenizer = CharTokenizer.fit(list(train["text"]), max_size=VOCAB_SIZE)
    x_train, x_val, x_test = (tokenizer.encode(list(part["text"]), SEQ_LEN) for part in (train, val, test))
    y_train, y_val, y_test = (part["label"].to_numpy() for part in (train, val, test))
    early = np.random.default_rng(SEED).choice(len(val), 500, replace=False)
    return tokenizer, (x_train, y_train), (x_val[early], y_val[early]), (x_test, y_test)


def fit_classifier(model, x, y, lr, early, test, jit):
    """Chapter 07's ``fit_classifier``, with XLA as the one change."""
    n = len(x)
    epochs = int(np.clip(4000 // n, 3, 30))
    steps = epochs * int(np.ceil(n / 32))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, steps - steps // 10), warmup_target=lr,
                                                      warmup_steps=max(1, steps // 10))
    args = {"optimizer": keras.optimizers.AdamW(schedule, weight_decay=0.01), "loss": "binary_crossentropy",
            "metrics": ["accuracy"]}
    if jit:
        compile_with_xla(model, **args)
    else:
        model.compile(**args, jit_compile=False)
    build_for_fit(model, x, y)  # as the chapter: the training step traced once
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    history = model.fit(x, y, validation_data=early, epochs=epochs, batch_size=32, callbacks=[stop], verbose=0)
    return float(model.evaluate(*test, verbose=0)[1]), len(history.history["loss"])


def timed(function, *args):
    """``function(*args)``, its wall seconds and the cores it kept busy (the process's CPU seconds, all threads, over
    the wall seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    seconds = time.perf_counter() - wall
    return result, seconds, (time.process_time() - cpu) / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 3000])
    parser.add_argument("--concurrent", action="store_true",
                        help="compare two fits one after the other with the same two fits at once (no XLA)")
    parser.add_argument("--rounds", type=int, default=3, help="with --concurrent: timed pairs per label count")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    tokenizer, (x_train, y_train), early, test = data()
    draw = np.random.default_rng(SEED).permutation(len(x_train))
    def new_model(seed=SEED):
        seed_everything(seed, deterministic=True)
        return build_classifier(build_encoder(len(tokenizer), SEQ_LEN, D_MODEL, N_LAYERS, N_HEADS, D_FF,
                                              norm_first=True, dropout=0.1, name="mini_bert"))

    for jit in (False, True) if not args.concurrent else (False,):  # warm-up, untimed: TensorFlow's first-use costs
        fit_classifier(new_model(), x_train[draw[:64]], y_train[draw[:64]], 1e-3, early, test, jit)
    rows = []
    for n in args.labels:
        picked = draw[:n]
        if args.concurrent:
            def fit(model):
                accuracy, epochs = fit_classifier(model, x_train[picked], y_train[picked], 1e-3, early, test, False)
                return accuracy, epochs, model.get_weights()

            def one_after_the_other(models):
                return [fit(m) for m in models]

            def at_once(models):
                with ThreadPoolExecutor(len(models)) as pool:
                    return list(pool.map(fit, models))

            def same(a, b):  # the same accuracies, epochs and weights, bit for bit
                return all(x[0] == y[0] and x[1] == y[1] and all(np.array_equal(u, v) for u, v in zip(x[2], y[2]))
                           for x, y in zip(a, b))

            row = {"labels": n, "fits": 2, "pairs": []}
            identical, ratios, first = True, [], None
            for r in range(args.rounds):
                pair, outcomes = {}, {}
                ways = [("one_after_the_other", one_after_the_other), ("at_once", at_once)]
                for name, run in ways if r % 2 == 0 else ways[::-1]:
                    models = [new_model(seed) for seed in (SEED, SEED + 1)]  # built one after the other: same weights
                    outcomes[name], seconds, cores = timed(run, models)
                    pair |= {f"{name}_seconds": round(seconds, 1), f"{name}_cores_busy": round(cores, 2)}
                a, b = outcomes["one_after_the_other"], outcomes["at_once"]
                identical &= same(a, b) and same(a, first if r else a)  # both ways, and every pair as the first
                first = a if r == 0 else first
                ratios.append(pair["at_once_seconds"] / pair["one_after_the_other_seconds"])
                row["pairs"].append(pair)
            row["identical"] = identical
            row["test_accuracies"] = [round(x[0], 4) for x in first]
            row["at_once_over_one_after_the_other"] = [round(q, 3) for q in ratios]
            row["ratio_median"] = round(statistics.median(ratios), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        for jit in (False, True):
            (accuracy, epochs), seconds, cores = timed(fit_classifier, new_model(), x_train[picked], y_train[picked],
                                                       1e-3, early, test, jit)
            row = {"labels": n, "jit_compile": jit, "seconds": round(seconds, 1), "epochs_run": epochs,
                   "seconds_per_epoch": round(seconds / epochs, 2), "cores_busy": round(cores, 2),
                   "test_accuracy": round(accuracy, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
