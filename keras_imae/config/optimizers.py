"""The papers' optimizer recipe: SGD with momentum 0.9 and a step schedule (or Adam, AdamW).

:func:`make_optimizer` is what :func:`keras_imae.config.build.compiled_model` compiles with.

References:
    K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition." CVPR 2016
    (the step schedule: /10 at 32k and 48k of 64k iterations).
    I. Loshchilov, F. Hutter. "Decoupled Weight Decay Regularization." ICLR 2019 (AdamW).
"""

import math

import keras

from keras_imae import _checks as checks
from keras_imae._defaults import DEFAULTS

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "weight_decay"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = (None, "step", "cosine")


def _schedule(learning_rate, schedule, epochs, steps_per_epoch, decay_epochs, decay_rate):
    """The learning rate (a float or a ``keras.optimizers.schedules`` object)."""
    if decay_epochs is not None and schedule != "step":
        raise ValueError(
            "Argument `decay_epochs` is only used with schedule='step'. "
            f"Received: decay_epochs={decay_epochs}, schedule={schedule!r}"
        )
    if schedule is None:
        return learning_rate
    if not (epochs and steps_per_epoch and epochs > 0 and steps_per_epoch > 0):
        raise ValueError(
            f"schedule={schedule!r} needs positive `epochs` and `steps_per_epoch`. "
            f"Received: epochs={epochs}, steps_per_epoch={steps_per_epoch}"
        )
    if schedule == "cosine":
        total = int(epochs * steps_per_epoch)
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total)
    if decay_epochs is None:
        decay_epochs = tuple(f * epochs for f in DEFAULTS["lr_step_fractions"])
    boundaries = [int(round(e * steps_per_epoch)) for e in decay_epochs]
    if any(b <= a for a, b in zip([0] + boundaries, boundaries)):
        raise ValueError(
            "Invalid value for argument `decay_epochs`. Expected increasing positive "
            f"epochs. Received: decay_epochs={decay_epochs}"
        )
    values = [learning_rate * decay_rate**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(name="sgd", *, learning_rate, momentum=None, schedule=None, epochs=None,
                   steps_per_epoch=None, decay_epochs=None, decay_rate=DEFAULTS["lr_step_rate"],
                   weight_decay=None):
    """The papers' optimizer: SGD with momentum 0.9 and a step schedule (or Adam, AdamW).

    ``schedule=None``: constant ``learning_rate``. ``"step"``: multiply by ``decay_rate`` at
    each of ``decay_epochs`` (default: 50% and 75% of ``epochs``, as He et al. 2016's
    32k/48k of 64k iterations). ``"cosine"``: ``CosineDecay`` from ``learning_rate`` to 0 over
    ``epochs * steps_per_epoch`` steps. For SGD and Adam, weight decay is the coupled L2 penalty
    that lives in the model (``build_model(weight_decay=...)``, the papers' SGD convention);
    ``"adamw"`` decays the weights itself (decoupled, Loshchilov & Hutter 2019): each step
    multiplies every weight by ``1 - learning_rate * weight_decay``.

    Args:
        name: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        learning_rate: Initial learning rate.
        momentum: SGD momentum (default ``DEFAULTS["sgd_momentum"]``, 0.9); not accepted for
            Adam.
        schedule: ``None``, ``"step"`` or ``"cosine"``.
        epochs, steps_per_epoch: Training length; required by a schedule.
        decay_epochs: Epochs at which ``"step"`` decays.
        decay_rate: ``"step"`` factor (0.1 divides by 10).
        weight_decay: AdamW's decoupled decay (default ``DEFAULTS["adamw_weight_decay"]``,
            0.004 as Keras'); ``"adamw"`` only.

    Returns:
        A ``keras.optimizers.Optimizer``.
    """
    learning_rate = checks.number("learning_rate", learning_rate, low_open=True)
    if schedule not in SCHEDULES:
        raise ValueError(
            "Invalid value for argument `schedule`. Expected None, 'step' or 'cosine'. "
            f"Received: schedule={schedule!r}"
        )
    lr = _schedule(learning_rate, schedule, epochs, steps_per_epoch, decay_epochs, decay_rate)
    if name not in OPTIMIZERS:
        raise ValueError(
            "Invalid value for argument `name`. Expected 'sgd', 'adam' or 'adamw'. "
            f"Received: name={name!r}")
    if momentum is not None and name != "sgd":
        raise ValueError(
            f"Argument `momentum` is only used by SGD. Received: momentum={momentum}, "
            f"name={name!r}")
    if weight_decay is not None and name != "adamw":
        raise ValueError(
            "Argument `weight_decay` of make_optimizer is AdamW's decoupled decay; for "
            f"{name!r} put the L2 penalty in the model (build_model(weight_decay=...)). "
            f"Received: weight_decay={weight_decay}, name={name!r}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr,
                                    momentum=DEFAULTS["sgd_momentum"] if momentum is None
                                    else momentum)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    weight_decay = (DEFAULTS["adamw_weight_decay"] if weight_decay is None
                    else checks.number("weight_decay", weight_decay))
    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)

def weight_decay(optimizer, decay, batch_size, num_train, epochs):
    """``decay`` if set; else AdamW's normalised decay
    ``normalized_weight_decay * sqrt(batch_size / (num_train * epochs))``, 0 for SGD/Adam."""
    if decay is not None:
        return decay
    if optimizer != "adamw":
        return 0.0
    return DEFAULTS["normalized_weight_decay"] * math.sqrt(batch_size / (num_train * epochs))
