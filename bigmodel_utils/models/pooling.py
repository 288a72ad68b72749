"""A maximum over time that respects the padding mask (chapter 06).

Importing this module imports Keras and registers the layer, so models saved with it load with
``keras.saving.load_model`` (the service imports it before loading a model: chapter 11).
"""

from __future__ import annotations

from bigmodel_utils.notebook import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402  (after quiet_tensorflow, which silences TensorFlow's start-up log)


@keras.saving.register_keras_serializable(package="bigmodel")
class MaskedGlobalMaxPooling1D(keras.layers.Layer):
    """The maximum over time of the real (unmasked) positions only; zeros for a sequence that has none.

    ``keras.layers.GlobalMaxPooling1D`` ignores the mask: it takes the maximum over every position, padding
    included. After a unidirectional Keras RNN that happens to be harmless (at padded positions it repeats its
    last real output), but a ``Bidirectional`` RNN outputs zeros there, so a zero from the padding can win the
    maximum and the same review scores differently with more padding (chapter 06 measures it).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.max(inputs, axis=1)
        mask = keras.ops.expand_dims(keras.ops.cast(mask, "bool"), -1)
        lowest = keras.ops.full_like(inputs, keras.ops.min(inputs) - 1.0)  # below every real value
        best = keras.ops.max(keras.ops.where(mask, inputs, lowest), axis=1)
        return keras.ops.where(keras.ops.any(mask, axis=1), best, keras.ops.zeros_like(best))

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
