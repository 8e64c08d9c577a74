"""One noisy-label training run, end to end: what ``scripts/train.py`` calls.

``run(config)`` loads the data, corrupts the training labels (or reuses a saved corruption),
builds and compiles the model under the requested strategy, trains with Keras' progress bars
while :class:`keras_imae.callbacks.FitMonitor` measures clean fit / noisy memorisation /
test accuracy after every epoch, then ranks the training examples by how likely their label
is wrong, writes ``metrics.json``, the Keras model and a serving SavedModel, and returns the
results as a dict.

Everything a run writes lives in ``model_dir``, whose rules (finished iff ``metrics.json``
exists, resumable otherwise, one run at a time, exports never shared by accident) are in
:mod:`keras_imae.run_folder`. The SavedModel goes to ``export_dir`` (default
``saved_models/<name of model_dir>``).
"""

import dataclasses
import os
import time
import warnings

import keras
import numpy as np

from keras_imae import (callbacks, checks, data, distribute, export, models, noise, ranking,
                        recipe, run_data, run_folder)
# The recipe's two entry points stay reachable here (training.loss_from_config, ...).
from keras_imae.recipe import OPTIMIZERS, compiled_model, loss_from_config

__all__ = ["RunConfig", "run", "validate", "loss_from_config", "compiled_model",
           "format_results", "read_log", "write_json", "export_target"]

NOISE_TYPES = ("none", *noise.NOISE_TYPES)


@dataclasses.dataclass
class RunConfig:
    """Every knob of a run. Defaults: DM on the embedded digits with 40% symmetric noise.

    The optimisation defaults (AdamW 1e-3 with the normalised decoupled weight decay of
    :func:`keras_imae.recipe.weight_decay` and a cosine decay to 0, 40 epochs, batch 64, the
    MLP) come from ``benchmarks/dm_stability.py``: DM's gradient does not vanish on fitted
    examples, so outside its emphasis window it is a linear loss with no minimum and its
    logits grow with the integrated learning rate. Decoupled weight decay gives it a minimum
    (as for the "unhinged" loss), and the cosine schedule freezes the model at the end
    (README, "Keeping DM stable"). DM's run defaults are ``recipe.RUN_LOSS_DEFAULTS``;
    ``augment="auto"`` translates the images of convolutional models
    (``recipe.augmentation``) and the MLPs drop 20% of an image's pixels
    (``recipe.input_dropout``). DM and IMAE train their first quarter of the epochs with a
    flat emphasis (``recipe.warmup_epochs``). For CIFAR use the papers' recipe: ``optimizer="sgd",
    learning_rate=0.1, lr_schedule="step", weight_decay=5e-4``
    and a ResNet.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    noise_type: str = "symmetric"
    noise_rate: float = 0.4
    noise_seed: int = 0
    noisy_labels: str | None = None  # reuse a saved noisy_labels.npz (file or folder)
    loss: str = "dm"
    beta: float | None = None
    lam: float | None = None
    temperature: float | None = None
    q: float | None = None
    alpha: float | None = None
    max_margin: float | None = None  # DM/IMAE: no gradient outside |log(p / (1 - p))| <= M;
    #                                  None: recipe.MAX_MARGIN, 0: none (faithful)
    warmup_epochs: int | None = None  # DM/IMAE: flat emphasis first; None: recipe default
    normalize: str = "default"  # "default" (the loss's own), "none" or "batch"
    model: str = "auto"
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    momentum: float | None = None  # SGD only; None: 0.9
    lr_schedule: str = "cosine"  # none | step | cosine
    weight_decay: float | None = None  # None: weight_decay() (AdamW: normalised; else 0)
    augment: str = "auto"  # auto | none | cifar | crop
    input_dropout: float | None = None  # MLPs only; None: recipe.input_dropout (0.2 on images)
    validation_fraction: float = 0.0
    strategy: str = "default"
    tpu: str | None = None
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    model_dir: str = "runs/digits_dm"
    export_dir: str | None = None  # default saved_models/<basename of model_dir>; "" = none
    overwrite: bool = False  # start afresh in a model_dir that holds a finished run
    verbose: int = 1
    max_logit_scale: float = 1000.0  # CollapseGuard bound on the median max |logit|; 0: off
    streaming: str = "auto"  # auto | on | off: see keras_imae.run_data


def _noise_meta(config, dataset):
    """What identifies a corruption drawn by this library (stored in noisy_labels.npz)."""
    return {"dataset": dataset.name, "noise_type": config.noise_type,
            "noise_rate": 0.0 if config.noise_type == "none" else config.noise_rate,
            "noise_seed": config.noise_seed}


def _noisy_labels(config, dataset, resuming):
    """``(noisy, is_noisy, meta, source)``: drawn once per run, reused when resuming.

    Resuming reuses the run's own ``noisy_labels.npz`` and refuses other noise settings;
    ``config.noisy_labels`` reuses another run's file (its metadata is kept).
    """
    y, k = dataset.y_train, dataset.num_classes
    source = os.path.abspath(config.noisy_labels) if config.noisy_labels else None
    saved = os.path.join(config.model_dir, noise.NOISY_LABELS_FILENAME)
    if resuming and os.path.exists(saved):
        noisy, is_noisy, _, meta = noise.load_noisy_labels(saved, clean_labels=y, num_classes=k)
        wanted = {"source": source} if source else _noise_meta(config, dataset)
        differs = {key: (meta.get(key), value) for key, value in wanted.items()
                   if meta.get(key) != value}
        if differs:
            raise ValueError(
                f"Cannot resume the run in {config.model_dir!r} with other noise settings "
                f"(saved, requested): {differs}. Rerun with the original flags, or pass "
                "overwrite=True (--overwrite) or another model_dir to start afresh.")
        return noisy, is_noisy, meta, saved
    if source:
        noisy, is_noisy, _, meta = noise.load_noisy_labels(source, clean_labels=y, num_classes=k)
        return noisy, is_noisy, {**meta, "source": source}, source
    meta = _noise_meta(config, dataset)
    given = run_data.given_noise(dataset)  # label files, CIFAR-N: the source's own labels
    if given is not None:
        return (*given, {**meta, "labels": "given by the source"}, None)
    if meta["noise_rate"] == 0:
        return y.copy(), np.zeros(len(y), bool), meta, None
    noisy, is_noisy = noise.corrupt_labels(
        y, k, config.noise_type, config.noise_rate, config.noise_seed,
        dataset=dataset.name, superclasses=dataset.superclasses)
    return noisy, is_noisy, meta, None


def _folder_state(config):
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
        raise ValueError(
            f"model_dir {config.model_dir!r} already holds a finished run (metrics.json). "
            "Pass overwrite=True (--overwrite) to replace it, or choose another model_dir.")
    return bool(folder.written()) and not config.overwrite


def export_target(config):
    """The SavedModel folder of a run: ``export_dir``, or ``saved_models/<model_dir name>``
    (the absolute path's last component, so ``model_dir="."`` exports to
    ``saved_models/<current folder>``, never to ``saved_models`` itself); ``None`` for
    ``export_dir=""``."""
    if config.export_dir is not None:
        return config.export_dir or None
    name = os.path.basename(os.path.abspath(config.model_dir)) or "model"
    return os.path.join("saved_models", name)


def validate(config):
    """Every check that needs no data or training: raises ``ValueError`` naming the problem.

    Flags, the loss and its hyper-parameters, the optimizer, and the state of ``model_dir``.
    Returns the loss object with the defaults of an architecture not yet known (:func:`run`
    builds its own once the data fixes the model: ``recipe.loss_from_config(config, model)``).
    :func:`run` calls it first; scripts call it to turn mistakes into usage errors before
    anything is loaded.
    """
    if config.noise_type not in NOISE_TYPES:
        raise ValueError(
            f"Invalid value for `noise_type`. Expected one of {list(NOISE_TYPES)}. "
            f"Received: noise_type={config.noise_type!r}")
    for name in ("epochs", "batch_size"):
        checks.integer(name, getattr(config, name), low=1)
    checks.number("validation_fraction", config.validation_fraction, high=1.0, high_open=True)
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"Invalid value for `optimizer`. Expected one of {list(OPTIMIZERS)}. "
                         f"Received: optimizer={config.optimizer!r}")
    if config.momentum is not None and config.optimizer != "sgd":
        raise ValueError(f"`momentum` applies to optimizer='sgd' only. Received: "
                         f"momentum={config.momentum}, optimizer={config.optimizer!r}")
    if config.momentum is not None:
        checks.number("momentum", config.momentum, high=1.0)
    checks.number("learning_rate", config.learning_rate, low_open=True)
    checks.number("noise_rate", config.noise_rate, high=1.0)
    if config.weight_decay is not None:
        checks.number("weight_decay", config.weight_decay)
    if config.input_dropout is not None:
        models.check_input_dropout(config.input_dropout,
                                   None if config.model == "auto" else config.model)
    checks.number("max_logit_scale", config.max_logit_scale)  # 0: the guard is off
    dataset_name = config.dataset.split(":")[0]
    if (config.noise_type == "asymmetric" and not config.noisy_labels
            and dataset_name not in noise.ASYMMETRIC_DATASETS):
        raise ValueError(
            f"Invalid value for `noise_type`: asymmetric noise is defined for "
            f"{', '.join(noise.ASYMMETRIC_DATASETS)}, not dataset={config.dataset!r}. Use "
            "symmetric or pairflip, or pass a saved corruption with `noisy_labels`.")
    run_data.check_config(config)  # streaming mode, own-noise sources
    _check_paths(config)
    loss = loss_from_config(config)
    recipe.warmup_epochs(config)  # raises for a bad or inapplicable setting
    _folder_state(config)
    run_folder.RunFolder(config.model_dir).check_unlocked()
    target = export_target(config)
    if target:
        try:
            run_folder.check_export_target(target, config.model_dir, overwrite=config.overwrite)
        except FileExistsError as err:
            raise ValueError(str(err)) from None
    return loss


def _check_paths(config):
    """The input files a run names exist, and ``data_dir`` applies: before any work."""
    source, _, path = config.dataset.partition(":")
    if config.data_dir is not None and source in ("digits", "npz", "folder", "labels",
                                                  "tfrecord"):
        raise ValueError("Invalid value for `data_dir`: it only applies to TFDS datasets. "
                         f"Received: data_dir={config.data_dir!r}, dataset={config.dataset!r}")
    exists = {"npz": os.path.isfile, "folder": os.path.isdir, "labels": os.path.isdir,
              "tfrecord": os.path.isdir}.get(source)
    if exists and not exists(path):
        raise ValueError(f"Invalid value for `dataset`: no {source} at {path!r}. "
                         f"Received: dataset={config.dataset!r}")
    if config.noisy_labels and not os.path.isfile(noise.noisy_labels_path(config.noisy_labels)):
        raise ValueError(
            f"Invalid value for `noisy_labels`: no {noise.NOISY_LABELS_FILENAME} at "
            f"{noise.noisy_labels_path(config.noisy_labels)!r}. "
            f"Received: noisy_labels={config.noisy_labels!r}")


def _worker_dir(model_dir, strategy):
    """``(folder, is_chief)``: under multi-worker training only the chief writes model_dir.

    The chief is task ``chief``, or ``worker`` 0 when the cluster has no chief (as in
    ``MultiWorkerMirroredStrategy``); every other task writes its logs, backup and metrics
    to ``model_dir/<task_type>-<task_id>`` and exports nothing.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type in (None, "chief"):
        return model_dir, True
    task_id = resolver.task_id
    if task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict():
        return model_dir, True
    return os.path.join(model_dir, f"{task_type}-{task_id}"), False


def write_json(path, obj):
    """Write ``obj`` (numpy values allowed) as JSON to ``path`` atomically."""
    run_folder.write_json(path, obj, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def run(config, *, dataset=None, strategy=None):
    """Train one model on noisy labels and measure what it fits.

    Everything that can be checked is checked before anything is written (a refused run
    leaves no file behind); the run holds ``model_dir/.lock`` while it trains; an unfinished
    run in ``model_dir`` is resumed; a collapsed run (``callbacks.CollapseGuard``) raises
    ``TrainingCollapsed`` before anything is saved or exported; ``metrics.json`` is written
    last.

    Args:
        config: a :class:`RunConfig`.
        dataset: an already loaded :class:`keras_imae.data.Dataset` (tests, sweeps); default
            ``data.load_dataset(config.dataset, data_dir=config.data_dir)``.
        strategy: a ``tf.distribute.Strategy``; default ``distribute.get_strategy(
            config.strategy, tpu=config.tpu)``.

    Returns:
        A dict of results (also written to ``model_dir/metrics.json``): test accuracy best
        (and its epoch) and final, exact clean fit / noisy memorisation / noisy correction on
        the un-augmented training set, realised noise rate, mislabel-ranking quality, paths.
    """
    validate(config)
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    distribute.set_precision(config.precision)
    if strategy is None:
        strategy = distribute.get_strategy(config.strategy, tpu=config.tpu)
    model_dir, is_chief = _worker_dir(config.model_dir, strategy)
    config = dataclasses.replace(config, model_dir=model_dir)
    folder = run_folder.RunFolder(model_dir)
    with folder.lock():
        resuming = _folder_state(config)  # again, now that the folder is ours
        if dataset is None:
            dataset = run_data.open_dataset(config)
        noisy, is_noisy, meta, reused = _noisy_labels(config, dataset, resuming)
        split = _split(config, dataset, noisy)
        # The defaults of some hyper-parameters depend on the architecture (recipe).
        loss = loss_from_config(config, recipe.model_name(config, dataset.input_shape))
        with strategy.scope():
            model = compiled_model(config, dataset, loss, len(split["noisy"]))
        # Nothing was written so far: every check above leaves the folder as it was.
        if config.overwrite:
            folder.clear()
        write_json(folder.file(run_folder.CONFIG), dataclasses.asdict(config))
        _report_noise(config, dataset, noisy, meta, reused)
        noise.save_noisy_labels(model_dir, noisy, is_noisy, clean=dataset.y_train, **meta)
        monitor = _fit(config, model, folder, split, dataset, resuming)
        model.save(folder.file(run_folder.MODEL))
        results = _results(config, dataset, model, folder, monitor, split, noisy, meta, loss,
                           start)
        target = export_target(config)
        if target and is_chief:
            results["saved_model"] = export.export_saved_model(
                model, target, overwrite=config.overwrite, source=config.model_dir)
        write_json(folder.file(run_folder.METRICS), results)  # last: the run is finished
    return results


def _split(config, dataset, noisy):
    """Training arrays (and a noisy validation pipeline) of a run."""
    if run_data.is_streamed(dataset):
        return run_data.split(config, dataset, noisy)
    clean = dataset.y_train
    if config.validation_fraction == 0:
        return {"x_train": dataset.x_train, "noisy": noisy, "clean": clean, "validation": None}
    split = data.split_validation(dataset.x_train, noisy, config.validation_fraction,
                                  config.seed)
    return {"x_train": split.x_train, "noisy": split.y_train,
            "clean": clean[split.train_index],
            "validation": data.eval_dataset(split.x_val, split.y_val, clean[split.val_index],
                                            batch_size=config.batch_size)}


def _report_noise(config, dataset, noisy, meta, reused):
    if not config.verbose:
        return
    nominal = meta.get("noise_rate")
    if not reused and nominal:
        nominal = _nominal_transition(dataset, meta)
    summary = run_data.noise_report(dataset, noisy, nominal)
    print(("Reusing the corruption in " + reused + "\n" if reused else "") + summary)


def _nominal_transition(dataset, meta):
    """The nominal ``T`` of the noise described by ``meta`` (``noise_type``, ``noise_rate``)."""
    return noise.transition_matrix(dataset.num_classes, meta["noise_type"], meta["noise_rate"],
                                   dataset=dataset.name, superclasses=dataset.superclasses)


def _fit(config, model, folder, split, dataset, resuming):
    """``model.fit`` with the monitor, the collapse guard, logs and the backup; returns the
    monitor."""
    done = []
    if resuming:  # keep exactly the epochs the backup holds; the others are re-run
        folder.truncate_log(folder.backed_up_epochs())
        done = folder.read_log() if os.path.exists(folder.file(run_folder.LOG)) else []
    augment = recipe.augmentation(config, dataset)
    if run_data.is_streamed(dataset):
        train, monitor_train, monitor_test = run_data.pipelines(config, dataset, split, augment)
    else:
        train = data.train_dataset(split["x_train"], split["noisy"], split["clean"],
                                   batch_size=config.batch_size, augment=augment,
                                   seed=config.seed)
        monitor_train = (split["x_train"], split["noisy"], split["clean"])
        monitor_test = (dataset.x_test, dataset.y_test)
    monitor = callbacks.FitMonitor(
        train=monitor_train, test=monitor_test, batch_size=max(config.batch_size, 1024),
        previous_test_accuracy=[r["test_accuracy"] for r in done])
    model.fit(
        train, epochs=config.epochs, validation_data=split["validation"],
        verbose=config.verbose, shuffle=False,  # the pipeline shuffles (seeded)
        callbacks=[
            # DM/IMAE: the first epochs with a flat emphasis (switches in on_epoch_begin)
            callbacks.EmphasisWarmup(recipe.warmup_epochs(config)),
            keras.callbacks.TerminateOnNaN(),  # ends the epoch at the first NaN batch
            monitor,  # writes its values into the logs the others record
            # stops a collapsed run before its epoch is logged or backed up: no save, no export
            callbacks.CollapseGuard(max_logit_scale=config.max_logit_scale or None),
            keras.callbacks.CSVLogger(folder.file(run_folder.LOG), append=resuming),
            keras.callbacks.TensorBoard(folder.file(run_folder.TENSORBOARD)),
            # last: an epoch counts as done only once its log row is written
            distribute.backup_and_restore(folder.path),
        ])
    return monitor


def _results(config, dataset, model, folder, monitor, split, noisy, meta, loss, start):
    """The run's results dict (written to ``metrics.json``)."""
    train_noisy, train_clean = split["noisy"], split["clean"]
    scores = run_data.ranking(monitor, model, split)[1]
    verified = train_clean >= 0  # label files: clean labels for a subset only
    train_is_noisy = (train_noisy != train_clean)[verified]
    quality = (ranking.ranking_quality(scores[verified], train_is_noisy)
               if 0 < train_is_noisy.sum() < len(train_is_noisy) else {})
    results = {
        "dataset": dataset.name,
        "model": model.name,
        "loss": loss.get_config(),
        "warmup_epochs": recipe.warmup_epochs(config),  # flat-emphasis epochs first
        "noise_type": config.noise_type,
        "noise_rate_nominal": meta.get("noise_rate"),
        "noise_rate_realised": run_data.realised_rate(noisy, dataset.y_train),
        "epochs": config.epochs,
        **_epoch_results(folder.path, monitor.last),
        "mislabel_ranking": quality,
        "model_keras": os.path.abspath(folder.file(run_folder.MODEL)),
        "seconds": round(time.time() - start, 1),
    }
    rows = folder.read_log()
    if split["validation"] is not None and rows and "val_accuracy" in rows[-1]:
        results["val_accuracy_final"] = float(rows[-1]["val_accuracy"])  # on *noisy* labels
        corrected = _corrected_val_accuracy(dataset, model, split, meta)
        if corrected is not None:
            results["val_accuracy_corrected_final"] = corrected
    return results


def _corrected_val_accuracy(dataset, model, split, meta):
    """Final accuracy on the noisy validation split corrected by the nominal ``T`` of the
    noise this library injected (:func:`keras_imae.noise.corrected_accuracy`): an unbiased
    estimate of clean accuracy under any class-dependent noise. ``None`` when the labels
    came from elsewhere (``T`` unknown) or ``T`` is too close to singular."""
    if meta.get("noise_type") not in noise.NOISE_TYPES or not meta.get("noise_rate") or (
            "labels" in meta):
        return None
    with warnings.catch_warnings():  # rate past the identifiability limit: warned at the start
        warnings.simplefilter("ignore")
        transition = _nominal_transition(dataset, meta)
    if np.linalg.cond(transition) > noise.MAX_CONDITION:
        return None
    passed = callbacks.predict_pass(model, split["validation"])
    return noise.corrected_accuracy(passed.given, passed.pred, transition)


def read_log(model_dir):
    """The rows of ``model_dir/log.csv``; see :meth:`keras_imae.run_folder.RunFolder.read_log`."""
    return run_folder.RunFolder(model_dir).read_log()


def _epoch_results(model_dir, last):
    """Best/final test accuracy from the whole CSV log (complete across resumed runs) and
    the final exact training-set fit values measured by the FitMonitor."""
    rows = read_log(model_dir)
    test = [float(r["test_accuracy"]) for r in rows]
    best = int(np.argmax(test))
    return {
        "test_accuracy_best": test[best],
        "test_accuracy_best_epoch": int(rows[best]["epoch"]) + 1,
        "test_accuracy_final": test[-1],
        "train_accuracy": last.get("train_accuracy"),
        "clean_fit": last.get("train_clean_fit"),
        "noisy_fit": last.get("train_noisy_fit"),
        "noisy_correct": last.get("train_noisy_correct"),
        "history": {key: [float(r[key]) for r in rows] for key in _HISTORY_KEYS
                    if rows and key in rows[0]},
    }


_HISTORY_KEYS = ("test_accuracy", "train_clean_fit", "train_noisy_fit", "train_noisy_correct",
                 "loss")


def format_results(results):
    """The end-of-run table, as text."""
    rows = [
        ("test accuracy, best (epoch)",
         f"{results['test_accuracy_best']:.4f} ({results['test_accuracy_best_epoch']})"),
        ("test accuracy, final", f"{results['test_accuracy_final']:.4f}"),
    ]
    for name, key in (("clean fit (train, clean subset)", "clean_fit"),
                      ("noisy memorisation (train, noisy subset)", "noisy_fit"),
                      ("noisy correction (train, noisy subset)", "noisy_correct")):
        if results.get(key) is not None:
            rows.append((name, f"{results[key]:.4f}"))
    if results.get("val_accuracy_final") is not None:
        rows.append(("validation accuracy on noisy labels, final",
                     f"{results['val_accuracy_final']:.4f}"))
    if results.get("val_accuracy_corrected_final") is not None:
        rows.append(("  corrected by the noise's T (clean estimate)",
                     f"{results['val_accuracy_corrected_final']:.4f}"))
    rate = results["noise_rate_realised"]
    rows.append(("realised noise rate", "n/a (no clean labels)" if rate is None
                 else f"{rate:.4f}"))
    quality = results.get("mislabel_ranking") or {}
    if quality:
        rows.append(("mislabel ranking precision@k / ROC-AUC",
                     f"{quality['precision_at_k']:.4f} / {quality['roc_auc']:.4f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
