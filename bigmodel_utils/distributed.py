"""Data-parallel training with ``tf.distribute``, and a launcher for local workers (chapter 09).

Chapter 09 trains the digits CNN three ways with the same function, :func:`train_digits`: on one
device, with ``MirroredStrategy`` over two logical CPU devices of one process, and with
``MultiWorkerMirroredStrategy`` in two worker *processes* that :func:`launch_workers` starts on
127.0.0.1. Each worker runs::

    python -m bigmodel_utils.distributed worker --out DIR [--epochs N] [--global-batch B] [--smoke]

and learns who it is from the ``TF_CONFIG`` environment variable, which is all that changes when the
same command runs on several machines::

    TF_CONFIG='{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, "task": {"type": "worker", "index": 0}}'

The launcher gives every worker its own ``TF_CONFIG`` with free local ports, waits for all of them, and
reaps every process it started: when one worker fails (or the time runs out) it stops the others, which
would otherwise wait for their lost peer forever, and raises :class:`WorkerError` with the failed
worker's last lines of output.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TF_CONFIG_ENV = "TF_CONFIG"


class WorkerError(RuntimeError):
    """A worker process failed, or the workers did not finish in time; every process was stopped."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that are free on ``host`` right now (the OS picks them).

    The sockets are held open until all ``n`` are chosen, so the ports differ; another program could
    still take one before a worker binds it, which is why :func:`launch_workers` reports a clear error
    rather than hanging if a worker cannot start.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(workers: list[str], index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``workers`` ("host:port" strings).

    Worker 0 is the *chief*: by convention it is the one that saves checkpoints and writes logs.
    """
    if not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ValueError(f"workers must be a non-empty list of 'host:port' strings, got {workers!r}")
    if not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"index must be between 0 and {len(workers) - 1}, got {index!r}")
    return {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": index}}


@dataclass
class WorkerResult:
    """What one worker process did: its exit code, its output and how long it ran."""

    index: int
    returncode: int
    seconds: float
    output: str


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (a zombie, already dead, does not count)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, OSError):
            continue
    return False


def _stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a worker's whole process group, the worker and whatever it started: TERM, then KILL what is still
    running after ``grace`` s. Returns when no process of the group is left (or 10 s after the KILL), not when the
    worker alone has exited: a process it started may take longer to go."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)  # the worker leads its group (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None and not _group_alive(proc.pid):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def launch_workers(
    args: list[str],
    n_workers: int = 2,
    timeout: float = 600.0,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    poll_interval: float = 0.2,
) -> list[WorkerResult]:
    """Start ``n_workers`` copies of ``args`` (a command line) as a ``tf.distribute`` cluster; wait for all.

    Each copy gets ``TF_CONFIG`` naming the whole cluster and its own index (see :func:`tf_config`).
    Returns one :class:`WorkerResult` per worker when every worker exits with code 0. If any worker
    exits with another code, or ``timeout`` seconds pass, the remaining workers are stopped (their
    whole process groups: TERM, then KILL) and :class:`WorkerError` says which worker failed and shows
    the end of its output. No process is left behind in any case, including Ctrl-C.
    """
    if not args or not all(isinstance(a, str) for a in args):
        raise ValueError(f"args must be a non-empty list of strings (a command line), got {args!r}")
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    workers = [f"{host}:{port}" for port in free_ports(n_workers, host)]
    logs, procs, finished = [], [], {}
    start = time.monotonic()
    try:
        for i in range(n_workers):
            worker_env = {**os.environ, **(env or {}), TF_CONFIG_ENV: json.dumps(tf_config(workers, i))}
            log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
            logs.append(log)
            # its own session (process group), so that stopping a worker also stops anything it started
            procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=worker_env,
                                          start_new_session=True))
        while len(finished) < n_workers:
            for i, proc in enumerate(procs):
                if i not in finished and proc.poll() is not None:
                    finished[i] = time.monotonic() - start
                    if proc.returncode != 0:
                        for other in procs:
                            _stop(other)
                        raise WorkerError(
                            f"worker {i} of {n_workers} exited with code {proc.returncode} after "
                            f"{finished[i]:.1f} s; the other workers were stopped. Its last output:\n"
                            f"{_tail(_read(logs[i]))}"
                        )
            if time.monotonic() - start > timeout:
                running = [i for i in range(n_workers) if i not in finished]
                for proc in procs:
                    _stop(proc)
                raise WorkerError(
                    f"workers {running} were still running after {timeout:.0f} s and were stopped "
                    f"(a worker waiting for a peer that never came, or too little time: raise timeout=). "
                    f"Last output of worker {running[0]}:\n{_tail(_read(logs[running[0]]))}"
                )
            time.sleep(poll_interval)
        return [WorkerResult(i, procs[i].returncode, finished[i], _read(logs[i])) for i in range(n_workers)]
    finally:
        for proc in procs:
            _stop(proc)
        for log in logs:
            log.close()


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


# --- the training function every variant runs -----------------------------------------------------


def digits_dataset(x, y, global_batch: int, seed: int, shuffle: bool = True):
    """A ``tf.data`` pipeline of (image, label) batches of ``global_batch`` examples, the last partial
    batch dropped so that every step has the same size on every replica.

    Sharding is by *data* (each worker takes every n-th example): the arrays live in memory, not in
    files that could be split among workers.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(global_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_digits(strategy=None, epochs: int = 20, global_batch: int = 64, learning_rate: float = 2e-3,
                 seed: int = 0, smoke: bool = False) -> dict[str, Any]:
    """Train chapter 05's CNN on the digits under ``strategy`` (None: the default, one device).

    The model and its optimizer are built inside ``strategy.scope()``, so their variables are mirrored
    on every replica. Each step, ``strategy.run`` gives every replica its share of the global batch;
    each computes the gradient of *its* examples' loss divided by the *global* batch size, and the
    optimizer sums the replicas' gradients (an all-reduce) before applying one identical update
    everywhere. The global batch and the learning rate stay the same whatever the number of replicas,
    so every variant takes the same optimisation path in expectation.

    A hand-written loop rather than ``model.fit``: Keras 3's ``fit`` works with ``MirroredStrategy`` but
    not with ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), and one loop for all three
    variants keeps the comparison fair. Returns test accuracy, final loss, replicas and time per step.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from bigmodel_utils.data import load_dataset
    from bigmodel_utils.models import build_digits_cnn, prepare_images

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"global_batch={global_batch} must be divisible by the {replicas} replicas")
    x, y = load_dataset("digits", split="train")
    x_test, y_test = load_dataset("digits", split="test")
    if smoke:
        x, y, x_test, y_test, epochs = x[:512], y[:512], x_test[:200], y_test[:200], min(epochs, 2)
    x, x_test = prepare_images(x), prepare_images(x_test)
    y, y_test = np.asarray(y, dtype="int32"), np.asarray(y_test, dtype="int32")
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_digits_cnn(x.shape[1:])
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)  # its moments too, mirrored, before the first step
    per_example_loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    batches = strategy.experimental_distribute_dataset(digits_dataset(x, y, global_batch, seed))

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            losses = per_example_loss(labels, model(images, training=True))
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)  # sum / global batch
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # all-reduce, then update
        return loss

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", per_replica, axis=None)  # the global batch's mean loss

    steps, losses = 0, []
    start = time.perf_counter()
    for _ in range(epochs):
        epoch_losses = [float(train_step(batch)) for batch in batches]
        steps += len(epoch_losses)
        losses.append(float(np.mean(epoch_losses)))
    seconds = time.perf_counter() - start
    probabilities = keras.ops.convert_to_numpy(model(x_test, training=False))
    return {
        "replicas": replicas,
        "test_accuracy": float((probabilities.argmax(axis=1) == y_test).mean()),
        "losses": losses,
        "epochs": epochs,
        "steps": steps,
        "seconds": seconds,
        "ms_per_step": 1000 * seconds / max(steps, 1),
    }


def _worker_main(out: Path, epochs: int, global_batch: int, seed: int, smoke: bool, fail: bool) -> int:
    from bigmodel_utils.notebook import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    config = json.loads(os.environ.get(TF_CONFIG_ENV, "{}"))
    if "cluster" not in config:
        sys.exit(f"{TF_CONFIG_ENV} is not set: start workers with bigmodel_utils.distributed.launch_workers "
                 f"or set {TF_CONFIG_ENV} by hand on each machine")
    index = config["task"]["index"]
    if fail and index == 1:  # for the tests: a worker that dies while its peer waits for it
        sys.exit("worker 1: failing on purpose (--fail)")
    # first, before any other TensorFlow work: the strategy connects to the other workers
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    result = train_digits(strategy, epochs=epochs, global_batch=global_batch, seed=seed, smoke=smoke)
    result.update(worker=index, workers=len(config["cluster"]["worker"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"worker-{index}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.distributed", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="train the digits CNN as one MultiWorkerMirroredStrategy worker (reads TF_CONFIG)")
    w.add_argument("--out", type=Path, required=True, help="folder for worker-<index>.json")
    w.add_argument("--epochs", type=int, default=20)
    w.add_argument("--global-batch", type=int, default=64)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--smoke", action="store_true", help="a small slice of data and 2 epochs")
    w.add_argument("--fail", action="store_true", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    return _worker_main(a.out, a.epochs, a.global_batch, a.seed, a.smoke, a.fail)


if __name__ == "__main__":
    sys.exit(main())
