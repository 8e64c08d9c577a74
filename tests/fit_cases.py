"""Hand-made RobustModel fit cases shared by several test files (models, callbacks, quality,
distribute, keras_compat, jax_checks, backup, reliability).

A helper module, not a test file: the tests import it instead of importing each other.
"""

import keras
import numpy as np

from keras_imae import models

SCCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class KillAfter(keras.callbacks.Callback):
    """Stops a fit as a kill would (``KeyboardInterrupt``) after ``epoch`` epochs, once every
    callback before it has run (the backup of those epochs written)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def identity_model(num_classes=3):
    """A RobustModel whose logits are its input (a frozen-by-lr=0 identity Dense)."""
    inputs = keras.Input((num_classes,))
    outputs = keras.layers.Dense(
        num_classes, use_bias=False, kernel_initializer="identity"
    )(inputs)
    model = models.RobustModel(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.0), SCCE)
    return model


# Ten examples, K = 3, predictions fixed by one-hot logits. Batch 1 = examples 0-5, batch 2 =
# examples 6-9 (batch_size 6): different compositions, so a mean of batch means is wrong.
PRED = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
CLEAN = np.array([0, 1, 2, 1, 1, 0, 2, 2, 2, 1])
GIVEN = np.array([0, 1, 2, 1, 1, 2, 0, 1, 0, 1])
# clean (given == clean): 0,1,2,3,4,9 -> hits (pred == given): 0,1,2,4 -> clean_fit 4/6
# noisy: 5,6,7,8 -> pred == given at 5,6,7 -> noisy_fit 3/4; pred == clean at 8 -> 1/4
# accuracy (pred == given): 0,1,2,4,5,6,7 -> 7/10
EXPECTED = {"accuracy": 0.7, "clean_fit": 4 / 6, "noisy_fit": 0.75, "noisy_correct": 0.25}
LOGITS = 5.0 * np.eye(3, dtype="float32")[PRED]
