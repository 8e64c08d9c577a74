"""Out-of-sample probabilities from any Keras model: the ``fit`` of
:func:`keras_imae.label_issues.cross_val_probabilities` for a model builder."""

import keras
import numpy as np

from keras_imae import data
from keras_imae.run import signals
from keras_imae.run_folder.export import output_kind

__all__ = ["keras_fit"]


def keras_fit(build_model, *, epochs, batch_size=64, augment=None, seed=0, verbose=1,
              callbacks=()):
    """A ``fit(x, labels, fold) -> predict`` of any Keras classifier, for
    :func:`keras_imae.label_issues.cross_val_probabilities`.

    Each fold calls ``build_model(fold)`` for a fresh *compiled* model (logits or softmax
    outputs: :func:`keras_imae.run_folder.export.output_kind` tells which) and trains it for
    ``epochs`` on the fold's training part (``keras_imae.data.plain_dataset``, seeded
    shuffling, optional ``augment``), with Keras' progress bar when ``verbose``.

    Example:
        >>> def build(fold):
        ...     model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        ...     model.compile("adam", keras_imae.CategoricalCrossentropy())
        ...     return model
        >>> probs, _ = keras_imae.cross_val_probabilities(
        ...     x, labels, 10, fit=label_issues.keras_fit(build, epochs=20), folds=5)

    Returns:
        ``fit(x, labels, fold)``; its ``predict(x)`` returns logits (the log of the
        probabilities for a softmax model).
    """

    def fit(x, labels, fold):
        keras.utils.set_random_seed(seed * 1000 + fold)
        model = build_model(fold)
        kind = output_kind(model)
        train = data.plain_dataset(x, labels, batch_size=batch_size, augment=augment,
                                   seed=seed * 1000 + fold)
        model.fit(train, epochs=epochs, verbose=verbose,
                  callbacks=[*callbacks, signals.StopOnSignal()])

        def predict(x_held_out):
            batches = data.eval_dataset(x_held_out, batch_size=max(batch_size, 256))
            outputs = np.concatenate([keras.ops.convert_to_numpy(model(b, training=False))
                                      for b in batches]).astype("float64")
            return np.log(np.maximum(outputs, 1e-300)) if kind == "probabilities" else outputs

        return predict

    return fit
