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

import keras
import tensorflow as tf

from keras_imae import files

__all__ = ["export_saved_model", "ENDPOINT"]

ENDPOINT = "serve"


def _serving_archive(model):
    archive = keras.export.ExportArchive()
    archive.track(model)
    shape = (None,) + tuple(model.inputs[0].shape[1:])

    def serve(images):
        logits = tf.cast(model(images, training=False), tf.float32)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "classes": tf.argmax(logits, axis=-1),
        }

    archive.add_endpoint(
        name=ENDPOINT, fn=serve,
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    return archive


def export_saved_model(model, path, *, overwrite=False):
    """Write ``model`` (logits out) as a serving SavedModel at ``path``, atomically.

    Args:
        model: a built functional/sequential Keras model whose output is logits.
        path: target folder; its parent is created if missing.
        overwrite: replace an existing ``path``; otherwise an existing target is an error.
            A failed replacement leaves the previous export in place.

    Returns:
        The absolute path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: the model has no defined input (not built).
    """
    try:
        model.inputs[0]
    except (AttributeError, IndexError, TypeError, ValueError) as err:
        raise ValueError(
            "The model has no defined input; build or call it before exporting.") from err
    archive = _serving_archive(model)
    return files.atomic_replace_dir(
        path, lambda tmp: archive.write_out(tmp, verbose=False), overwrite=overwrite)
