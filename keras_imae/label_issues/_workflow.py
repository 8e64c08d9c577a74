"""The workflow of ``scripts/find_label_issues.py``: probabilities, flags, files, retraining.

Two ways to the probabilities (``method``), both reading any source in memory or streamed:

- ``"run"`` (the default): one robust training run on every label, exactly
  ``scripts/train.py``'s (:func:`keras_imae.run.run`, its recipe, monitor and resume),
  then the final model's probabilities of its own training examples. The recipe keeps the
  model from fitting the wrong labels (random translation or input dropout, DM's emphasis,
  decay), so its in-sample probabilities separate them about as well as out-of-sample ones
  (``docs/label_issues.md`` has the measurements): one training's cost.
- ``"kfold"``: ``K`` robust models, each trained on ``K - 1`` folds and scoring the held-out
  one (:func:`keras_imae.label_issues.cross_val_probabilities`): out-of-sample, ``K - 1``
  trainings' cost.

Then :func:`keras_imae.label_issues.find_label_issues` scores and flags every example.
"""

import dataclasses
import os
import time

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae import data, losses, noise, run_folder
from keras_imae.label_issues._find import find_label_issues, issue_quality
from keras_imae.label_issues._kfold import DEFAULT_FOLDS, cross_val_probabilities
from keras_imae.label_issues._outputs import (COLUMNS, DEFAULT_NUM_SUSPECTS, format_summary,
                                              plot_suspects, write_csv)
from keras_imae.config import NOISE_TYPES, build, recipe
from keras_imae.run import corrupt, signals
from keras_imae.run import run as training_run

__all__ = ["COLUMNS", "DEFAULT_EPOCHS", "DEFAULT_NUM_SUSPECTS", "METHODS", "RETRAIN_MODES",
           "fold_loss", "format_summary", "given_labels", "plot_suspects", "run", "validate",
           "write_csv"]

DEFAULT_EPOCHS = recipe.DEFAULTS["label_issue_epochs"]
METHODS = ("run", "kfold")
CSV_FILENAME = "label_issues.csv"
PNG_FILENAME = "label_issues.png"
SUMMARY_FILENAME = "summary.json"
RETRAIN_MODES = ("none", "remove", "relabel")


def _retrain_config(config, retrain_loss):
    """``config`` for the retraining runs: ``retrain_loss`` with its own defaults, if given."""
    if retrain_loss is None or retrain_loss == config.loss:
        return config
    return dataclasses.replace(config, loss=retrain_loss,
                               **{name: None for name in recipe.LOSS_HPARAMS})


def _loss_of(config):
    """The loss ``config`` names, with the recipe's defaults (unknown name, bad value:
    ``ValueError``)."""
    return losses.get(config.loss, **recipe.loss_settings(
        config.loss, recipe.given_hparams(config), None, config.normalize, recipe.named(config)))


def check_output_dir(output_dir):
    """Raise ``ValueError`` if ``output_dir`` holds a training run of ``scripts/train.py``
    (its ``noisy_labels.npz`` would be replaced) or is inside a SavedModel export."""
    folder = run_folder.RunFolder(output_dir)
    theirs = [name for name in folder.written()
              if name != noise.NOISY_LABELS_FILENAME]  # this workflow writes that one too
    if theirs:
        raise ValueError(
            f"Invalid value for `output_dir`: {output_dir!r} holds a training run "
            f"({', '.join(theirs)}); its files would be replaced. Choose another output_dir.")
    export = run_folder.enclosing_export(output_dir)
    if export is not None:
        raise ValueError(f"Invalid value for `output_dir`: {output_dir!r} is inside the "
                         f"SavedModel export {export!r}. Choose another output_dir.")


def validate(config, *, method="run", folds=DEFAULT_FOLDS, retrain="none", retrain_loss=None,
             output_dir=None):
    """Checks that need no data: the method, ``folds``, the losses, ``retrain``, and that
    ``output_dir`` (when given) holds no training run or export (:func:`check_output_dir`)."""
    if output_dir is not None:
        check_output_dir(output_dir)
    if method not in METHODS:
        raise ValueError(f"Invalid value for argument `method`. Expected one of "
                         f"{list(METHODS)}. Received: method={method!r}")
    if config.noise_type not in NOISE_TYPES:
        raise ValueError(
            f"Invalid value for `noise_type`. Expected one of {list(NOISE_TYPES)}. "
            f"Received: noise_type={config.noise_type!r}")
    checks.integer("folds", folds, low=2)
    if retrain not in RETRAIN_MODES:
        raise ValueError(
            f"Invalid value for argument `retrain`. Expected one of {list(RETRAIN_MODES)}. "
            f"Received: retrain={retrain!r}")
    retrain_config = _retrain_config(config, retrain_loss)
    _loss_of(retrain_config)
    for name in ("warmup_epochs", "emphasis_ramp"):
        if getattr(config, name) is not None and method == "kfold" and retrain == "none":
            raise ValueError(
                f"`{name}` applies to training runs (method 'run', `retrain`) only: the fold "
                f"models train without a warm-up. Received: {name}={getattr(config, name)}, "
                f"method='kfold', retrain={retrain!r}")
    recipe.warmup_epochs(retrain_config.loss, retrain_config.epochs,  # bad, no emphasis: raises
                         retrain_config.warmup_epochs)
    return fold_loss(config) if method == "kfold" else _loss_of(config)


def given_labels(config, dataset):
    """``(given, is_noisy_or_None, clean_or_None, meta)``: the labels to check.

    ``config.noisy_labels`` (a ``noisy_labels.npz`` or its folder): those labels; the truth is
    known when the file stores clean labels. A source with its own noisy labels (label
    files, CIFAR-N): those, the truth known where the source verified it. Else the dataset's
    labels, corrupted as ``scripts/train.py`` corrupts them for the same flags (none for a
    user's own data: its labels are checked as given, the truth unknown).
    """
    y, k = dataset.y_train, dataset.num_classes
    if config.noisy_labels:
        source = os.path.abspath(config.noisy_labels)
        noisy, is_noisy, clean, meta = noise.load_noisy_labels(
            source, clean_labels=y, num_classes=k)
        if clean is None:
            return noisy, None, None, {**meta, "source": source}
        return noisy, np.asarray(is_noisy, bool), clean, {**meta, "source": source}
    if dataset.given_labels is not None:
        verified = dataset.verified
        meta = {"dataset": dataset.name, "labels": "given by the source"}
        if not verified.any():
            return dataset.given_labels.copy(), None, None, meta
        return dataset.given_labels.copy(), verified & (dataset.given_labels != y), y, meta
    noise_type, noise_rate = recipe.noise(config, dataset)
    if noise_type == "none":
        return y.copy(), None, None, {"dataset": dataset.name, "noise_type": "none"}
    noisy, is_noisy = corrupt(dataset, noise_type, noise_rate, config.noise_seed)
    meta = {"dataset": dataset.name, "noise_type": noise_type,
            "noise_rate": noise_rate, "noise_seed": config.noise_seed}
    return noisy, is_noisy, y, meta


def _probabilities(model, dataset, ids=None):
    """Softmax probabilities of ``model`` on training examples ``ids`` (default all)."""
    batches = data.eval_dataset(dataset, ids=ids,
                                batch_size=data.eval_batch_size(dataset.input_shape))
    logits = np.concatenate([keras.ops.convert_to_numpy(model(b, training=False))
                             for b in batches]).astype("float64")
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _run_probabilities(config, dataset, given, output_dir):
    """``(probs, loss config)`` of method ``"run"``: one training run (its own folder,
    ``output_dir/run``), then its final model's probabilities of every training example."""
    run_config = dataclasses.replace(config, model_dir=os.path.join(output_dir, "run"),
                                     export_dir="", overwrite=True)
    results = training_run(run_config, dataset=dataset)
    trained, _, _, _ = noise.load_noisy_labels(run_config.model_dir)
    if not np.array_equal(trained, given):  # the same flags draw the same labels
        raise RuntimeError("The training run trained on other labels than the ones checked.")
    model = keras.models.load_model(results["model_keras"], compile=False)
    return _probabilities(model, dataset), results["loss"]


def _fold_config(config):
    """``config`` under the fold models' named recipe ``"folds"`` (:func:`recipe.table
    <keras_imae.config.recipe.table>`: DM's fold setting for the hyper-parameters left
    unset, no warm-up and so no pair margins, estimated at its end): a fold model trains
    without callbacks, so a warm-up or pair margins asked for are not applied."""
    return dataclasses.replace(config, recipe="folds", warmup_epochs=None, emphasis_ramp=None,
                               pair_margins=None)


def fold_loss(config):
    """A fold model's loss: ``config.loss`` with the recipe's fold defaults for the
    hyper-parameters left unset, and its other defaults (e.g. ``max_margin``)."""
    return _loss_of(_fold_config(config))


def _fold_fit(config, dataset):
    """The ``fit`` of :func:`cross_val_probabilities` on a dataset: a robust model per fold,
    with the run recipe resolved for the fold's training part, seeded ``seed * 1000 + f``."""
    fold_config = _fold_config(config)

    def fit(part, labels, fold):
        seed = config.seed * 1000 + fold
        keras.utils.set_random_seed(seed)
        table = np.zeros(len(dataset.y_train), np.int64)
        table[part.ids] = labels
        resolved = recipe.resolve(fold_config, dataset, len(part))
        model = build.compiled_model(resolved, dataset, len(part), seed=seed)
        train = data.train_dataset(dataset, table, ids=part.ids, batch_size=config.batch_size,
                                   augment=resolved["augment"], seed=seed)
        fit_args = dict(verbose=config.verbose, shuffle=False,
                        callbacks=[signals.StopOnSignal()])
        head = resolved.get("head_epochs", 0)  # a pretrained backbone: the head alone first
        if head:
            model.fit(train, epochs=head, **fit_args)
            build.compile_phase(model, resolved, len(part), "finetune")
        model.fit(train, initial_epoch=head, epochs=config.epochs, **fit_args)
        return lambda held_out: np.log(np.maximum(
            _probabilities(model, dataset, held_out.ids), 1e-300))

    return fit


def _retrain(config, dataset, given, clean, issues, mode, output_dir):
    """Test accuracy trained on the given labels vs on the cleaned labels (``training.run``)."""
    if not dataset.in_memory:
        raise ValueError("`retrain` trains on a subset of the examples, which needs the data "
                         "in memory: pass --streaming=off.")
    truth = clean if clean is not None else given
    keep = np.flatnonzero(~issues.is_issue) if mode == "remove" else np.arange(len(given))
    cleaned = given[keep] if mode == "remove" else issues.suggested_labels
    results = {"mode": mode}
    for name, index, labels in (("given", np.arange(len(given)), given),
                                ("cleaned", keep, cleaned)):
        labels_file = noise.save_noisy_labels(
            os.path.join(output_dir, f".retrain_{name}_labels.npz"), labels,
            labels != truth[index], clean=truth[index])
        subset = dataclasses.replace(dataset, train=data.ArrayReader(dataset.x_train[index]),
                                     y_train=truth[index], given_labels=None)
        try:
            run = training_run(dataclasses.replace(
                config, noisy_labels=labels_file, noise_type="auto", verbose=0, overwrite=True,
                model_dir=os.path.join(output_dir, f"retrain_{name}"), export_dir=""),
                dataset=subset)
        finally:
            os.remove(labels_file)
        results["loss"] = run["loss"]  # as the run resolved it for its architecture
        results[name] = {key: run[key] for key in (
            "test_accuracy_final", "test_accuracy_best", "test_accuracy_best_epoch")}
        results[name]["train_examples"] = int(len(index))
    for key in ("test_accuracy_final", "test_accuracy_best"):
        results[f"gain_{key}"] = results["cleaned"][key] - results["given"][key]
    return results


def _method_probabilities(config, dataset, given, output_dir, method, folds, fit, loss, log):
    """``(probs, fold_of, loss_config)`` of ``method`` (``fold_of``: ``None`` for "run")."""
    if method == "run":
        log(f"Training one model ({config.loss}, {config.epochs} epochs) on every label...")
        probs, loss_config = _run_probabilities(config, dataset, given, output_dir)
        return probs, None, loss_config
    log(f"Training {folds} models ({config.loss}, {config.epochs} epochs each) for "
        "out-of-sample probabilities...")
    probs, fold_of = cross_val_probabilities(
        dataset, given, dataset.num_classes, fit=fit or _fold_fit(config, dataset),
        folds=folds, seed=config.seed, verbose=config.verbose)
    return probs, fold_of, loss.get_config()


def run(config, *, output_dir, method="run", folds=DEFAULT_FOLDS, retrain="none",
        retrain_loss=None, num_suspects=DEFAULT_NUM_SUSPECTS, dataset=None, fit=None,
        log=print):
    """The whole workflow: labels, probabilities (``method``), flags, files, retraining.

    Writes into ``output_dir``: ``label_issues.csv`` (:data:`COLUMNS`, one row per training
    example), ``label_issues.png`` (the top ``num_suspects``), and, when the truth is known,
    ``noisy_labels.npz`` (the labels checked, in ``scripts/train.py``'s format) and
    ``summary.json`` (settings, counts, precision/recall/F1/ROC-AUC against the true mask,
    retraining results). Method ``"run"`` also keeps its training run in ``output_dir/run``.

    Args:
        config: a :class:`keras_imae.config.RunConfig`: data and noise, loss, model,
            optimizer, epochs (of the run, or per fold), seed, verbosity.
        output_dir: the folder for the files above (created; files in it are replaced).
        method: ``"run"`` or ``"kfold"`` (module docstring).
        folds: ``K`` of method ``"kfold"``.
        retrain: ``"none"``; ``"remove"`` (drop the flagged examples) or ``"relabel"`` (give
            them their suggested label), then train on the given and on the cleaned labels
            with ``training.run(config)`` and report both test accuracies and the gain.
        retrain_loss: loss of the two retraining runs, with its own defaults.
        num_suspects: tiles on the contact sheet.
        dataset: an already loaded dataset (tests); default ``data.load(config.dataset)``.
        fit: for ``"kfold"``, the per-fold trainer of :func:`cross_val_probabilities`
            (default: the robust fold models).
        log: progress printer (``None``: silent).

    Returns:
        A dict: the settings, ``flagged``, ``examples``, ``seconds``, ``quality`` (or
        ``None``), ``retrain`` (or ``None``), ``files``, and the arrays ``issues``,
        ``probs`` and ``fold_of`` (``None`` for ``"run"``), not written to ``summary.json``.
    """
    loss = validate(config, method=method, folds=folds, retrain=retrain,
                    retrain_loss=retrain_loss, output_dir=output_dir)
    log = log or (lambda *_: None)
    start = time.time()
    if dataset is None:
        dataset = data.load(config.dataset, data_dir=config.data_dir,
                            streaming=config.streaming)
    given, is_noisy, clean, meta = given_labels(config, dataset)
    if is_noisy is not None:
        log(str(noise.noise_summary(clean[clean >= 0], given[clean >= 0],
                                    dataset.num_classes, nominal=meta.get("noise_rate"))))
    os.makedirs(output_dir, exist_ok=True)
    probs, fold_of, loss_config = _method_probabilities(config, dataset, given, output_dir,
                                                        method, folds, fit, loss, log)
    issues = find_label_issues(given, probs)
    written = {"csv": write_csv(os.path.join(output_dir, CSV_FILENAME), given, issues),
               "png": plot_suspects(os.path.join(output_dir, PNG_FILENAME), dataset, given,
                                    issues, class_names=dataset.class_names,
                                    num=num_suspects)}
    quality = None
    if is_noisy is not None:
        written["noisy_labels"] = noise.save_noisy_labels(output_dir, given, is_noisy,
                                                          clean=clean, **meta)
        verified = clean >= 0
        if 0 < is_noisy[verified].sum() < verified.sum():
            quality = issue_quality(issues.is_issue[verified], issues.scores[verified],
                                    is_noisy[verified])
    results = {
        "dataset": dataset.name, "noise": meta, "method": method,
        "folds": int(folds) if method == "kfold" else None, "loss": loss_config,
        "epochs": config.epochs, "seed": config.seed, "examples": len(given),
        "flagged": int(issues.is_issue.sum()), "quality": quality, "retrain": None,
        "seconds": round(time.time() - start, 1),
    }
    if retrain != "none":
        done = {"remove": "flagged-removed", "relabel": "relabelled"}[retrain]
        log(f"Retraining on the given and on the {done} labels...")
        results["retrain"] = _retrain(_retrain_config(config, retrain_loss), dataset, given,
                                      clean, issues, retrain, output_dir)
    if quality is not None or results["retrain"] is not None:
        written["summary"] = os.path.join(output_dir, SUMMARY_FILENAME)
        run_folder.write_json(written["summary"], {**results, "files": written})
    return {**results, "files": written, "issues": issues, "probs": probs, "fold_of": fold_of}
