"""The recipe: every default a run trains with, in one table, resolved once into numbers.

:data:`DEFAULTS` is the table (``keras_imae/_defaults.py``, at the bottom of the package so
that the rules of the lower layers -- the data loaders, the optimizers, the collapse guard,
the rejection cap -- read their values from it too). :func:`resolve` overlays a
:class:`~keras_imae.config.RunConfig` (``None`` or ``"auto"`` = the default) on it for one
dataset and returns the settings as plain values, the rules that apply included; a run
prints them in one block at its start (:func:`format_resolved`) and writes them to
``config.json`` under ``"resolved"``, and nothing deeper re-derives a default. A named recipe
(``RunConfig.recipe``: ``"scratch"``, ``"folds"``, ``"finetune"``; :func:`named`,
:func:`table`) is the table with its overrides, chosen in this one place.

Why each default is what it is: the docstring and notes of ``keras_imae/_defaults.py``.
"""

from keras_imae import data, losses, models
from keras_imae._defaults import DEFAULTS
from keras_imae.config import optimizers
from keras_imae.config._block import format_resolved

__all__ = ["DEFAULTS", "RECIPES", "RULES", "batch_norm", "check_faithful", "convolutional",
           "estimate_epoch", "finetune", "finetune_phases", "format_resolved", "grid",
           "load_image_size", "loss_settings", "model_for", "named", "noise", "pair_margins",
           "ramp_epochs", "resolve", "selection", "table", "training_settings", "warmup_epochs",
           "weight_decay"]

OPTIMIZERS = optimizers.OPTIMIZERS
weight_decay = optimizers.weight_decay  # AdamW's normalised decay, where the decay is made
CHECKPOINTS = ("last", "best")
CONVOLUTIONAL = tuple(name for name in models.ARCHITECTURES if not name.startswith("mlp"))
BATCH_NORM = tuple(name for name in models.ARCHITECTURES if name != "mlp")


def convolutional(model):
    """Whether architecture ``model`` is convolutional (a ``keras.applications`` backbone
    is)."""
    return model in CONVOLUTIONAL or models.is_backbone(model)


def batch_norm(model):
    """Whether ``model`` takes DM's BatchNorm-network defaults (a backbone does)."""
    return model in BATCH_NORM or models.is_backbone(model)


LOSS_HPARAMS = ("beta", "lam", "temperature", "q", "alpha", "max_margin", "reject_margin")
MARGIN_CAPS = ("max_margin", "reject_margin")  # DM and IMAE; 0 = off


RECIPES = tuple(DEFAULTS["recipes"])


def named(config):
    """The named recipe a run uses: ``config.recipe``, or for ``"auto"`` ``"finetune"`` when
    it trains a ``keras.applications`` backbone from pretrained ``weights``, else
    ``"scratch"``.

    Raises:
        ValueError: an unknown recipe.
    """
    name = config.recipe
    if name == "auto":
        pretrained = models.is_backbone(config.model) and config.weights is not None
        return "finetune" if pretrained else "scratch"
    if name not in RECIPES:
        raise ValueError(f"Invalid value for `recipe`. Expected one of {['auto', *RECIPES]}. "
                         f"Received: recipe={name!r}")
    return name


def table(recipe="scratch"):
    """:data:`DEFAULTS` with the named recipe's overrides (``DEFAULTS["recipes"]``): the one
    place a use (``"scratch"``: a run, ``compare``, ``recommended()``; ``"folds"``: the
    label-issue fold models; ``"finetune"``: a pretrained backbone) chooses its DM setting,
    warm-up, pair margins and fine-tuning phases.

    Raises:
        ValueError: an unknown recipe.
    """
    if recipe not in DEFAULTS["recipes"]:
        raise ValueError(f"Invalid value for `recipe`. Expected one of {list(RECIPES)}. "
                         f"Received: recipe={recipe!r}")
    return {**DEFAULTS, **DEFAULTS["recipes"][recipe]}


def noise(config, dataset):
    """``(noise_type, noise_rate)`` the run draws: ``"auto"`` gives the embedded digits demo
    its 40% symmetric noise and any other dataset none (its labels are used as given)."""
    noise_type = config.noise_type
    if noise_type == "auto":
        noise_type = DEFAULTS["noise_type"]["digits" if dataset.name == "digits" else "other"]
    return noise_type, 0.0 if noise_type == "none" else config.noise_rate


def model_for(config, input_shape):
    """The run's architecture: ``config.model``, or the ``"auto"`` rule of :data:`DEFAULTS`."""
    if config.model != "auto":
        return config.model
    if len(input_shape) == 1 or input_shape[0] <= DEFAULTS["tiny_image_side"]:
        return "mlp"
    return DEFAULTS["rgb_model"] if input_shape[-1] == 3 else DEFAULTS["image_model"]


def _augment(config, source, dataset, model):
    if config.augment != "auto":
        return None if config.augment == "none" else config.augment
    known = DEFAULTS["augment_by_dataset"].get(source.tfds_name)
    if known is not None:
        return known
    image = len(dataset.input_shape) == 3
    return DEFAULTS["conv_augment"] if convolutional(model) and image else None


def _input_dropout(config, model, input_shape):
    if config.input_dropout is not None:
        return config.input_dropout
    image = len(input_shape) == 3
    return DEFAULTS["image_input_dropout"] if not convolutional(model) and image else 0.0


def selection(config):
    """``(checkpoint, validation_fraction)``: which epoch the run exports, and the share of
    the noisy training labels it holds out (:data:`DEFAULTS` for those left unset).

    Raises:
        ValueError: ``checkpoint="best"`` without a validation split to choose by.
    """
    checkpoint = config.checkpoint or ("best" if config.tune else DEFAULTS["checkpoint"])
    chooses = checkpoint == "best" or config.tune  # on a held-out share of the noisy labels
    fraction = config.validation_fraction
    if fraction is None:
        fraction = DEFAULTS["validation_fraction"] if chooses else 0.0
    if chooses and not fraction:
        raise ValueError("Invalid value for `validation_fraction`: checkpoint='best' and tune "
                         "choose on a held-out share of the noisy labels. Expected a fraction "
                         "in (0, 1). Received: validation_fraction=0")
    return checkpoint, fraction


def loss_settings(loss, given, model, normalize="default", recipe="scratch"):
    """The loss's keyword arguments: ``given`` (the hyper-parameters set, by name), the others
    from the named ``recipe``'s :func:`table` (DM by architecture ``model``; the margin caps
    for DM and IMAE).

    Raises:
        ValueError: an unknown loss, or a hyper-parameter the loss does not take.
    """
    losses.get(loss)  # raises for an unknown name
    accepted = losses.LOSSES[loss].HYPERPARAMETERS
    given = {k: v for k, v in given.items() if v is not None}
    unused = [k for k in given if k not in accepted]
    if unused:
        raise ValueError(
            f"Loss {loss!r} does not take {', '.join(f'`{k}`' for k in unused)} (its "
            f"hyper-parameters: {', '.join(accepted) or 'none'}). Received: "
            + ", ".join(f"{k}={given[k]}" for k in unused))
    defaults, values = {}, table(recipe)
    if loss == "dm":
        defaults = dict(values["dm_batchnorm" if batch_norm(model) else "dm"])
    elif loss == "imae":
        defaults = dict(values["imae"])
    for cap in MARGIN_CAPS:
        if cap in accepted:
            defaults[cap] = values[cap]
    kwargs = {**defaults, **given}
    for cap in MARGIN_CAPS:
        if kwargs.get(cap) == 0:  # 0: no cap, the papers' faithful gradient
            kwargs[cap] = None
    if normalize != "default":
        kwargs["normalize"] = None if normalize == "none" else normalize
    return kwargs


def warmup_epochs(loss, epochs, warmup=None, recipe="scratch"):
    """Flat-emphasis epochs: ``warmup`` when set, else the recipe's ``warmup_fraction`` of the
    epochs (``epochs // 4``), rounded down, for a loss with an emphasis strength (DM, IMAE)
    and 0 for the others.

    Raises:
        ValueError: a count that leaves no epoch with the emphasis, or one set for a loss
            without an emphasis to flatten.
    """
    has_emphasis = losses.LOSSES[loss].EMPHASIS_STRENGTH is not None
    if warmup is None:
        return int(table(recipe)["warmup_fraction"] * epochs) if has_emphasis else 0
    if warmup and not has_emphasis:
        raise ValueError(
            f"Loss {loss!r} has no emphasis to warm up (only dm and imae have one). "
            f"Received: warmup_epochs={warmup}")
    if warmup and warmup >= epochs:
        raise ValueError(
            "Invalid value for `warmup_epochs`: the flat-emphasis warm-up must leave epochs "
            f"with the emphasis. Expected < epochs ({epochs}). Received: "
            f"warmup_epochs={warmup}")
    return warmup




def grid(loss, model, learning_rate, recipe="scratch"):
    """The points ``--tune`` and ``scripts/compare.py`` try for ``loss`` on architecture
    ``model`` (:data:`DEFAULTS` ``"grids"``): dicts of ``RunConfig`` overrides, four each."""
    if loss == "dm":
        default = table(recipe)["dm_batchnorm" if batch_norm(model) else "dm"]
        lam, beta = default["lam"], default["beta"]
        return [dict(lam=lam / 2, beta=beta), dict(lam=lam, beta=beta / 2),
                dict(lam=lam, beta=beta), dict(lam=lam, beta=2 * beta)]
    if loss in DEFAULTS["grids"]:
        return [dict(point) for point in DEFAULTS["grids"][loss]]
    return [dict(learning_rate=learning_rate * f) for f in DEFAULTS["learning_rate_factors"]]


def given_hparams(config):
    """The loss hyper-parameters set in ``config`` (``faithful``: the margin caps at 0, off,
    for the losses that have them)."""
    given = {k: getattr(config, k) for k in LOSS_HPARAMS}
    if getattr(config, "faithful", False) and config.loss in losses.LOSSES:
        accepted = losses.LOSSES[config.loss].HYPERPARAMETERS
        given.update({cap: 0.0 for cap in MARGIN_CAPS if cap in accepted and not given[cap]})
    return given


def warmup_setting(config):
    """``config.warmup_epochs``, 0 (none) for ``faithful`` when unset."""
    if getattr(config, "faithful", False) and config.warmup_epochs is None:
        return 0
    return config.warmup_epochs


def ramp_epochs(config, warmup):
    """The epochs over which DM's (IMAE's) emphasis strength rises after ``warmup`` flat
    epochs (:class:`keras_imae.callbacks.EmphasisWarmup`'s ``ramp_epochs``): all those left,
    ``epochs - warmup``, with ``config.emphasis_ramp`` (unset: the recipe's), else 0.

    Raises:
        ValueError: ``emphasis_ramp=True`` for a loss without an emphasis (not dm or imae).
    """
    has_emphasis = losses.LOSSES[config.loss].EMPHASIS_STRENGTH is not None
    if config.emphasis_ramp and not has_emphasis:
        raise ValueError(
            f"Loss {config.loss!r} has no emphasis to ramp (only dm and imae have one). "
            f"Received: emphasis_ramp={config.emphasis_ramp}")
    chosen = config.emphasis_ramp
    if chosen is None:
        chosen = table(named(config))["emphasis_ramp"] and not config.faithful
    return config.epochs - warmup if chosen and has_emphasis else 0


def pair_margins(config, settings=None):
    """Whether DM's (IMAE's) rejection cap takes one margin per class pair from the noise the
    run estimates at the end of its warm-up (:class:`keras_imae.callbacks.PairMargins`):
    ``config.pair_margins``, else :data:`DEFAULTS`; off for a loss without a cap (the
    decision of :func:`keras_imae.losses.reject_margins`). ``settings``: the loss's resolved
    keyword arguments (default: :func:`loss_settings` of ``config``).

    Raises:
        ValueError: ``pair_margins=True`` without a cap (a loss other than DM or IMAE,
            ``reject_margin=0`` or ``faithful``).
    """
    if settings is None:
        settings = loss_settings(config.loss, given_hparams(config), None, config.normalize,
                                 named(config))
    has_cap = losses.reject_margins(settings.get("reject_margin")) is not None
    if config.pair_margins and not has_cap:
        raise ValueError(
            "pair_margins=True sets DM's (IMAE's) rejection margin per class pair: it needs "
            f"loss dm or imae with a reject_margin > 0. Received: loss={config.loss!r}, "
            f"reject_margin={config.reject_margin}, faithful={config.faithful}")
    chosen = config.pair_margins
    if chosen is None:
        chosen = table(named(config))["pair_margins"]
    return bool(chosen and has_cap)


def estimate_epoch(loss, settings, pairs, warmup, epochs):
    """The epoch (0-based) whose start estimates the noise transition from the model's own
    predictions (:class:`keras_imae.callbacks.PairMargins`), or ``None`` (no estimate): the
    end of the warm-up, at least 1, for DM's (IMAE's) pair margins (``pairs``); for forward
    correction without a ``transition``, the share ``warmup_fraction`` of the epochs, at
    least 1 (Patrini et al. estimate ``T`` from a network trained on the noisy labels)."""
    if loss == "forward" and settings.get("transition") is None:
        return max(1, int(DEFAULTS["warmup_fraction"] * epochs))
    return max(1, warmup) if pairs else None


def check_faithful(config):
    """``faithful`` with a margin cap or a warm-up set is a contradiction.

    Raises:
        ValueError: naming the settings that contradict it.
    """
    if not config.faithful:
        return
    set_ = [f"{k}={getattr(config, k)}" for k in (*MARGIN_CAPS, "warmup_epochs",
                                                    "emphasis_ramp") if getattr(config, k)]
    if set_:
        raise ValueError("faithful=True trains the papers' DM/IMAE (no margin caps, no "
                         f"warm-up, no ramp) and contradicts {', '.join(set_)}. Drop one or "
                         "the other.")


# Resolved settings that are fixed rules of the table, not RunConfig fields: marked as defaults
# in the printed block (a user changes them in DEFAULTS, not by a flag).
RULES = ("digits_test_size", "folder_image_size", "folder_test_fraction", "stream_above_bytes",
         "shuffle_buffer", "augment_pad", "reject_alive_share", "pair_margin_epoch", "ramp_epochs",
         "lr_step_fractions", "lr_step_rate", "max_top_class_fraction", "collapse_patience")


def resolve(config, dataset, num_train=None):
    """Every setting of a run as plain values (``None`` and ``"auto"`` replaced), once: the
    run, its record (``config.json``) and :func:`keras_imae.recommended` use the result.

    Args:
        config: a :class:`keras_imae.config.RunConfig`.
        dataset: the run's :class:`keras_imae.data.Dataset` (shape, name, labels).
        num_train: the number of examples trained on; default: the training set less the
            validation split (``round(validation_fraction * N)`` examples,
            :func:`keras_imae.data.split_ids`).

    Returns:
        A dict: ``noise_type``, ``noise_rate``, ``checkpoint``, ``validation_fraction``,
        ``model``, ``augment``, ``input_dropout``, the data source's rules (:data:`RULES`:
        ``digits_test_size``, ``folder_image_size`` and ``folder_test_fraction``,
        ``stream_above_bytes``, ``shuffle_buffer``, ``augment_pad``), then
        :func:`training_settings`; for a backbone also :func:`finetune`'s settings.
    """
    model = model_for(config, dataset.input_shape)
    noise_type, noise_rate = noise(config, dataset)
    checkpoint, validation_fraction = selection(config)
    if num_train is None:
        total = len(dataset.y_train)
        num_train = total - round(validation_fraction * total)
    # the source as data.load parsed it (a stand-in dataset, e.g. in tests: parsed here)
    source = getattr(dataset, "source", None) or data.parse(dataset.name)
    augment = _augment(config, source, dataset, model)
    resolved = {
        "noise_type": noise_type,
        "noise_rate": noise_rate,
        "checkpoint": checkpoint,
        "validation_fraction": validation_fraction,
        "model": model,
        "augment": augment,
        "input_dropout": _input_dropout(config, model, dataset.input_shape),
        **_data_rules(source.kind, augment, sized=load_image_size(config) is not None),
        **training_settings(config, model, num_train),
    }
    if models.is_backbone(model):
        resolved.update(finetune(config, model, dataset.input_shape))
    return resolved


def load_image_size(config):
    """``(side, side)`` at which a backbone's run reads images from files or TFDS
    (``image_size``, or the family's ImageNet side with ``weights="imagenet"``), so they
    stream at the size the backbone sees; ``None`` (the source's default) otherwise."""
    if not models.is_backbone(config.model) or data.parse(config.dataset).kind in (
            "digits", "npz"):
        return None
    side = config.image_size
    if side is None and config.weights == "imagenet":
        side = models.default_image_size(config.model, "imagenet", ())
    return None if side is None else (side, side)


def finetune(config, model, input_shape):
    """A backbone's settings: ``weights`` (and the file's ``weights_sha256``: a resume with
    other weights is refused), ``image_size``, and its two phases (:func:`finetune_phases`
    of the run's :func:`named` recipe)."""
    return {"weights": config.weights, "weights_sha256": models.weights_digest(config.weights),
            "image_size": config.image_size or models.default_image_size(
                model, config.weights, input_shape),
            **finetune_phases(config, named(config))}


def finetune_phases(config, recipe):
    """``head_epochs`` (the head alone on the frozen backbone: the ``recipe``'s
    ``head_fraction`` of the epochs, rounded down) and ``finetune_learning_rate`` (the whole
    network's, after them: ``finetune_lr_factor`` times ``learning_rate``), unless set in
    ``config``; ``"finetune"`` is the recipe of pretrained weights (:func:`finetune`,
    :func:`keras_imae.recommended` with ``pretrained=True``)."""
    values = table(recipe)
    head = getattr(config, "head_epochs", None)
    if head is None:
        head = int(values["head_fraction"] * config.epochs)
    rate = getattr(config, "finetune_learning_rate", None)
    if rate is None:
        rate = config.learning_rate * values["finetune_lr_factor"]
    return {"head_epochs": head, "finetune_learning_rate": rate}


def _data_rules(kind, augment, sized=False):
    """The rules of :data:`DEFAULTS` by which the run's data is read: those of its source
    (``sized``: a backbone reads images at its own size, not the folder default)."""
    rules = {"digits": ("digits_test_size",),
             "folder": ("folder_test_fraction",) if sized else ("folder_image_size",
                                                                "folder_test_fraction")}
    out = {key: DEFAULTS[key] for key in rules.get(kind, ())}
    out["stream_above_bytes"] = DEFAULTS["stream_above_bytes"]  # streaming="auto"'s switch
    if kind in ("tfrecord", "tfds"):  # streamed records: shuffled in a buffer
        out["shuffle_buffer"] = DEFAULTS["shuffle_buffer"]
    if augment is not None:
        out["augment_pad"] = DEFAULTS["augment_pad"]
    return out


def training_settings(config, model, num_train):
    """The training part of :func:`resolve` -- the loss, its phases, the optimizer, the
    collapse guard -- for architecture ``model`` (DM's defaults depend on it) and
    ``num_train`` examples (the weight decay and the schedule do), from the :func:`named`
    recipe's :func:`table`: ``recipe``, ``loss``, ``loss_settings``, ``reject_alive_share``
    (with a rejection cap), ``warmup_epochs``, ``emphasis_ramp`` and its ``ramp_epochs``,
    ``pair_margins``, ``pair_margin_epoch``
    (:func:`estimate_epoch`), ``optimizer``, ``learning_rate``, ``lr_schedule``
    (``lr_step_fractions`` and ``lr_step_rate`` with ``"step"``), ``momentum``,
    ``weight_decay``, ``epochs``, ``batch_size``, ``max_top_class_fraction``,
    ``collapse_patience``; with ELR on, ``elr_lambda`` and ``elr_momentum``
    (:func:`keras_imae.config.build.early_learning`). Also :func:`keras_imae.recommended`'s
    settings.
    """
    recipe = named(config)
    settings = loss_settings(config.loss, given_hparams(config), model, config.normalize,
                             recipe)
    warmup = warmup_epochs(config.loss, config.epochs, warmup_setting(config), recipe)
    pairs = pair_margins(config, settings)
    out = {"recipe": recipe, "loss": config.loss, "loss_settings": settings}
    if losses.reject_margins(settings.get("reject_margin")) is not None:
        out["reject_alive_share"] = DEFAULTS["reject_alive_share"]
    ramp = ramp_epochs(config, warmup)
    out.update(warmup_epochs=warmup, emphasis_ramp=ramp > 0, ramp_epochs=ramp,
               pair_margins=pairs,
               pair_margin_epoch=estimate_epoch(config.loss, settings, pairs, warmup,
                                                config.epochs))
    schedule = None if config.lr_schedule == "none" else config.lr_schedule
    out.update(optimizer=config.optimizer, learning_rate=config.learning_rate,
               lr_schedule=schedule)
    if schedule == "step":  # of each fit's epochs (a backbone's two phases: of each phase)
        out["lr_step_fractions"] = list(DEFAULTS["lr_step_fractions"])
        out["lr_step_rate"] = DEFAULTS["lr_step_rate"]
    momentum = None
    if config.optimizer == "sgd":
        momentum = DEFAULTS["sgd_momentum"] if config.momentum is None else config.momentum
    out.update(momentum=momentum,
               weight_decay=weight_decay(config.optimizer, config.weight_decay,
                                         config.batch_size, num_train, config.epochs),
               epochs=config.epochs, batch_size=config.batch_size,
               max_top_class_fraction=DEFAULTS["max_top_class_fraction"],
               collapse_patience=DEFAULTS["collapse_patience"])
    if config.elr_lambda:
        out.update(elr_lambda=float(config.elr_lambda), elr_momentum=float(config.elr_momentum))
    return out
