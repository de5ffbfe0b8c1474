"""The custom layer of notebooks/examples/wine_notes.ipynb. It lives beside the notebook, not in one of its
cells, so that `pipeline.notebook.log_model` can ship it with the model: the service imports it from the model's
own `code/` folder before loading, in a process that has nothing of the notebook."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="wine_notes")
class SignedLog(keras.layers.Layer):
    """sign(x) * log(1 + |x|): measurements of very different scales (proline in the hundreds, hue near 1)
    brought to a few units before they are standardised."""

    def call(self, inputs):
        return keras.ops.sign(inputs) * keras.ops.log1p(keras.ops.abs(inputs))
