"""One noisy-label training run, end to end: what ``scripts/train.py`` calls.

``run(config)`` loads the data, draws the training labels' noise once (or reuses a saved
corruption), resolves every setting into numbers (:mod:`keras_imae.config.recipe`), prints
them and records them in ``config.json``, builds and compiles the model under the requested
strategy, trains with Keras' progress bars while :class:`keras_imae.callbacks.FitMonitor`
measures clean fit, noisy memorisation and test accuracy after every epoch, then writes
``metrics.json``, the Keras model and a serving SavedModel, and returns the results.

Everything a run writes lives in ``model_dir``, whose rules (finished iff ``metrics.json``
exists, resumable otherwise, one run at a time, exports never shared by accident) are in
:mod:`keras_imae.run_folder`. The SavedModel goes to ``export_dir`` (default
``saved_models/<name of model_dir>``).
"""

import dataclasses
import os
import time

import keras
import numpy as np

from keras_imae import _files, callbacks, data, noise, run_folder
from keras_imae.config import build, check_resume, export_target, folder_state, recipe, validate
from keras_imae.run import _noise, _results, _select, _tune, distribute, signals
from keras_imae.run_folder import export

__all__ = ["fit_monitor", "run"]

DEMO_NOTE = ("The embedded digits demo draws {rate:.0%} {kind} noise into its training labels "
             "(--noise_type=none trains on the given labels; your own data is never corrupted "
             "unless --noise_type asks for it).")


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


def _split(resolved, noisy, seed):
    """``(train_ids, val_ids)``: the noisy validation split (``None`` without one)."""
    fraction = resolved["validation_fraction"]
    if fraction == 0:
        return np.arange(len(noisy)), None
    return data.split_ids(noisy, fraction, seed)


def _defaulted(config, resolved):
    """The resolved settings the user did not set (marked in the printed block)."""
    fields = {"recipe": config.recipe == "auto",
              "noise_type": config.noise_type == "auto", "model": config.model == "auto",
              "augment": config.augment == "auto",
              "input_dropout": config.input_dropout is None,
              "loss_settings": any(v is None for v in recipe.given_hparams(config).values()),
              "warmup_epochs": recipe.warmup_setting(config) is None,
              "pair_margins": config.pair_margins is None,
              "momentum": config.momentum is None, "weight_decay": config.weight_decay is None,
              "checkpoint": config.checkpoint is None,
              "validation_fraction": config.validation_fraction is None,
              "image_size": config.image_size is None,
              "head_epochs": config.head_epochs is None,
              "finetune_learning_rate": config.finetune_learning_rate is None}
    return {key for key, default in fields.items() if default and key in resolved} | (
        set(recipe.RULES) & set(resolved))


def run(config, *, dataset=None, strategy=None):
    """Train one model on noisy labels and measure what it fits.

    Everything that can be checked is checked before anything is written (a refused run
    leaves no file behind); the run holds ``model_dir/.lock`` while it trains; an unfinished
    run in ``model_dir`` is resumed; a collapsed run (``callbacks.CollapseGuard``) raises
    ``TrainingCollapsed`` before anything is saved or exported; ``metrics.json`` is written
    last.

    Args:
        config: a :class:`keras_imae.config.RunConfig`.
        dataset: an already loaded :class:`keras_imae.data.Dataset` (tests, sweeps); default
            ``data.load(config.dataset, data_dir=config.data_dir, streaming=config.streaming)``
            (a backbone's images read at ``recipe.load_image_size(config)``).
        strategy: a ``tf.distribute.Strategy``; default ``distribute.get_strategy(
            config.strategy, tpu=config.tpu)``.

    Returns:
        A dict of results (also written to ``model_dir/metrics.json``): test accuracy best
        (and its epoch) and final, exact clean fit / noisy memorisation / noisy correction on
        the un-augmented training set, realised noise rate, mislabel-ranking quality, the
        resolved settings, paths.
    """
    validate(config)
    if config.tune:
        return _tune.tuned_run(config, dataset, strategy, _one_run)
    return _one_run(config, dataset=dataset, strategy=strategy)


def _one_run(config, *, dataset=None, strategy=None):
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    distribute.set_precision(config.precision)
    if strategy is None:
        strategy = distribute.get_strategy(config.strategy, tpu=config.tpu)
    model_dir, is_chief = _worker_dir(config.model_dir, strategy)
    config = dataclasses.replace(config, model_dir=model_dir)
    folder = run_folder.RunFolder(model_dir)
    with folder.lock():
        resuming = folder_state(config)  # again, now that the folder is ours
        if dataset is None:
            dataset = data.load(config.dataset, data_dir=config.data_dir,
                                image_size=recipe.load_image_size(config),
                                streaming=config.streaming)
        resolved = recipe.resolve(config, dataset)  # once: the run and its record use it
        noisy, is_noisy, meta, reused = _noise.noisy_labels(
            config, dataset, resuming, resolved["noise_type"], resolved["noise_rate"])
        train_ids, val_ids = _split(resolved, noisy, config.seed)
        if resuming:
            check_resume(config, resolved)  # a changed default counts too
        with strategy.scope():
            model = build.compiled_model(resolved, dataset, len(train_ids), seed=config.seed,
                                          jit_compile=config.jit_compile)
        # Nothing was written so far: every check above leaves the folder as it was.
        if config.overwrite:
            folder.clear()
        run_folder.write_json(folder.file(run_folder.CONFIG),
                              {**dataclasses.asdict(config), "resolved": resolved})
        if config.verbose:
            _announce(config, dataset, resolved, noisy, meta, reused)
        noise.save_noisy_labels(model_dir, noisy, is_noisy, clean=dataset.y_train, **meta)
        backup = distribute.backup_and_restore(folder.path, delete_when_done=False)
        transition = None  # the logged correction's T: from the noisy labels, never the drawn
        if val_ids is not None:
            transition = _noise.validation_transition(dataset, noisy, config.noise_seed,
                                                     verbose=config.verbose)
        monitor = _fit(config, resolved, model, folder, dataset, noisy, (train_ids, val_ids),
                       transition, resuming, backup, strategy)
        exported = _select_exported(resolved, model, folder, monitor, backup.epoch)
        model_path = folder.file(run_folder.MODEL)
        _files.atomic_write(model_path, model.save, path_only=True)
        results = _results.results(config, resolved, dataset, model, folder, monitor, noisy,
                                   train_ids, meta, start, exported)
        target = export_target(config)
        signals.check()  # stopped now, the same command only exports
        if target and is_chief:
            results["saved_model"] = export.export_finished_run(
                model, target, overwrite=config.overwrite, model_dir=config.model_dir,
                model_path=model_path)
        run_folder.write_json(folder.file(run_folder.METRICS), results)  # last: finished
        backup.delete()  # only now: a run stopped before this resumes with nothing to train
        _select.delete(folder.path)
    return results


def _select_exported(resolved, model, folder, monitor, last_epoch):
    """Load the weights of the epoch the run exports into ``model`` (the last one,
    ``last_epoch`` by the backup's count, is already there) and return what that model
    scores: ``{"epoch", "selected_by", "test_accuracy", "clean_fit", "noisy_fit",
    "noisy_correct", ...}``."""
    rows = folder.read_log()
    if monitor.last_train_scores is None:  # no epoch left to train (a finished fit resumed)
        monitor.last = monitor.measure()
    if resolved["checkpoint"] == "last":
        values, epoch, key = monitor.last, last_epoch, None
    else:
        key = _select.SCORE_KEY
        epoch = _select.restore_best(model, folder.path, rows, key)
        values = monitor.measure() if epoch != last_epoch else monitor.last
    exported = {"epoch": epoch, "selected_by": key,
                "test_accuracy": values.get("test_accuracy")}
    for name in ("clean_fit", "noisy_fit", "noisy_correct", "accuracy"):
        exported[name] = values.get(f"train_{name}")
    for name in ("val_accuracy", "val_accuracy_corrected"):
        if name in values:
            exported[name] = values[name]
    return exported


def _announce(config, dataset, resolved, noisy, meta, reused):
    """The start-of-run block: the data, the settings the run resolved, the noise."""
    print(f"Data: {dataset!r}")
    print(recipe.format_resolved(resolved, _defaulted(config, resolved)))
    if config.noise_type == "auto" and resolved["noise_type"] != "none" and not reused:
        print(DEMO_NOTE.format(rate=resolved["noise_rate"], kind=resolved["noise_type"]))
    print(_noise.noise_report(dataset, noisy, meta, reused))


def fit_monitor(dataset, noisy, train_ids=None, *, val_ids=None, transition=None,
                batch_size=64, previous_test_accuracy=()):
    """The :class:`keras_imae.callbacks.FitMonitor` of a run: the training examples
    ``train_ids`` (default all) un-augmented, with their noisy and clean labels and ids, the
    test split and, given ``val_ids``, the noisy validation split (T-corrected with
    ``transition``), in batches of :func:`keras_imae.data.eval_batch_size`."""
    eval_batch = data.eval_batch_size(dataset.input_shape, batch_size)
    validation = None
    if val_ids is not None:
        validation = data.eval_dataset(dataset, noisy, ids=val_ids, batch_size=eval_batch)
    return callbacks.FitMonitor(
        train=data.eval_dataset(dataset, noisy, dataset.y_train, ids=train_ids,
                                batch_size=eval_batch, with_ids=True),
        test=data.eval_dataset(dataset.test, dataset.y_test, batch_size=eval_batch),
        validation=validation, transition=transition,
        previous_test_accuracy=previous_test_accuracy)


def _pair_margins(resolved, dataset, noisy, train_ids, folder):
    """``[PairMargins]`` at the resolved ``pair_margin_epoch`` (DM's rejection margins per
    class pair, forward correction's ``T``), else ``[]``; the estimate is also kept in the
    run folder for a resume from an older backup."""
    if resolved["pair_margin_epoch"] is None:
        return []
    train = data.eval_dataset(dataset, noisy, ids=train_ids, batch_size=data.eval_batch_size(
        dataset.input_shape, resolved["batch_size"]))
    return [callbacks.PairMargins(train, resolved["pair_margin_epoch"],
                                  path=folder.file(run_folder.PAIR_MARGINS))]


def _fit(config, resolved, model, folder, dataset, noisy, split, transition, resuming, backup,
         strategy):
    """``model.fit`` with the monitor, the collapse guard, the checkpoints of the best epochs
    (``checkpoint="best"``), logs and the backup; returns the monitor. A backbone with
    ``head_epochs`` trains in two fits (:func:`_two_phases`)."""
    train_ids, val_ids = split
    done = []
    start = backup.resume_epoch()  # the backup fit restores: training resumes at its end
    if resuming:  # keep exactly the epochs the backup holds; the others are re-run
        folder.truncate_log(start)
        done = folder.read_log() if os.path.exists(folder.file(run_folder.LOG)) else []
    clean = dataset.y_train
    # RobustModel's running clean_fit needs every clean label; FitMonitor copes with -1.
    # Epochs start..epochs-1, each a function of (seed, epoch): a resumed run sees the
    # batches an uninterrupted one sees. At least one: with no epoch left to train, fit
    # under a strategy still builds the model from a first batch.
    def train_from(first):
        return data.train_dataset(dataset, noisy, clean if dataset.verified.all() else None,
                                  ids=train_ids, batch_size=config.batch_size,
                                  augment=resolved["augment"], seed=config.seed,
                                  epochs=max(config.epochs, first + 1), initial_epoch=first,
                                  with_ids=bool(resolved.get("elr_lambda")))  # ELR's index

    monitor = fit_monitor(dataset, noisy, train_ids, val_ids=val_ids, transition=transition,
                          batch_size=config.batch_size,
                          previous_test_accuracy=[r["test_accuracy"] for r in done])
    checkpoints = []
    if resolved["checkpoint"] == "best":
        checkpoints = [_select.checkpoint_callback(folder.path, _select.SCORE_KEY, done)]
    log = run_folder.LogWriter(folder.file(run_folder.LOG), append=resuming)
    guard = callbacks.CollapseGuard(max_logit_scale=config.max_logit_scale or None,
                                    max_top_class_fraction=resolved["max_top_class_fraction"],
                                    patience=resolved["collapse_patience"], previous_logs=done)
    fit_callbacks = [
        # DM/IMAE: the first epochs with a flat emphasis, then its ramp (on_epoch_begin)
        callbacks.EmphasisWarmup(resolved["warmup_epochs"], resolved["ramp_epochs"]),
        *_pair_margins(resolved, dataset, noisy, train_ids, folder),
        keras.callbacks.TerminateOnNaN(),  # ends the epoch at the first NaN batch
        monitor,  # writes its values into the logs the others record
        # verbose=1: a bar with loss, accuracy, clean_fit, noisy_fit, test_accuracy only
        *([callbacks.ProgressBar()] if config.verbose == 1 else []),
        # stops a collapsed run before its epoch is logged or backed up: no save, no export
        guard,
        *checkpoints,  # before the log: a logged best epoch has its checkpoint
        log,
        keras.callbacks.TensorBoard(folder.file(run_folder.TENSORBOARD)),
        # an epoch counts as done only once its log row is written
        backup,
        signals.StopOnSignal(),  # last: SIGTERM/Ctrl-C stop here, the epoch backed up
    ]

    def fit(epochs, initial_epoch):
        model.fit(
            train_from(initial_epoch), epochs=epochs, verbose=config.verbose,
            initial_epoch=initial_epoch,
            steps_per_epoch=data.steps_per_epoch(len(train_ids), config.batch_size),
            shuffle=False,  # the pipeline shuffles (seeded)
            callbacks=fit_callbacks)

    if not resolved.get("head_epochs"):
        fit(config.epochs, start)
    else:
        _two_phases(fit, model, resolved, len(train_ids), start, backup, log, monitor, guard,
                    folder, strategy, config.jit_compile)
    return monitor


def _two_phases(fit, model, resolved, num_train, start, backup, log, monitor, guard, folder,
                strategy, jit_compile):
    """Fine-tuning in Keras' two phases: the head alone for ``head_epochs`` (the model comes
    compiled so), then the whole network (:func:`build.compile_phase`). The backup of the
    last head epoch holds the head's optimizer: a run resumed there restores it in the first
    phase (which then trains no epoch) and starts the second with a new optimizer; a run
    resumed later restores the second phase's own backup."""
    head = resolved["head_epochs"]
    if start <= head:
        fit(head, start)
        if model.stop_training:  # TerminateOnNaN ended the first phase
            return
        log.append = True
        guard.previous_logs = folder.read_log()
        monitor.previous_test_accuracy = [float(r["test_accuracy"]) for r in guard.previous_logs]
    with strategy.scope():
        build.compile_phase(model, resolved, num_train, "finetune", jit_compile=jit_compile)
    backup.restore = start > head
    try:
        fit(resolved["epochs"], max(start, head))
    finally:
        backup.restore = True
