"""A run's settings (:class:`RunConfig`) and every check that needs no data (:func:`validate`)."""

import dataclasses
import json
import os

from keras_imae import _checks as checks
from keras_imae import _files, data, losses, models, noise, run_folder
from keras_imae.config import optimizers, recipe

__all__ = ["FINETUNE_FIELDS", "NOISE_TYPES", "RESUME_MAY_CHANGE", "RunConfig", "check_resume", "export_target",
           "validate"]

NOISE_TYPES = ("auto", "none", *noise.NOISE_TYPES)
_D = recipe.DEFAULTS  # the field defaults: the one table
# The settings a resumed run may change: they do not change what trains (how it is shown,
# where it is exported, the hardware it runs on, how the data is read). Every other
# RunConfig field must equal the recorded one.
RESUME_MAY_CHANGE = ("verbose", "export_dir", "overwrite", "model_dir", "strategy", "tpu",
                     "jit_compile", "streaming", "max_logit_scale")

FINETUNE_FIELDS = ("weights", "image_size", "head_epochs", "finetune_learning_rate")


@dataclasses.dataclass
class RunConfig:
    """Every knob of a run. ``None`` (or ``"auto"``) takes the recipe's default
    (:data:`keras_imae.config.recipe.DEFAULTS`); a run prints and records what it resolved.

    With no argument: DM on the embedded digits, which get 40% symmetric noise (the demo: any
    other dataset keeps its labels unless ``noise_type`` asks for noise), the MLP, AdamW with
    the normalised decay and a cosine schedule, 40 epochs. For CIFAR use the papers' recipe:
    ``optimizer="sgd", learning_rate=0.1, lr_schedule="step", weight_decay=5e-4`` and a
    ResNet.
    """

    dataset: str = _D["dataset"]
    data_dir: str | None = None
    noise_type: str = "auto"  # auto: symmetric for the digits demo, none for any other data
    noise_rate: float = _D["noise_rate"]
    noise_seed: int = 0
    noisy_labels: str | None = None  # reuse a saved noisy_labels.npz (file or folder)
    loss: str = _D["loss"]
    beta: float | None = None
    lam: float | None = None
    temperature: float | None = None
    q: float | None = None
    alpha: float | None = None
    max_margin: float | None = None  # DM/IMAE: no gradient outside |log(p / (1 - p))| <= M;
    #                                  0: none (faithful)
    reject_margin: float | None = None  # DM/IMAE: no gradient when another class k has
    #                                     log(p_k / (1 - p_k)) > R; 0: none (faithful)
    warmup_epochs: int | None = None  # DM/IMAE: flat emphasis first
    emphasis_ramp: bool | None = None  # DM/IMAE: after the warm-up the emphasis strength
    #                                    rises linearly to the last epoch; None: the recipe's
    pair_margins: bool | None = None  # DM/IMAE: reject_margin per class pair, from the
    #                                   noise T the run estimates; None: the recipe's
    elr_lambda: float = 0.0  # ELR's penalty (Liu et al. 2020) added to any loss; 0: off
    elr_momentum: float = _D["elr_momentum"]  # ELR's running average of predictions
    faithful: bool = False  # DM/IMAE as the papers define them: no margin caps, no warm-up
    recipe: str = _D["recipe"]  # the named recipe: auto, scratch, folds or finetune
    normalize: str = "default"  # "default" (the loss's own), "none" or "batch"
    model: str = "auto"  # or a keras.applications class name (a backbone)
    weights: str | None = None  # backbones: "imagenet" (Keras' cache) or a weights file
    image_size: int | None = None  # backbones: side of their input; None: the recipe's
    head_epochs: int | None = None  # backbones with weights: epochs of the head alone
    finetune_learning_rate: float | None = None  # backbones: the whole network's rate after
    epochs: int = _D["epochs"]
    batch_size: int = _D["batch_size"]
    optimizer: str = _D["optimizer"]
    learning_rate: float = _D["learning_rate"]
    momentum: float | None = None  # SGD only
    lr_schedule: str = _D["lr_schedule"]  # none | step | cosine
    weight_decay: float | None = None
    augment: str = "auto"  # auto | none | cifar | crop
    input_dropout: float | None = None  # MLPs only
    validation_fraction: float | None = None  # noisy validation share; None: the recipe's
    checkpoint: str | None = None  # "last" or "best" (by the noisy validation split)
    tune: bool = False  # choose the loss's hyper-parameters on the noisy validation split
    strategy: str = "default"
    tpu: str | None = None
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    model_dir: str = "runs/digits_dm"
    export_dir: str | None = None  # default saved_models/<basename of model_dir>; "" = none
    overwrite: bool = False  # start afresh in a model_dir that holds a finished run
    verbose: int = 1
    max_logit_scale: float = _D["max_logit_scale"]  # CollapseGuard's median max |logit|; 0: off
    streaming: str = "auto"  # auto | on | off: see keras_imae.data.load


def export_target(config):
    """The SavedModel folder of a run: ``export_dir``, or ``saved_models/<model_dir name>``
    (the absolute path's last component, so ``model_dir="."`` exports to
    ``saved_models/<current folder>``, never to ``saved_models`` itself); ``None`` for
    ``export_dir=""``."""
    if config.export_dir is not None:
        return config.export_dir or None
    name = os.path.basename(os.path.abspath(config.model_dir)) or "model"
    return os.path.join("saved_models", name)


def folder_state(config):
    """``resuming``: whether ``model_dir`` holds an unfinished run to resume. Read-only.

    Raises:
        ValueError: it holds a finished run (``metrics.json``) and ``overwrite`` is not set,
            or files with a run's names that no run wrote (never replaced).
    """
    folder = run_folder.RunFolder(config.model_dir)
    foreign = folder.foreign()
    if foreign:
        raise ValueError(
            f"model_dir {config.model_dir!r} holds {', '.join(foreign)}, which no keras_imae "
            f"run wrote (no run's {run_folder.CONFIG} there): a run would replace them, so it "
            "is refused, with or without --overwrite. Choose another model_dir.")
    if folder.finished and not config.overwrite:
        changed = recorded_differences(config)
        raise ValueError(
            f"model_dir {config.model_dir!r} already holds a finished run (metrics.json)"
            + (f" with other settings (recorded -> now: {'; '.join(changed)})" if changed
               else "")
            + ". Pass overwrite=True (--overwrite) to replace it, or choose another model_dir.")
    return bool(folder.written()) and not config.overwrite


def finished_results(config):
    """The ``metrics.json`` results of the finished run in ``config.model_dir`` when it was
    trained with these settings (no :func:`recorded_differences`) and ``overwrite`` is
    not set: running the same command again has nothing to do. ``None`` otherwise (then
    :func:`validate` says what is wrong, if anything)."""
    folder = run_folder.RunFolder(config.model_dir)
    if config.overwrite or not folder.finished or folder.foreign():
        return None
    if recorded_differences(config):
        return None
    try:
        with open(folder.file(run_folder.METRICS)) as f:
            return json.load(f)
    except (OSError, ValueError):  # an unreadable record
        return None


# Fields the recipe resolves when left unset (None or "auto"): ``resolved`` holds their values.
_RESOLVED_FIELDS = ("noise_type", "beta", "lam", "temperature", "q", "alpha", "max_margin",
                    "reject_margin", "warmup_epochs", "emphasis_ramp", "pair_margins", "model",
                    "momentum",
                    "weight_decay", "augment", "input_dropout", "validation_fraction",
                    "checkpoint", "image_size", "head_epochs", "finetune_learning_rate",
                    "recipe")


def _differences(recorded, current):
    return [f"{key} {recorded[key]!r} -> {value!r}" for key, value in current.items()
            if key in recorded and recorded[key] != value]


def _field_differences(recorded, fields):
    """Differences of the raw fields. A field the recipe resolves, left unset (None/"auto")
    on one side, is the same setting when it equals what the run resolved: an explicit
    value is compared with the recorded resolution now, an unset one once it is resolved
    (``check_resume(config, resolved)``)."""
    resolved = recorded.get("resolved")
    if not isinstance(resolved, dict):
        return _differences(recorded, fields)  # an old record: raw values only
    differences = []
    for key, value in fields.items():
        if key not in recorded or recorded[key] == value:
            continue
        if key in _RESOLVED_FIELDS and value in (None, "auto"):
            continue  # compared once resolved
        if key in _RESOLVED_FIELDS and recorded[key] in (None, "auto"):
            settings = resolved.get("loss_settings") or {}
            was = settings.get(key) if key in settings else resolved.get(key, recorded[key])
            if was != value:
                differences.append(f"{key} {recorded[key]!r} (resolved {was!r}) -> {value!r}")
            continue
        differences.append(f"{key} {recorded[key]!r} -> {value!r}")
    return differences


def _refuse_resume(model_dir, differences):
    raise ValueError(
        f"Cannot resume the run in {model_dir!r}: these settings differ from the ones it was "
        f"started with (recorded -> now): {'; '.join(differences)}. Run the same command with "
        "the recorded values to resume it, or pass --overwrite (or another --model_dir) to "
        "start afresh.")


def recorded_differences(config, resolved=None):
    """``["name recorded -> now", ...]``: every ``RunConfig`` field but
    :data:`RESUME_MAY_CHANGE` that differs from ``model_dir``'s ``config.json`` and, given
    ``resolved``, every resolved setting (a changed default of a newer version counts too);
    ``[]`` without a readable record. A field left to the recipe (``None``/``"auto"``) on one
    side only is compared through the resolved settings, so passing a default explicitly
    is the same run."""
    path = os.path.join(config.model_dir, run_folder.CONFIG)
    try:
        with open(path) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return []  # no record yet: nothing trained
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUME_MAY_CHANGE}
    # A default passed explicitly (--beta=16 where 16 is the default) is the same run, not
    # "beta None -> 16".
    differences = _field_differences(recorded, fields)
    if resolved is not None and isinstance(recorded.get("resolved"), dict):
        differences += _differences(recorded["resolved"],
                                    json.loads(json.dumps(resolved, default=float)))
    return differences


def check_resume(config, resolved=None):
    """Refuse to resume the unfinished run in ``config.model_dir`` with other settings
    (:func:`recorded_differences`).

    Raises:
        ValueError: naming each differing setting, its recorded and its new value.
    """
    differences = recorded_differences(config, resolved)
    if differences:
        _refuse_resume(config.model_dir, differences)


def _check_numbers(config):
    if config.noise_type not in NOISE_TYPES:
        raise ValueError(
            f"Invalid value for `noise_type`. Expected one of {list(NOISE_TYPES)}. "
            f"Received: noise_type={config.noise_type!r}")
    for name in ("epochs", "batch_size"):
        checks.integer(name, getattr(config, name), low=1)
    for name in ("seed", "noise_seed"):  # numpy's seeds: [0, 2**32)
        checks.integer(name, getattr(config, name), low=0, high=2**32 - 1)
    if config.validation_fraction is not None:
        checks.number("validation_fraction", config.validation_fraction, high=1.0,
                      high_open=True)
    if config.checkpoint not in (None, *recipe.CHECKPOINTS):
        raise ValueError(f"Invalid value for `checkpoint`. Expected one of "
                         f"{list(recipe.CHECKPOINTS)}. Received: checkpoint={config.checkpoint!r}")
    recipe.selection(config)  # "best" needs a validation split
    recipe.named(config)  # a known named recipe
    if config.optimizer not in optimizers.OPTIMIZERS:
        raise ValueError("Invalid value for `optimizer`. Expected one of "
                         f"{list(optimizers.OPTIMIZERS)}. Received: optimizer={config.optimizer!r}")
    if config.momentum is not None and config.optimizer != "sgd":
        raise ValueError(f"`momentum` applies to optimizer='sgd' only. Received: "
                         f"momentum={config.momentum}, optimizer={config.optimizer!r}")
    if config.momentum is not None:
        checks.number("momentum", config.momentum, high=1.0)
    checks.number("learning_rate", config.learning_rate, low_open=True)
    checks.number("noise_rate", config.noise_rate, high=1.0)
    if config.weight_decay is not None:
        checks.number("weight_decay", config.weight_decay)
    _check_backbone(config)
    if config.input_dropout is not None:
        models.check_input_dropout(config.input_dropout,
                                   None if config.model == "auto" else config.model)
    checks.number("max_logit_scale", config.max_logit_scale)  # 0: the guard is off
    if config.warmup_epochs is not None:
        checks.integer("warmup_epochs", config.warmup_epochs, low=0)
    checks.number("elr_lambda", config.elr_lambda)
    checks.number("elr_momentum", config.elr_momentum, high=1.0, high_open=True)


def _check_backbone(config):
    """The model name, and the fine-tuning settings only a backbone takes."""
    if config.model != "auto":
        models.check_model_name(config.model)
    backbone = models.is_backbone(config.model)
    set_ = [f"{name}={getattr(config, name)!r}" for name in FINETUNE_FIELDS
            if getattr(config, name) is not None]
    if set_ and not backbone:
        raise ValueError(f"{', '.join(set_)} set for model={config.model!r}: these settings "
                         "are for a keras.applications backbone (e.g. model='ResNet50').")
    models.check_weights(config.weights)
    if config.image_size is not None:
        checks.integer("image_size", config.image_size, low=models.MIN_IMAGE_SIZE)
    if config.finetune_learning_rate is not None:
        checks.number("finetune_learning_rate", config.finetune_learning_rate, low_open=True)
    if config.head_epochs is not None:
        checks.integer("head_epochs", config.head_epochs, low=0, high=config.epochs - 1)
        if config.head_epochs and config.weights is None:
            raise ValueError(f"head_epochs={config.head_epochs} trains the new head on a "
                             "frozen pretrained backbone: pass weights ('imagenet' or a file), "
                             "or head_epochs=0 to train a randomly initialised backbone whole.")


def _check_data(config):
    """The dataset name, its paths and the noise it can take: before any work."""
    source = data.parse(config.dataset)
    data.check_data_dir(source, config.data_dir)
    if config.streaming not in data.STREAMING_MODES:
        raise ValueError(f"Invalid value for `streaming`. Expected one of "
                         f"{data.STREAMING_MODES}. Received: streaming={config.streaming!r}")
    if (config.noise_type == "asymmetric" and not config.noisy_labels
            and (source.tfds_name or source.kind) not in noise.ASYMMETRIC_DATASETS):
        raise ValueError(
            f"Invalid value for `noise_type`: asymmetric noise is defined for "
            f"{', '.join(noise.ASYMMETRIC_DATASETS)}, not dataset={config.dataset!r}. Use "
            "symmetric or pairflip, or pass a saved corruption with `noisy_labels`.")
    if source.path is not None:
        exists = os.path.isfile if source.kind == "npz" else os.path.isdir
        if not exists(source.path):
            raise ValueError(f"Invalid value for `dataset`: no {source.kind} at "
                             f"{source.path!r}. Received: dataset={config.dataset!r}")
    if source.tfds_name in data.HUMAN_LABEL_DATASETS:
        data.human_label_key(config.dataset)  # an unknown annotation, before any work
    own = data.gives_own_noise(source)
    if own and (config.noise_type not in ("auto", "none") or config.noisy_labels):
        raise ValueError(
            f"Invalid value for `noise_type`: dataset={config.dataset!r} gives its own noisy "
            "labels (human or label-file labels), so no noise is drawn on top. Pass "
            f"noise_type='none' (or leave it at 'auto') and no noisy_labels. Received: "
            f"noise_type={config.noise_type!r}, noisy_labels={config.noisy_labels!r}")
    if config.noisy_labels and not os.path.isfile(noise.noisy_labels_path(config.noisy_labels)):
        raise ValueError(
            f"Invalid value for `noisy_labels`: no {noise.NOISY_LABELS_FILENAME} at "
            f"{noise.noisy_labels_path(config.noisy_labels)!r}. "
            f"Received: noisy_labels={config.noisy_labels!r}")


def validate(config):
    """Every check that needs no data or training: raises ``ValueError`` naming the problem.

    Flags, the loss and its hyper-parameters, the data source, the state of ``model_dir`` and
    of the export target. :func:`keras_imae.run.run` calls it first, before anything is
    loaded (a script reports its ``ValueError`` in one line).
    """
    _check_numbers(config)
    _check_data(config)
    # the loss's settings and values (with the defaults of an unknown architecture: the
    # checks do not depend on it)
    named = recipe.named(config)
    settings = recipe.loss_settings(config.loss, recipe.given_hparams(config), None,
                                    config.normalize, named)
    losses.get(config.loss, **settings)
    recipe.check_faithful(config)
    recipe.ramp_epochs(config, recipe.warmup_epochs(config.loss, config.epochs,
                                                    recipe.warmup_setting(config), named))
    recipe.pair_margins(config, settings)
    try:
        _files.check_writable_dir(config.model_dir, "model_dir")
        target = export_target(config)
        if target:
            run_folder.check_export_target(target, config.model_dir, overwrite=config.overwrite)
    except OSError as err:  # a file in the way, no permission, a foreign export
        raise ValueError(str(err)) from None
    export = run_folder.enclosing_export(config.model_dir)
    if export is not None:
        raise ValueError(
            f"model_dir {config.model_dir!r} is inside the SavedModel export {export!r}: an "
            "export is replaced whole, so a run there would be deleted with it. Choose a "
            "model_dir outside every export.")
    if target:
        run_folder.check_apart(config.model_dir, target)
    if folder_state(config):
        check_resume(config)
    run_folder.RunFolder(config.model_dir).check_unlocked()
