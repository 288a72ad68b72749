"""What the service serves: a model loaded once, with its metadata and its validator (chapter 11).

Models are loaded only from files the book saved (``.keras``, never pickle), once per process, and run through
one traced ``tf.function`` per model, not ``model.predict`` per request (which rebuilds a data pipeline every
call). Each :class:`ServedModel` validates its requests with :mod:`bigmodel_utils.serving.validation` first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bigmodel_utils.serving.validation import validate_images, validate_texts

KINDS = ("digits", "reviews")


def default_model_path(kind: str, smoke: bool = False) -> Path:
    """Where the book saved the model of ``kind``: chapter 05's ``digits_cnn.keras``, or chapter 06's best
    recurrent network ``reviews_zh_<bilstm|gru|lstm>.keras`` (the newest); ``_smoke`` names in SMOKE mode.
    For reviews with none saved yet, the BiLSTM's name (so that the error message names a file)."""
    from bigmodel_utils.paths import model_path

    suffix = "_smoke" if smoke else ""
    if kind == "digits":
        return model_path(f"digits_cnn{suffix}.keras")
    if kind != "reviews":
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    candidates = [model_path(f"reviews_zh_{network}{suffix}.keras") for network in ("bilstm", "gru", "lstm")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else candidates[0]


@dataclass
class ServedModel:
    """One model as the service sees it: how to validate a request, how to predict, what to say about it."""

    name: str
    kind: str
    version: str
    labels: list[str]
    predict: Callable[[np.ndarray], np.ndarray]  # validated batch -> probabilities (n, classes)
    validate: Callable[[Any], np.ndarray]  # JSON payload -> validated batch (raises BadRequest)
    input_schema: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "version": self.version, "labels": self.labels,
                "input": self.input_schema, "metrics": self.metrics, "source": self.source}

    def respond(self, payload: Any) -> dict[str, Any]:
        batch = self.validate(payload)
        probabilities = np.asarray(self.predict(batch), dtype=np.float64)
        predictions = [{"class": int(p.argmax()), "label": self.labels[int(p.argmax())],
                        "probabilities": [round(float(v), 6) for v in p]} for p in probabilities]
        return {"model": self.name, "version": self.version, "predictions": predictions}


def load_served_model(path: str | Path, kind: str, name: str | None = None, max_batch: int = 64,
                      max_text_length: int = 2000, version: str | None = None,
                      metrics: dict[str, Any] | None = None) -> ServedModel:
    """Load a model the book saved (chapter 05's digits CNN or chapter 06's review classifier) for serving.

    The version is the first 12 hex digits of the file's sha256, so a changed file is a new version
    (chapter 12's registry passes its own ``version`` and the card's ``metrics`` instead). Otherwise metrics
    come from ``<file>.metrics.json`` next to the model when it exists.
    """
    from bigmodel_utils.data import sha256_file
    from bigmodel_utils.notebook import quiet_tensorflow

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"the service loads .keras files the book saved (never pickle), got {path.name}")
    if not path.is_file():
        chapter = "05" if kind == "digits" else "06"
        raise FileNotFoundError(f"{path} not found: run chapter {chapter} to train and save it, or pass its path")
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    import bigmodel_utils.models.pooling  # noqa: F401  (registers chapter 06's masked max-pooling, for loading)

    model = keras.saving.load_model(path, compile=False, safe_mode=True)  # safe_mode: refuses stored Python lambdas
    metrics_file = path.with_suffix(".metrics.json")
    if metrics is None:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    version = version or sha256_file(path)[:12]
    if kind == "digits":
        h, w = (int(d) for d in model.input_shape[1:3])
        graph = tf.function(lambda x: model(x, training=False),
                            input_signature=[tf.TensorSpec((None, h, w, 1), tf.float32)])
        graph(np.zeros((1, h, w, 1), np.float32))  # trace once, now, not on the first request

        def predict(batch):
            return graph(batch).numpy()

        n_classes = int(model.output_shape[-1])
        return ServedModel(name or "digits", kind, version, [str(i) for i in range(n_classes)], predict,
                           lambda p: validate_images(p, max_batch, (h, w)),
                           {"instances": f"list of 1 to {max_batch} images, each {h} lists of {w} numbers in [0, 1]"},
                           metrics, path.name)
    graph = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, 1), tf.string)])
    graph(tf.constant([["好"]]))  # trace once, now

    def predict(batch):
        p = graph(tf.constant(batch.astype(str))).numpy().reshape(-1)
        return np.stack([1 - p, p], axis=1)

    return ServedModel(name or "reviews", kind, version, ["negative", "positive"], predict,
                       lambda p: validate_texts(p, max_batch, max_text_length),
                       {"instances": f"list of 1 to {max_batch} strings of at most {max_text_length} characters"},
                       metrics, path.name)
