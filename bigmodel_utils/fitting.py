"""Tracing ``model.fit``'s training step once (chapter 07's fine-tuning sweep).

The first ``fit`` of a freshly compiled model traces its training step into a TensorFlow graph. Keras (with the
TensorFlow backend and no distribution strategy) creates the optimizer's variables (Adam's moments) and the compiled
loss's and metrics' counters inside that trace, and a ``tf.function`` whose first trace creates variables is traced a
second time. :func:`build_for_fit` creates them beforehand, which saves the second trace: seconds per model, which add
up in a sweep that trains dozens of new models.
"""

from __future__ import annotations


def build_for_fit(model, x, y, sample_weight=None) -> None:
    """Create the variables that ``model.fit`` would otherwise create while tracing its first training step, so that
    TensorFlow traces that step once instead of twice: the optimizer's (``optimizer.build``, as Keras does itself
    when it trains under a distribution strategy) and the compiled loss's and metrics' (the model run once, eagerly,
    on the first two rows of ``x``, ``y``, then the metrics reset).

    Call it after ``compile``, right before ``fit``, with the arrays ``fit`` gets (two rows are enough), and after the
    last change to which layers are trainable: the optimizer is built for the trainable weights of that moment. It
    changes no weight and draws no random number (dropout is off in that one forward pass): ``fit`` trains exactly as
    it would without it (``tests/test_fitting.py`` checks both, and counts the traces).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"build_for_fit takes a Keras model, got {type(model).__name__}")
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError("the model is not compiled: call model.compile(optimizer=..., loss=...) first, then "
                         "build_for_fit, then fit")
    if not model.built:
        raise ValueError("the model has no weights yet: build it (call it once on a batch, or give it an Input) "
                         "before build_for_fit")

    def first_rows(part):
        if part is None:
            return None
        rows = part[:2]
        if len(rows) == 0:
            raise ValueError("build_for_fit needs at least one row of x and y: pass the arrays fit gets")
        return rows

    x, y, sample_weight = (keras.tree.map_structure(first_rows, part) for part in (x, y, sample_weight))
    with model.distribute_strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # what the first training step would do, inside the trace
        y_pred = model(x, training=False)
        model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        model.reset_metrics()  # the two rows leave no trace in what fit reports
