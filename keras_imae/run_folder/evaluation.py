"""Load a trained classifier (SavedModel folder or ``.keras`` file) and score it.

:func:`load_predictor` returns a function ``images -> probabilities`` for either format, so
``scripts/evaluate.py`` treats both alike; failures to load say which file and why, instead of
a framework traceback.
"""

import os
import zipfile

import keras
import numpy as np
import tensorflow as tf

import keras_imae.losses  # noqa: F401  (registers the losses for load_model)
import keras_imae.models  # noqa: F401  (registers RobustModel for load_model)
from keras_imae import data
from keras_imae.run_folder import export

__all__ = ["load_predictor", "load_keras_model", "evaluate", "run_model"]


def load_predictor(path):
    """A function ``x -> probabilities`` (numpy ``[N, K]``) for the model at ``path``.

    Args:
        path: a SavedModel folder written by :func:`keras_imae.run_folder.export.export_saved_model`
            (its ``serve`` endpoint), a ``.keras`` file whose model outputs logits or softmax
            probabilities (:func:`keras_imae.run_folder.export.output_kind`), or a run folder
            of ``scripts/train.py`` (its ``model.keras``).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``path`` exists but is not a loadable model of either kind.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at {path!r} (expected a SavedModel folder or a "
                                "`.keras` file).")
    path = run_model(path)
    if os.path.isdir(path):
        try:
            loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
            getattr(loaded, export.ENDPOINT)
        except Exception as err:  # protobuf, checkpoint (IndexError when truncated), TF errors
            raise ValueError(f"Could not load the SavedModel {path!r} (truncated or not an "
                             f"export of this library?): {type(err).__name__}: {err}") from err
        return lambda x: getattr(loaded, export.ENDPOINT)(
            tf.cast(x, tf.float32))["probabilities"].numpy()
    model = load_keras_model(path)
    kind = export.output_kind(model)

    def predict(x):
        outputs = tf.cast(model.predict(x, batch_size=512, verbose=0), tf.float32)
        return (outputs if kind == "probabilities" else tf.nn.softmax(outputs)).numpy()

    return predict


def run_model(path):
    """``path/model.keras`` when ``path`` is a run folder of ``scripts/train.py`` (a folder
    with a ``model.keras`` and no ``saved_model.pb``), else ``path`` unchanged."""
    model = os.path.join(path, "model.keras")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")) and (
            os.path.isfile(model)):
        return model
    return path


def load_keras_model(path):
    """``keras.models.load_model(path, compile=False)`` with clear errors; a run folder of
    ``scripts/train.py`` loads its ``model.keras`` (:func:`run_model`).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``path`` is not a loadable ``.keras`` file (corrupt, another format, a
            folder that is not a run folder).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model at {path!r}.")
    path = run_model(path)
    if os.path.isdir(path):  # Keras: "UnboundLocalError: weights_store"
        raise ValueError(f"Could not load {path!r} as a Keras model: it is a folder without "
                         "a model.keras (expected a .keras file or a run folder of "
                         "scripts/train.py).")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):  # Keras: "File not found"
        raise ValueError(f"Could not load the Keras model file {path!r}: not a valid .keras "
                         "(zip) file -- truncated, corrupt or another format.")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # zip, h5py, JSON and Keras errors all mean "not a model"
        raise ValueError(f"Could not load the Keras model file {path!r}: "
                         f"{type(err).__name__}: {err}") from err


def evaluate(predict, x, y, num_classes, *, batch_size=None):
    """Accuracy and per-class accuracy of ``predict`` on ``(x, y)``, in batches of
    ``batch_size`` (default :func:`keras_imae.data.eval_batch_size` of the inputs).

    Returns:
        ``{"accuracy": float, "per_class_accuracy": [K floats, NaN for an absent class],
        "num_examples": N}``.

    Raises:
        ValueError: the model does not take these inputs or has another number of classes
            (e.g. a CIFAR model evaluated on digits).
    """
    y = np.asarray(y)
    batch_size = batch_size or data.eval_batch_size(np.shape(x)[1:])
    try:
        probs = [predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(
            f"The model does not accept these inputs of shape {x.shape[1:]} (wrong dataset?): "
            f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    if probs[0].shape[-1] != num_classes:
        raise ValueError(f"The model predicts {probs[0].shape[-1]} classes but the dataset has "
                         f"{num_classes} (wrong dataset?).")
    pred = np.concatenate([np.argmax(p, axis=-1) for p in probs])
    per_class = [float(np.mean(pred[y == k] == k)) if np.any(y == k) else float("nan")
                 for k in range(num_classes)]
    return {"accuracy": float(np.mean(pred == y)), "per_class_accuracy": per_class,
            "num_examples": int(len(y))}
