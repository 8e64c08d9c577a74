"""keras-imae: noise-robust training for Keras via IMAE and Derivative Manipulation.

Sub-modules (imported lazily, nothing happens at import time beyond registering the
serializable losses):

- ``keras_imae.weighting``: emphasis densities w(p).
- ``keras_imae.losses``: the losses (one custom-gradient core).
- ``keras_imae.noise``: label corruption.
- ``keras_imae.data``: datasets and tf.data pipelines.
- ``keras_imae.models``: ``RobustModel`` and architectures.
- ``keras_imae.ranking``: which training examples are mislabelled.
- ``keras_imae.optimizers``: the papers' optimizer recipe.
- ``keras_imae.distribute``: strategies from a string.
- ``keras_imae.callbacks``: end-of-epoch fit monitor.
"""

__version__ = "0.1.0"

import importlib

# Imported eagerly so that the losses, RobustModel and its layers are registered with Keras'
# serialization as soon as ``keras_imae`` is imported: a ``.keras`` file saved by this
# library then loads with ``keras.models.load_model`` and no ``custom_objects``.
from keras_imae import losses, models, weighting  # noqa: E402,F401

_SUBMODULES = ("noise", "data", "distribute", "callbacks", "export", "evaluation", "training",
               "comparison", "plotting", "ranking", "optimizers", "label_issues")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
