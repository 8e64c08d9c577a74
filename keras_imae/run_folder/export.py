"""Export a trained classifier as a TensorFlow SavedModel for serving, atomically.

The SavedModel has one serving endpoint, ``serve`` (also the default signature): raw images
in (float32, the training pixel scale -- the model normalises them itself), and out a dict
with ``probabilities`` (softmax of the logits, float32) and ``classes`` (int64 argmax). It is
built with Keras' own :class:`keras.export.ExportArchive`, so it reloads with
``tf.saved_model.load`` (``loaded.serve(x)`` or ``loaded.signatures["serving_default"]``) and
with ``keras.layers.TFSMLayer(path, call_endpoint="serve")``.

The archive is written to a temporary sibling folder and renamed into place, so a reader never
sees a half-written export and an interrupted export leaves the old one intact.
"""

import errno
import os

import keras
import tensorflow as tf

from keras_imae import _files
from keras_imae.run_folder import _folder as run_folder

__all__ = ["ENDPOINT", "ExportFailed", "export_finished_run", "export_saved_model",
           "output_kind"]

ENDPOINT = "serve"
_PROBABILITY_ACTIVATIONS = ("softmax",)
_LOGIT_ACTIVATIONS = ("linear", None)


def output_kind(model):
    """``"logits"`` or ``"probabilities"``: what ``model`` outputs, read from its last layer.

    A ``Softmax`` layer, or a last layer whose ``activation`` is ``softmax``, outputs
    probabilities; a last layer without a non-linear activation (``Dense(K)``, as every
    architecture of this library ends) outputs logits.

    Raises:
        ValueError: a last layer with another activation (``sigmoid``, ``relu``, ...):
            neither logits nor class probabilities, so no probability could be served.
    """
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if isinstance(last, keras.layers.Softmax):
        return "probabilities"
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", activation)
    if name in _PROBABILITY_ACTIVATIONS:
        return "probabilities"
    if name in _LOGIT_ACTIVATIONS or activation is None:
        return "logits"
    raise ValueError(
        f"The model's last layer {last.name!r} has activation {name!r}: its outputs are "
        "neither logits nor softmax probabilities. Export a model that ends in a linear "
        "layer (logits) or a softmax.")


def _served(model):
    """What is exported: ``model``, or, when it carries training-only state outside its graph
    (ELR's ``(N, K)`` per-example targets, :class:`keras_imae.models.EarlyLearning`), a
    functional view of its graph: the same layers and weights, without that state, which
    serving never reads (4 N K bytes)."""
    if getattr(model, "early_learning", None) is None or not getattr(model, "outputs", None):
        return model
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _serving_archive(model):
    model = _served(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    shape = (None,) + tuple(model.inputs[0].shape[1:])
    kind = output_kind(model)

    def serve(images):
        outputs = tf.cast(model(images, training=False), tf.float32)
        probabilities = outputs if kind == "probabilities" else tf.nn.softmax(outputs, -1)
        return {"probabilities": probabilities, "classes": tf.argmax(outputs, axis=-1)}

    archive.add_endpoint(
        name=ENDPOINT, fn=serve,
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    return archive


def export_saved_model(model, path, *, overwrite=False, source=None):
    """Write ``model`` as a serving SavedModel at ``path``, atomically.

    The model may output logits (every architecture here) or softmax probabilities (a plain
    Keras classifier ending in ``activation="softmax"``): :func:`output_kind` tells which,
    and ``probabilities`` are served as the model's probabilities either way, never a
    softmax of probabilities.

    The folder also holds ``keras_imae_export.json`` naming ``source`` (the run folder or
    ``.keras`` file it came from), written in the same atomic rename. An existing ``path`` is
    replaced only if it is an export of the same ``source``, or, with ``overwrite``, another
    keras_imae export; a folder keras_imae did not write is never replaced
    (:func:`keras_imae.run_folder.check_export_target`).

    Args:
        model: a built functional/sequential Keras model outputting logits or softmax
            probabilities.
        path: target folder; its parent is created if missing.
        overwrite: allow replacing another keras_imae export. A failed replacement leaves the
            previous export in place.
        source: what the export comes from (default: ``path`` itself, i.e. no previous
            export is ever replaced without ``overwrite``).

    Returns:
        The absolute path written.

    Raises:
        FileExistsError: ``path`` may not be replaced.
        OSError: the export could not be written (``errno.ENOSPC`` for a full disk, TF's
            ``ResourceExhaustedError`` included); a previous export is left in place.
        ValueError: the model has no defined input (not built), or outputs neither logits
            nor softmax probabilities.
    """
    try:
        model.inputs[0]
    except (AttributeError, IndexError, TypeError, ValueError) as err:
        raise ValueError(
            "The model has no defined input; build or call it before exporting.") from err
    source = os.path.abspath(os.fspath(path if source is None else source))
    if source == os.path.abspath(os.fspath(path)) and os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"Target {os.path.abspath(path)!r} already exists; pass overwrite=True "
            "(--overwrite) to replace it.")
    run_folder.check_export_target(path, source, overwrite=overwrite)
    # allowed above; a new target is claimed atomically (of two exports, one wins)
    replace = overwrite or os.path.lexists(path)
    archive = _serving_archive(model)

    def fill(tmp):
        archive.write_out(tmp, verbose=False)
        run_folder.write_export_marker(tmp, source)

    try:
        return _files.atomic_replace_dir(path, fill, overwrite=replace)
    except tf.errors.ResourceExhaustedError as err:  # TF's writer on a full disk
        raise OSError(errno.ENOSPC, f"No space left on device while writing the SavedModel "
                      f"{os.path.abspath(path)!r} ({err.message.splitlines()[0]}); nothing "
                      "was replaced") from None


class ExportFailed(OSError):
    """Training finished and its model is saved, but the SavedModel export failed; the
    message says how to export without training again."""


def export_finished_run(model, target, *, overwrite, model_dir, model_path):
    """:func:`export_saved_model` of a finished run's ``model`` (saved in ``model_path``).

    Raises:
        ExportFailed: the export failed; the message says how to export without training.
    """
    try:
        return export_saved_model(model, target, overwrite=overwrite, source=model_dir)
    except (OSError, ValueError) as err:
        raise ExportFailed(
            f"Training finished and is saved in {model_path!r}, but the export to "
            f"{target!r} failed: {err}. Fix that and run the same command again: it resumes "
            "with nothing left to train and only exports (or export it yourself: python "
            f"scripts/export.py --model={model_path} --export_dir={target}).") from None
