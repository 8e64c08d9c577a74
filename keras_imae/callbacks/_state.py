"""How the callbacks write a loss's training-phase state (``loss.state``, internal).

The callbacks never change a loss's hyper-parameters: they ``assign`` the variables of its
:class:`keras_imae.losses.LossState`, which the compiled step reads when it runs.
"""

import contextlib

import keras


def loss_state(model, name):
    """The compiled loss's state if it takes the variable ``name``, else ``None``; built for
    the model's classes when the model did not build it (a model other than
    :class:`keras_imae.models.RobustModel`)."""
    state = getattr(model.loss, "state", None)
    if state is None or name not in state.names:
        return None
    if not state.built:
        strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            state.build(_num_classes(model))
        # A step traced before the state existed computed without it: trace it again (once).
        model.make_train_function(force=True)
    return state


def _num_classes(model):
    try:
        return model.output_shape[-1]
    except (AttributeError, ValueError, RuntimeError) as err:
        raise ValueError(
            "The loss's state needs the number of classes, and this model has no "
            f"output_shape ({err}). Call `model.loss.state.build(num_classes)` before fit, "
            "or use keras_imae.models.RobustModel.") from None


def write(model, state, **values):
    """``state.assign(**values)``, then, on the JAX backend for a model that does not track
    the state (not a :class:`keras_imae.models.RobustModel`), a rebuild of its train step:
    Keras' JAX steps read only the variables the model tracks, others as traced constants."""
    state.assign(**values)
    if keras.backend.backend() == "jax" and not _tracked(model, state):
        model.make_train_function(force=True)


def _tracked(model, state):
    ids = {id(v) for v in model.non_trainable_variables}
    return all(id(state.variable(name)) in ids for name in state.names)
