"""The recipe for your own Keras code: what ``scripts/train.py`` would train with."""

import dataclasses

import keras
import numpy as np

from keras_imae import losses
from keras_imae.training import optimizers
from keras_imae.training.recipe import (DEFAULTS, LOSS_HPARAMS, format_resolved, loss_settings,
                                        warmup_epochs, weight_decay)

__all__ = ["Recommended", "recommended"]


@dataclasses.dataclass
class Recommended:
    """The recipe for your own Keras code (see :func:`recommended`).

    Attributes:
        loss: the ``keras.losses.Loss`` to compile with.
        optimizer: the ``keras.optimizers.Optimizer`` to compile with.
        callbacks: the callbacks to pass to ``fit`` (DM/IMAE: the flat-emphasis warm-up).
        epochs, batch_size: to pass to ``fit`` (the schedule and decay assume them).
        settings: every value, as :func:`keras_imae.training.recipe.resolve` would give a run.
    """

    loss: object
    optimizer: object
    callbacks: list
    epochs: int
    batch_size: int
    settings: dict

    def __str__(self):
        # a run's block, less its config.json: nothing is written here
        return format_resolved(self.settings, title="Recommended settings (also in .settings):")


def recommended(model=None, *, num_examples, epochs=None, batch_size=None, loss="dm",
                train_data=None, pair_margins=None, **loss_settings):
    """The settings ``scripts/train.py`` would train with, for your own Keras model.

    Example:
        >>> r = keras_imae.recommended(model, num_examples=len(x_train))
        >>> model.compile(optimizer=r.optimizer, loss=r.loss)
        >>> model.fit(x_train, y_noisy, epochs=r.epochs, batch_size=r.batch_size,
        ...           callbacks=r.callbacks)

    Args:
        model: your model, or ``None``; one with ``BatchNormalization`` layers gets the
            BatchNorm networks' DM setting.
        num_examples: training examples per epoch (sets the weight decay and the schedule).
        epochs, batch_size: default from :data:`DEFAULTS`.
        loss: a loss name (``dm``, ``imae``, ``cce``, ...).
        train_data: your training set without augmentation, ``(x, noisy_labels)`` arrays or
            a ``tf.data.Dataset`` of ``(x, labels)``: what
            :class:`keras_imae.callbacks.PairMargins` estimates the noise from.
        pair_margins: DM/IMAE: one rejection margin per class pair from that estimate
            (``None``: the recipe's default, applied when ``train_data`` is given;
            ``True`` needs ``train_data``).
        **loss_settings: hyper-parameters that override the recipe's (``beta=8``, ...);
            for ``loss="forward"``, ``transition=T``, else ``T`` is estimated from
            ``train_data`` arrays (:func:`keras_imae.noise.transition_from_labels`).

    Returns:
        A :class:`Recommended` (``print`` it for the settings).
    """
    from keras_imae import callbacks  # only here: the run's own callbacks are set by _run

    epochs = DEFAULTS["epochs"] if epochs is None else epochs
    batch_size = DEFAULTS["batch_size"] if batch_size is None else batch_size
    batch_norm = model is not None and any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in _layers(model))
    if loss == "forward" and "transition" not in loss_settings:
        loss_settings["transition"] = _forward_transition(model, train_data)
    unknown = sorted(set(loss_settings) - set(LOSS_HPARAMS) - {"transition"})
    if unknown:
        raise ValueError(f"Unknown settings {unknown}. Expected loss hyper-parameters among "
                         f"{list(LOSS_HPARAMS)}.")
    kwargs = loss_settings_of(loss, loss_settings, "mlp_bn" if batch_norm else "mlp")
    warmup = warmup_epochs(loss, epochs)
    extra = _pair_margins(kwargs, warmup, train_data, pair_margins)
    decay = weight_decay(DEFAULTS["optimizer"], None, batch_size, num_examples, epochs)
    optimizer = optimizers.make_optimizer(
        DEFAULTS["optimizer"], learning_rate=DEFAULTS["learning_rate"],
        schedule=DEFAULTS["lr_schedule"], epochs=epochs,
        steps_per_epoch=int(np.ceil(num_examples / batch_size)), weight_decay=decay)
    settings = {"loss": loss, "loss_settings": kwargs, "warmup_epochs": warmup,
                "pair_margins": bool(extra),
                "optimizer": DEFAULTS["optimizer"], "learning_rate": DEFAULTS["learning_rate"],
                "lr_schedule": DEFAULTS["lr_schedule"], "weight_decay": decay,
                "epochs": epochs, "batch_size": batch_size}
    return Recommended(losses.get(loss, **kwargs), optimizer,
                       ([callbacks.EmphasisWarmup(warmup)] if warmup else []) + extra, epochs,
                       batch_size, settings)


def _pair_margins(kwargs, warmup, train_data, chosen):
    """``[PairMargins]`` (at the end of the warm-up) or ``[]``."""
    from keras_imae import callbacks

    has_cap = losses.reject_margins(kwargs.get("reject_margin")) is not None
    if chosen and (not has_cap or train_data is None):
        raise ValueError(
            "pair_margins=True needs DM or IMAE with a reject_margin, and train_data to "
            f"estimate the noise from. Received: reject_margin={kwargs.get('reject_margin')}, "
            f"train_data={'None' if train_data is None else 'given'}")
    chosen = DEFAULTS["pair_margins"] if chosen is None else chosen
    if not (chosen and has_cap and train_data is not None):
        return []
    return [callbacks.PairMargins(train_data, max(1, warmup))]


def _forward_transition(model, train_data):
    """Forward correction's ``T`` from ``(x, noisy_labels)`` arrays."""
    from keras_imae import noise

    if not isinstance(train_data, tuple) or model is None:
        raise ValueError("loss='forward' needs its transition matrix: pass transition=T, or "
                         "the model and train_data=(x, noisy_labels) arrays to estimate it "
                         f"from. Received: model={'None' if model is None else 'given'}, "
                         f"train_data={type(train_data).__name__}")
    x, labels = train_data
    return noise.transition_from_labels(np.asarray(x), labels, model.output_shape[-1])


loss_settings_of = loss_settings  # recommended()'s keyword hides the function's name


def _layers(model):
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        yield layer
        stack.extend(getattr(layer, "layers", []))
