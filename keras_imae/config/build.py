"""The run's model: built from the resolved settings (:func:`recipe.resolve`) and compiled
with the run's loss and optimizer, a backbone once per fine-tuning phase."""

from keras_imae import data, losses, models
from keras_imae.config import optimizers

__all__ = ["PHASES", "build_loss", "compile_phase", "compiled_model", "early_learning",
           "optimizer"]


PHASES = ("head", "finetune")


def build_loss(resolved):
    """The loss a run compiles: ``losses.get(loss, **loss_settings)``."""
    return losses.get(resolved["loss"], **resolved["loss_settings"])


def early_learning(resolved, num_examples):
    """The :class:`keras_imae.models.EarlyLearning` a run compiles with (its targets for the
    ``num_examples`` example ids of the training split), or ``None`` without ELR."""
    if not resolved.get("elr_lambda"):
        return None
    return models.EarlyLearning(num_examples, lam=resolved["elr_lambda"],
                                momentum=resolved["elr_momentum"])


def optimizer(resolved, num_train, *, learning_rate=None, epochs=None):
    """The optimizer of resolved settings (a run's, :func:`keras_imae.recommended`'s) for one
    fit of ``epochs`` (default: all) at ``learning_rate`` (default: the resolved one) over
    ``num_train`` examples per epoch: the step schedule's drops at the resolved shares of
    those epochs; AdamW decays the weights itself, SGD and Adam get no decay here (theirs is
    the model's L2 penalty)."""
    epochs = resolved["epochs"] if epochs is None else epochs
    step = resolved.get("lr_step_fractions")
    return optimizers.make_optimizer(
        resolved["optimizer"],
        learning_rate=resolved["learning_rate"] if learning_rate is None else learning_rate,
        momentum=resolved["momentum"], schedule=resolved["lr_schedule"], epochs=epochs,
        steps_per_epoch=data.steps_per_epoch(num_train, resolved["batch_size"]),
        decay_epochs=None if step is None else [f * epochs for f in step],
        **({} if step is None else {"decay_rate": resolved["lr_step_rate"]}),
        weight_decay=resolved["weight_decay"] if resolved["optimizer"] == "adamw" else None)


def compiled_model(resolved, dataset, num_train, *, seed, jit_compile=False):
    """The run's model, compiled with its loss and optimizer (call it in ``strategy.scope()``
    to distribute), and with ELR's targets for every training example id when
    ``elr_lambda`` is set. Seeded by ``seed``. A backbone is compiled for its first phase
    (:func:`compile_phase`)."""
    elr = early_learning(resolved, len(dataset.y_train))
    decoupled = resolved["optimizer"] == "adamw"  # AdamW decays itself; else an L2 penalty
    decay = resolved["weight_decay"]
    if models.is_backbone(resolved["model"]):
        if decay and not decoupled:
            raise ValueError(
                f"A keras.applications backbone takes AdamW's decoupled weight decay only "
                f"(its layers have no L2 penalty). Received: optimizer="
                f"{resolved['optimizer']!r}, weight_decay={decay}")
        model = models.backbone_model(resolved["model"], dataset.input_shape,
                                      dataset.num_classes, weights=resolved["weights"],
                                      image_size=resolved["image_size"])
        compile_phase(model, resolved, num_train, "head" if resolved["head_epochs"]
                      else "finetune", loss=build_loss(resolved), early_learning=elr,
                      jit_compile=jit_compile)
        return model
    model = models.build_model(resolved["model"], dataset.input_shape, dataset.num_classes,
                               mean=dataset.mean, std=dataset.std,
                               weight_decay=0.0 if decoupled else decay,
                               input_dropout=resolved["input_dropout"], seed=seed)
    model.compile(optimizer=optimizer(resolved, num_train), loss=build_loss(resolved),
                  early_learning=elr, jit_compile=jit_compile)
    return model


def compile_phase(model, resolved, num_train, phase, *, loss=None, early_learning=None,
                  jit_compile=False):
    """Compile a backbone model for one phase of fine-tuning, as Keras' guide does it:
    ``"head"``, the backbone frozen, ``learning_rate`` over the ``head_epochs``;
    ``"finetune"``, the whole network (a pretrained backbone's BatchNorm layers stay frozen),
    ``finetune_learning_rate`` over the other epochs. Each
    phase gets a new optimizer (built now, so a backup of the phase loads into it); ``loss``
    (default: the model's compiled loss, with its training-phase state) and ``early_learning``
    (default: the model's, with its targets) are kept. Call it in ``strategy.scope()``."""
    if phase not in PHASES:
        raise ValueError(f"Invalid phase {phase!r}. Expected one of {PHASES}.")
    head = resolved["head_epochs"]
    models.set_backbone_trainable(model, phase == "finetune",
                                  batch_norm=resolved["weights"] is None)
    if phase == "head":
        rate, epochs = resolved["learning_rate"], head
    else:
        rate, epochs = resolved["finetune_learning_rate"], resolved["epochs"] - head
    phase_optimizer = optimizer(resolved, num_train, learning_rate=rate, epochs=epochs)
    model.compile(optimizer=phase_optimizer, loss=model.loss if loss is None else loss,
                  early_learning=model.early_learning if early_learning is None
                  else early_learning, jit_compile=jit_compile)
    phase_optimizer.build(model.trainable_variables)
