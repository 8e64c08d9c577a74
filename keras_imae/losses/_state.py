"""A loss's training-phase state: variables the model owns and saves (internal).

A loss of :mod:`keras_imae.losses` is a function of its inputs, its hyper-parameters and
this state. What changes during training -- DM's flat-emphasis warm-up, the noise transition
estimated from the run's own predictions -- is written here by ``variable.assign``
(:class:`keras_imae.callbacks.EmphasisWarmup`, :class:`keras_imae.callbacks.PairMargins`);
the loss reads the variables when its step runs, so no step function is rebuilt and the
hyper-parameters (``get_config``) never change.

Where the variables live: :class:`LossState` is a ``keras.layers.Layer`` that the loss holds
as ``loss.state``.

- Saving: Keras' saving walks ``model.loss`` and its attributes, so the state is written by
  ``model.save`` (``.keras``) and ``model.save_weights`` (the run's backup) under
  ``loss/state``, and read back by ``keras.models.load_model`` / ``load_weights``: a model
  saved during the warm-up reloads with a flat emphasis. A file written before the state
  existed loads with the default state (:meth:`LossState.load_own_variables`).
- Training: :class:`keras_imae.models.RobustModel` builds the state when it is compiled
  (inside the strategy scope it is compiled in: mirrored variables under ``tf.distribute``)
  and tracks it, so on the JAX backend the variables are part of the state Keras' stateless
  steps receive. Another ``keras.Model`` does not track it: on TensorFlow the compiled step
  still reads the variables (a ``tf.function`` captures them by reference); on JAX it would
  see the value it was traced with, so the callbacks rebuild that model's step after they
  write (the callbacks of :mod:`keras_imae.callbacks`).
"""

import keras
import numpy as np

__all__ = ["LossState", "STATE_VARIABLES", "ADDED_LATER"]

# name -> (what it holds, dtype, shape of K classes, its value when nothing was written)
STATE_VARIABLES = {
    "flat_emphasis": ("True while the emphasis is flat (the warm-up)", "bool",
                      lambda k: (), False),
    "noise_transition": ("the noise transition T[k, c] estimated from the training labels; "
                         "all zeros: none yet", "float32", lambda k: (k, k), 0.0),
    "emphasis_scale": ("the share of the emphasis strength in use (the ramp after the "
                       "warm-up); 1: all of it", "float32", lambda k: (), 1.0),
}
# Variables added after files with a state were first written: a file without one loads
# with its default (a model saved before the ramp existed trained with the whole emphasis).
ADDED_LATER = ("emphasis_scale",)


class LossState(keras.layers.Layer):
    """The training-phase variables of one loss (see the module docstring).

    Args:
        names: the variables the loss takes, among :data:`STATE_VARIABLES`.

    Until :meth:`build` creates the variables the loss computes as configured (emphasis on,
    no transition): a loss called on its own needs no state.
    """

    def __init__(self, names, **kwargs):
        super().__init__(trainable=False, **kwargs)
        unknown = set(names) - set(STATE_VARIABLES)
        if unknown or not names:
            raise ValueError(f"Invalid state names {sorted(names)}. Expected some of "
                             f"{list(STATE_VARIABLES)}.")
        self.names = tuple(names)
        self.num_classes = None

    def build(self, num_classes):
        """Creates the variables for ``num_classes`` classes, each at its default value."""
        self.num_classes = int(num_classes)
        for name in self.names:
            doc, dtype, shape, default = STATE_VARIABLES[name]
            variable = self.add_weight(
                shape=shape(self.num_classes), dtype=dtype, trainable=False, name=name,
                initializer=keras.initializers.Constant(default))
            setattr(self, f"_{name}", variable)

    def variable(self, name):
        """The variable ``name`` (``None`` before :meth:`build`)."""
        if name not in self.names:
            raise ValueError(f"This loss has no state {name!r}; its state: {list(self.names)}.")
        return getattr(self, f"_{name}", None)

    def values(self):
        """``{name: numpy value}`` now (empty before :meth:`build`)."""
        if not self.built:
            return {}
        return {name: keras.ops.convert_to_numpy(self.variable(name)) for name in self.names}

    def assign(self, **values):
        """Writes the given variables (``None``: the default value)."""
        for name, value in values.items():
            variable = self.variable(name)
            if value is None:
                value = np.full(variable.shape, STATE_VARIABLES[name][3],
                                keras.backend.standardize_dtype(variable.dtype))
            variable.assign(np.asarray(value, keras.backend.standardize_dtype(variable.dtype)))

    # Saved by name, so that a state with other variables is named, not mis-assigned.
    def save_own_variables(self, store):
        if self.built:
            for name in self.names:
                store[name] = self.variable(name)

    def load_own_variables(self, store):
        keys = set(store.keys())
        if not keys:  # a file written before losses had a state: keep the defaults
            return
        if keys != set(self.names) - (set(ADDED_LATER) - keys):
            raise ValueError(f"The saved loss state holds {sorted(keys)}; this loss takes "
                             f"{sorted(self.names)}.")
        if not self.built:  # a model that did not build it (not a RobustModel)
            shape = np.shape(store["noise_transition"]) if "noise_transition" in keys else (1, 1)
            self.build(shape[0])
        for name in self.names:
            self.assign(**{name: store[name] if name in keys else None})
