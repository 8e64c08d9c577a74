"""Which Keras backend runs, and TensorFlow imported only where its code paths need it.

Internal. The losses, ``RobustModel`` and the callbacks run on the TensorFlow and JAX
backends; their TensorFlow-only branches (cross-replica all-reduces, ``tf.GradientTape``,
in-graph assertions) call :func:`tf` when they run, so importing them under the JAX backend
does not import TensorFlow.
"""

import importlib

import keras

__all__ = ["is_tensorflow", "is_jax_tracer", "tf"]


def is_tensorflow():
    """Whether Keras runs on the TensorFlow backend."""
    return keras.backend.backend() == "tensorflow"


def tf():
    """The ``tensorflow`` module (imported on first use)."""
    return importlib.import_module("tensorflow")


def is_jax_tracer(x):
    """Whether ``x`` is abstract inside a JAX trace (``jit``, ``grad``, ``eval_shape``)."""
    if keras.backend.backend() != "jax":
        return False
    import jax  # only reached on the JAX backend

    return isinstance(x, jax.core.Tracer)
