"""The recipe for your own Keras code: what ``scripts/train.py`` would train with."""

import dataclasses

import keras
import numpy as np

from keras_imae import losses
from keras_imae.config import build
from keras_imae.config.recipe import (LOSS_HPARAMS, finetune_phases, format_resolved,
                                        training_settings)
from keras_imae.config.recipe import loss_settings as loss_settings_of  # a keyword's name

__all__ = ["Recommended", "recommended"]


@dataclasses.dataclass
class Recommended:
    """The recipe for your own Keras code (see :func:`recommended`).

    Fine-tuning a pretrained network (``recommended(..., pretrained=True)``), in Keras' two
    phases::

        r = keras_imae.recommended(model, num_examples=len(x_train), pretrained=True)
        backbone.trainable = False                      # phase 1: the new head alone
        model.compile(optimizer=r.optimizer, loss=r.loss)
        model.fit(x_train, y_noisy, epochs=r.head_epochs, callbacks=r.callbacks)
        backbone.trainable = True                       # phase 2: everything but BatchNorm
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model.compile(optimizer=r.finetune_optimizer, loss=r.loss)
        model.fit(x_train, y_noisy, initial_epoch=r.head_epochs, epochs=r.epochs,
                  callbacks=r.callbacks)

    Attributes:
        loss: the ``keras.losses.Loss`` to compile with.
        optimizer: the ``keras.optimizers.Optimizer`` to compile with.
        callbacks: the callbacks to pass to ``fit`` (DM/IMAE: the flat-emphasis warm-up).
        epochs, batch_size: to pass to ``fit`` (the schedule and decay assume them).
        settings: every value, as :func:`keras_imae.config.recipe.resolve` would give a run.
        head_epochs: ``pretrained=True``: the epochs of the first phase, the new head alone
            on the frozen backbone, with :attr:`optimizer` (else 0).
        finetune_optimizer: ``pretrained=True``: the optimizer of the second phase, the
            whole network (BatchNorm layers still frozen) from epoch :attr:`head_epochs` on
            (else ``None``).
    """

    loss: object
    optimizer: object
    callbacks: list
    epochs: int
    batch_size: int
    settings: dict
    head_epochs: int = 0
    finetune_optimizer: object = None

    def __str__(self):
        # a run's block, less its config.json: nothing is written here
        return format_resolved(self.settings, title="Recommended settings (also in .settings):")


def recommended(model=None, *, num_examples, epochs=None, batch_size=None, loss="dm",
                train_data=None, pair_margins=None, emphasis_ramp=None, pretrained=False,
                **loss_settings):
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
        emphasis_ramp: DM/IMAE: raise the emphasis strength linearly from the warm-up's end
            to the last epoch (``None``: the recipe's, off; for a model that fits in part).
        **loss_settings: hyper-parameters that override the recipe's (``beta=8``, ...);
            for ``loss="forward"``, ``transition=T``, else ``T`` is estimated from
            ``train_data`` arrays (:func:`keras_imae.noise.transition_from_labels`).
        pretrained: the model starts from pretrained weights: the named recipe
            ``"finetune"`` of ``train.py --model=BACKBONE --weights=...`` (its
            ``head_fraction`` of the epochs for the head alone, then ``finetune_lr_factor``
            times the learning rate for the whole network; :class:`Recommended` shows the two
            ``fit`` calls).

    Returns:
        A :class:`Recommended` (``print`` it for the settings).
    """
    from keras_imae import callbacks  # only here: the run's own callbacks are set by _run
    from keras_imae.config._run_config import RunConfig

    batch_norm = model is not None and any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in _layers(model))
    unknown = sorted(set(loss_settings) - set(LOSS_HPARAMS) - {"transition"})
    if unknown:
        raise ValueError(f"Unknown settings {unknown}. Expected loss hyper-parameters among "
                         f"{list(LOSS_HPARAMS)}.")
    if "transition" in loss_settings and loss != "forward":
        loss_settings_of(loss, loss_settings, None)  # raises: the loss takes no transition
    transition = loss_settings.pop("transition", None)
    if loss == "forward" and transition is None:
        transition = _forward_transition(model, train_data)
    if pair_margins and train_data is None:
        raise ValueError("pair_margins=True needs train_data to estimate the noise from. "
                         "Received: train_data=None")
    # A run's resolution (recipe.training_settings) of the same settings, for the MLP (with
    # BatchNorm if yours has it): your model's loss, phases and optimizer.
    config = RunConfig(loss=loss, pair_margins=pair_margins, emphasis_ramp=emphasis_ramp,
                       **loss_settings, recipe="finetune" if pretrained else "scratch",
                       **{k: v for k, v in (("epochs", epochs), ("batch_size", batch_size))
                          if v is not None})
    settings = training_settings(config, "mlp_bn" if batch_norm else "mlp", num_examples)
    if transition is not None:  # forward correction's T: given, or estimated from the data
        settings["loss_settings"]["transition"] = transition
        settings["pair_margin_epoch"] = None
    if train_data is None:  # PairMargins estimates from train_data
        settings.update(pair_margins=False, pair_margin_epoch=None)
    warmup, ramp, epochs = settings["warmup_epochs"], settings["ramp_epochs"], settings["epochs"]
    fit_callbacks = [callbacks.EmphasisWarmup(warmup, ramp)] if warmup or ramp else []
    if settings["pair_margin_epoch"] is not None:
        fit_callbacks.append(callbacks.PairMargins(train_data, settings["pair_margin_epoch"]))
    head, finetune_optimizer = 0, None
    if pretrained:  # a run's backbone with weights (the recipe "finetune"): two phases
        settings.update(finetune_phases(config, "finetune"))
        head = settings["head_epochs"]
        finetune_optimizer = build.optimizer(settings, num_examples, epochs=epochs - head,
                                             learning_rate=settings["finetune_learning_rate"])
    return Recommended(losses.get(loss, **settings["loss_settings"]),
                       build.optimizer(settings, num_examples, epochs=head or epochs),
                       fit_callbacks,
                       epochs, settings["batch_size"], settings, head, finetune_optimizer)


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


def _layers(model):
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        yield layer
        stack.extend(getattr(layer, "layers", []))
