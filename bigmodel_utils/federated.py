"""Federated averaging (McMahan et al. 2017) with Keras models, on simulated clients (chapter 12).

Each client trains the current global model on its own data for a few local epochs; the server averages
the clients' weights, each weighted by its number of examples, into the next global model. The data never
leaves the clients; only weights travel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def class_skewed_split(labels: np.ndarray, n_clients: int, shards_per_client: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Non-identical clients: sort the examples by label, cut them into ``n_clients × shards_per_client``
    shards, and give each client ``shards_per_client`` random shards, so each sees only a few classes."""
    labels = np.asarray(labels)
    if n_clients < 1 or shards_per_client < 1:
        raise ValueError("n_clients and shards_per_client must be positive")
    n_shards = n_clients * shards_per_client
    if n_shards > len(labels):
        raise ValueError(f"{n_shards} shards from {len(labels)} examples: use fewer clients or shards")
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, n_shards)
    picks = rng.permutation(n_shards).reshape(n_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in picks]


def average_weights(weight_sets: list[list[np.ndarray]], sizes: list[int]) -> list[np.ndarray]:
    """The weighted mean of several models' weights (same architecture), weights proportional to ``sizes``."""
    if not weight_sets or len(weight_sets) != len(sizes) or min(sizes) <= 0:
        raise ValueError("need one positive size per set of weights")
    total = float(sum(sizes))
    return [sum(w[i] * (n / total) for w, n in zip(weight_sets, sizes)) for i in range(len(weight_sets[0]))]


def federated_averaging(build: Callable[[], object], clients: list[tuple[np.ndarray, np.ndarray]], rounds: int = 20,
                        local_epochs: int = 1, batch_size: int = 16, learning_rate: float = 0.05,
                        evaluate: Callable[[object], float] | None = None, seed: int = 0):
    """Run FedAvg; returns ``(global_model, scores)`` with ``evaluate(global_model)`` after every round.

    ``build()`` returns a fresh, uncompiled Keras model; each client trains with plain SGD (no optimizer
    state to carry between clients) starting from the global weights of the round.
    """
    import keras

    if rounds < 1 or local_epochs < 1 or not clients:
        raise ValueError("need at least one round, one local epoch and one client")
    keras.utils.set_random_seed(seed)
    global_model = build()
    worker = build()
    worker.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="sparse_categorical_crossentropy")
    weights = global_model.get_weights()
    scores = []
    for _ in range(rounds):
        updates, sizes = [], []
        for x, y in clients:
            worker.set_weights(weights)
            worker.fit(x, y, epochs=local_epochs, batch_size=batch_size, verbose=0)
            updates.append(worker.get_weights())
            sizes.append(len(x))
        weights = average_weights(updates, sizes)
        global_model.set_weights(weights)
        if evaluate is not None:
            scores.append(float(evaluate(global_model)))
    return global_model, scores
