"""The training recipe of a run: its loss, architecture, optimizer, weight decay and augmentation.

What ``scripts/train.py`` trains with, given a :class:`keras_imae.training.RunConfig`. The
defaults come from ``benchmarks/dm_stability.py`` (README, "Keeping DM stable"): DM's gradient
does not vanish on fitted examples, so outside its emphasis window it is a linear loss with no
minimum; AdamW's decoupled weight decay gives it one, the cosine schedule freezes the model at
the end, DM's emphasis mode is put above the probability the wrong labels reach, a
convolutional network sees randomly translated images and an MLP on images a random fifth of
their pixels masked, so neither can carve out the wrong labels one by one. Two options of this
project's own complete it for DM and IMAE: the margin cap (:data:`MAX_MARGIN`) and a
flat-emphasis warm-up (:data:`WARMUP_FRACTION`).
"""

import math

import numpy as np

from keras_imae import checks, data, losses, models, optimizers

__all__ = ["RUN_LOSS_DEFAULTS", "MAX_MARGIN", "WARMUP_FRACTION", "NORMALIZED_WEIGHT_DECAY",
           "OPTIMIZERS", "CONVOLUTIONAL", "BATCH_NORM", "INPUT_DROPOUT", "loss_from_config",
           "warmup_epochs", "auto_model", "model_name", "augmentation", "input_dropout",
           "weight_decay", "compiled_model"]

# RunConfig fields that are loss hyper-parameters; None means "the loss's default".
HPARAM_FIELDS = ("beta", "lam", "temperature", "q", "alpha", "max_margin")
# DM's run hyper-parameters when none are given: lambda by the structure of the label noise,
# beta by the architecture (benchmarks/dm_stability.py; README, "Keeping DM stable").
# lambda: the emphasis mode lam / (1 + lam) must sit above the probability the model gives a
# wrong label: about r / (K - 1) under symmetric noise, so lam=1 (mode 0.5; the papers'
# CIFAR-10 40% setting) is enough, but up to r under class-dependent noise (pairflip,
# asymmetric, and real noise: noise_type "none"), so lam=2 (mode 0.67).
# beta: a BatchNorm network (the CNN, the ResNets, mlp_bn) fits regions rather than single
# examples, and a sharp emphasis hurts it in two ways. Trained from scratch it picks classes
# up one after another, so beta=16 (55x the floor at the mode) starves the classes it has not
# started on (digits upsampled to 28x28, the CNN, 40% symmetric: 47% final test accuracy with
# beta=16, 95% with beta=8): beta=8 under symmetric noise. And under class-dependent noise a
# class pair it gets wrong (learned in the wrong order) puts its wrong labels near the mode
# (p ~ 2/3) and its clean ones at low p (~ 1/3): in the two-class picture the wrong side pulls
# (r / (1 - r)) * exp(2 beta / 27) times as hard as the clean one, which is below 1 at r = 0.4
# only for beta < 5.5 (beta=4: 0.90; beta=8: 1.21). On digits at 28x28 the translated CNN
# under 40% pair-flip ends at 66% with beta=8 and 82% with beta=4 after 40 epochs (CCE 74%),
# and the pair stays held: after 80 epochs beta=8 is at 72%, beta=4 at 92.5% (3 seeds). At
# 8x8 beta=4 and beta=8 are level (92.7 vs 91.4%), so beta=4 there too. The plain MLP fits
# example by example and keeps beta=16: its clean fit under pair-flip rises with beta
# (digits: 92.4% at 4, 93.9% at 8, 95.1% at 16) and its test accuracy is level or better
# (digits, digits at 28x28, MNIST-1D).
# max_margin: this project's option, not the papers'. Faithful DM pushes a fitted example
# (p -> 1) with the floor's unit force forever, a linear loss with no minimum. Where nothing
# opposes that push (clean data, or the clean classes under asymmetric noise) the logits grow
# until float32 saturates: on digits the faithful run defaults collapse (logits past 1,000,
# 3 of 3 seeds) with clean labels (lam=2) and under 40% asymmetric noise (lam=2, every beta
# from 4 to 16), and on the CNN under asymmetric noise whole classes are absorbed by the
# clean class their wrong labels name (3 -> 8, 5 -> 6: 74.7% final). No stronger decay nor a
# flat warm-up fixed it. Stopping the push beyond |margin| = 16 (p within 1e-7 of 0 or 1;
# see losses.derivative_manipulation) bounds it: 96.7% (clean), 94.9% (MLP, asymmetric),
# 93.9% (CNN, asymmetric), and changes nothing measurable under symmetric and pair-flip noise
# (README, "Keeping DM stable", part 6). Every loss that takes max_margin (DM and IMAE) gets
# it in a run; max_margin=0 gives the faithful gradient.
# The class keeps the design contract's lam=0.5, beta=8 (the papers' CIFAR-100 setting), which
# memorises far more here, and no margin (faithful).
MAX_MARGIN = 16.0
# The flat-emphasis warm-up (callbacks.EmphasisWarmup): this share of a run's epochs trains DM
# and IMAE with beta (temperature) 0, every example weighted the same, before the emphasis
# acts. With lam > 1 the emphasis is asymmetric around p = 1/2, and under class-dependent
# noise it has a second stable state: a region first assigned to the class its wrong labels
# name is held there (its wrong labels near the mode, its clean ones at low p). A flat
# emphasis has no such state (the majority label wins everywhere), so the warm-up sorts the
# regions first. Measured in benchmarks/dm_stability.py --warmup_epochs (README, "Keeping
# DM stable", part 7).
WARMUP_FRACTION = 0.25
RUN_LOSS_DEFAULTS = {"dm": {"symmetric": {"lam": 1.0, "beta": 16.0},
                            "symmetric_batchnorm": {"lam": 1.0, "beta": 8.0},
                            "class_dependent": {"lam": 2.0, "beta": 16.0},
                            "class_dependent_batchnorm": {"lam": 2.0, "beta": 4.0}}}
# AdamW's decoupled decay when none is given: Loshchilov & Hutter (2019)'s normalised weight
# decay, decay = NORMALIZED_WEIGHT_DECAY * sqrt(batch_size / (num_train * epochs)), so one
# setting carries over between dataset sizes and run lengths (digits, 40 epochs: 0.52; 6,400
# examples: 0.24; CIFAR-10, 200 epochs, batch 128: 0.05). Measured in
# benchmarks/dm_stability.py (README, "Keeping DM stable"). SGD and Adam get none: their decay
# is a coupled L2 penalty in the model, which the papers' SGD recipe sets itself.
NORMALIZED_WEIGHT_DECAY = 15.0
OPTIMIZERS = ("sgd", "adam", "adamw")
# model="auto" treats inputs up to this side (digits' 8x8) as feature vectors: the MLP.
TINY_IMAGE_SIDE = 8
# The architectures that see an image as an image: augment="auto" translates their inputs.
CONVOLUTIONAL = tuple(name for name in models.ARCHITECTURES if not name.startswith("mlp"))
# The architectures with BatchNormalization (all but the plain MLP): DM's smaller betas.
BATCH_NORM = tuple(name for name in models.ARCHITECTURES if name != "mlp")
# The MLPs' counterpart on images: Dropout on the input pixels at this rate (Srivastava et
# al. 2014's rate for MNIST MLPs), so that carving out a wrong label needs an exception that
# holds for every mask (benchmarks/dm_stability.py; README, "Keeping DM stable").
INPUT_DROPOUT = 0.2


def loss_from_config(config, model=None):
    """The compiled loss: ``losses.get(config.loss, **hyper-parameters that were set)``, the
    others from :data:`RUN_LOSS_DEFAULTS` for the noise type and the architecture ``model``
    (a name of :data:`keras_imae.models.ARCHITECTURES`; ``None``: not known yet, as in
    :func:`keras_imae.training.validate`, which only checks the settings), and
    ``max_margin`` :data:`MAX_MARGIN` for the losses that take it (``0``: none).

    A hyper-parameter set for a loss that does not take it (``loss="imae", beta=16``) is an
    error, not silently ignored.
    """
    losses.get(config.loss)  # raises for an unknown name
    accepted = losses.LOSSES[config.loss].HYPERPARAMETERS
    unused = [k for k in HPARAM_FIELDS if getattr(config, k) is not None and k not in accepted]
    if unused:
        raise ValueError(
            f"Loss {config.loss!r} does not take {', '.join(f'`{k}`' for k in unused)} "
            f"(its hyper-parameters: {', '.join(accepted) or 'none'}). Received: "
            + ", ".join(f"{k}={getattr(config, k)}" for k in unused))
    kwargs = {k: getattr(config, k) for k in accepted if getattr(config, k) is not None}
    key = "symmetric" if config.noise_type == "symmetric" else "class_dependent"
    if model in BATCH_NORM:
        key += "_batchnorm"
    defaults = dict(RUN_LOSS_DEFAULTS.get(config.loss, {}).get(key, {}))
    if "max_margin" in accepted:
        defaults["max_margin"] = MAX_MARGIN
    kwargs = {**defaults, **kwargs}
    if kwargs.get("max_margin") == 0:  # 0: no margin, the papers' faithful gradient
        kwargs["max_margin"] = None
    if config.normalize != "default":
        kwargs["normalize"] = config.normalize
    return losses.get(config.loss, **kwargs)


def warmup_epochs(config):
    """The run's flat-emphasis warm-up in epochs: ``config.warmup_epochs`` when set, else
    ``floor(WARMUP_FRACTION * epochs)`` (``epochs // 4``) for a loss with an emphasis strength
    (DM, IMAE) and 0 for the others. Raises ``ValueError`` for a negative or non-integer count, one that
    leaves no epoch with the emphasis (``>= epochs``), or one set for a loss without an
    emphasis to flatten."""
    losses.get(config.loss)  # raises for an unknown name
    has_emphasis = losses.LOSSES[config.loss].EMPHASIS_STRENGTH is not None
    if config.warmup_epochs is None:
        return int(WARMUP_FRACTION * config.epochs) if has_emphasis else 0
    epochs = checks.integer("warmup_epochs", config.warmup_epochs, low=0)
    if epochs and not has_emphasis:
        raise ValueError(
            f"Loss {config.loss!r} has no emphasis to warm up (only dm and imae have one). "
            f"Received: warmup_epochs={epochs}")
    if epochs and epochs >= config.epochs:
        raise ValueError(
            "Invalid value for `warmup_epochs`: the flat-emphasis warm-up must leave epochs "
            f"with the emphasis. Expected < epochs ({config.epochs}). Received: "
            f"warmup_epochs={epochs}")
    return epochs


def auto_model(input_shape):
    """``model=\"auto\"``: the MLP for tiny or tabular inputs, ResNet-20 for RGB, else the CNN."""
    if len(input_shape) == 1 or input_shape[0] <= TINY_IMAGE_SIDE:
        return "mlp"
    if input_shape[-1] == 3:
        return "resnet20"
    return "cnn"


def model_name(config, input_shape):
    """The run's architecture: ``config.model``, or :func:`auto_model`'s choice."""
    return auto_model(input_shape) if config.model == "auto" else config.model


def augmentation(config, dataset):
    """The run's training augmentation (``None``, ``"crop"`` or ``"cifar"``).

    ``config.augment`` when set; for ``"auto"``, the papers' for their datasets
    (:func:`keras_imae.data.default_augmentation`: pad + crop + flip for CIFAR, pad + crop for
    SVHN), else ``"crop"`` (pad an eighth of each side, random crop back, no flip) when the
    model is convolutional and the inputs are ``(H, W, C)`` images, else none. Random translation is
    what stops a convolutional network from carving out the wrong labels one by one (DM on
    the digits CNN, 40% symmetric noise: 17% memorised without, 1.3% with; README, "Keeping
    DM stable"); an MLP sees no translation invariance and only loses clean fit (99.8% ->
    95.5%), so it gets none.
    """
    if config.augment != "auto":
        return None if config.augment == "none" else config.augment
    known = data.default_augmentation(dataset.name)
    if known is not None:
        return known
    shape = dataset.input_shape
    convolutional = model_name(config, shape) in CONVOLUTIONAL
    return "crop" if convolutional and len(shape) == 3 else None


def input_dropout(config, name, input_shape):
    """The input dropout rate of architecture ``name`` on inputs of ``input_shape``:
    ``config.input_dropout`` when set, else :data:`INPUT_DROPOUT` for an MLP on ``(H, W, C)``
    images and 0 otherwise.

    Masking a fifth of an image's pixels keeps what it shows (neighbouring pixels are
    redundant), so it is a label-preserving augmentation, the MLP's counterpart of the
    translation a convolutional model gets (:func:`augmentation`). On digits under 40% noise
    (DM, 3 seeds) it takes the memorisation from 5.4% to 1.9% (symmetric, lam=1, beta=16) and
    12.4% to 9.7% (pair-flip, lam=2, beta=8), and what DM loses after its best epoch from 1.7
    to 0.4 and 3.2 to 2.1 points. A feature vector need not survive it: on MNIST-1D's
    40-sample signals it cost DM 3.5 points of test accuracy (symmetric) and 7.8 (pair-flip),
    so feature vectors get none (README, "Keeping DM stable").
    """
    if config.input_dropout is not None:
        return config.input_dropout
    is_image = len(input_shape) == 3
    return INPUT_DROPOUT if name not in CONVOLUTIONAL and is_image else 0.0


def weight_decay(config, num_train):
    """The run's weight decay: ``config.weight_decay`` if set; else, for AdamW,
    ``NORMALIZED_WEIGHT_DECAY * sqrt(batch_size / (num_train * epochs))`` (Loshchilov &
    Hutter 2019, "normalized weight decay"), and 0 for SGD and Adam."""
    if config.weight_decay is not None:
        return config.weight_decay
    if config.optimizer != "adamw":
        return 0.0
    return NORMALIZED_WEIGHT_DECAY * math.sqrt(config.batch_size / (num_train * config.epochs))


def compiled_model(config, dataset, loss, num_train):
    """The run's model (``config.model``, ``"auto"`` resolved from the input shape), compiled
    with ``loss`` and the optimizer recipe of ``config`` for ``num_train`` training examples
    (call it in ``strategy.scope()`` to distribute). Seeded by ``config.seed``."""
    name = model_name(config, dataset.input_shape)
    decoupled = config.optimizer == "adamw"  # AdamW decays itself; else an L2 penalty
    decay = weight_decay(config, num_train)
    model = models.build_model(name, dataset.input_shape, dataset.num_classes,
                               mean=dataset.mean, std=dataset.std,
                               weight_decay=0.0 if decoupled else decay,
                               input_dropout=input_dropout(config, name, dataset.input_shape),
                               seed=config.seed)
    optimizer = optimizers.make_optimizer(
        config.optimizer, learning_rate=config.learning_rate, momentum=config.momentum,
        schedule=None if config.lr_schedule == "none" else config.lr_schedule,
        epochs=config.epochs, steps_per_epoch=int(np.ceil(num_train / config.batch_size)),
        weight_decay=decay if decoupled else None)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)
    return model
