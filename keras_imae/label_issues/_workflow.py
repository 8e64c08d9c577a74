"""The workflow of ``scripts/find_label_issues.py``: K-fold robust models, flags, files."""

import csv
import dataclasses
import io
import os

import numpy as np

import keras

from keras_imae import _checks as checks
from keras_imae import _files, data, losses, noise
from keras_imae.label_issues._find import find_label_issues, issue_quality
from keras_imae.label_issues._kfold import DEFAULT_FOLDS, cross_val_probabilities
from keras_imae.training import _run_folder, recipe
from keras_imae.training import run as training_run
from keras_imae.training._config import NOISE_TYPES

__all__ = ["COLUMNS", "DEFAULT_EPOCHS", "DEFAULT_NUM_SUSPECTS", "RETRAIN_MODES", "fold_loss",
           "format_summary", "given_labels", "make_fit", "plot_suspects", "run", "validate",
           "write_csv"]

DEFAULT_EPOCHS = recipe.DEFAULTS["label_issue_epochs"]  # per fold: a K-fold run trains K models

COLUMNS = ("index", "given_label", "suggested_label", "score", "is_issue")
CSV_FILENAME = "label_issues.csv"
PNG_FILENAME = "label_issues.png"
SUMMARY_FILENAME = "summary.json"
DEFAULT_NUM_SUSPECTS = 36
RETRAIN_MODES = ("none", "remove", "relabel")

# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def write_csv(path, labels, issues):
    """``label_issues.csv``: columns :data:`COLUMNS`, one row per example in index order.

    ``score`` has 6 decimals, ``is_issue`` is 0/1. Written atomically.
    """
    labels = checks.label_ids(labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, (given, suggested, score, flag) in enumerate(zip(
            labels, issues.suggested_labels, issues.scores, issues.is_issue)):
        writer.writerow([i, int(given), int(suggested), f"{score:.6f}", int(flag)])
    return _files.atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _show(ax, example):
    """An image (H, W[, C]) with imshow, anything else with one non-unit axis as a curve."""
    example = np.asarray(example)
    squeezed = np.squeeze(example)
    if example.ndim == 3 and example.shape[-1] in (1, 3) and squeezed.ndim >= 2:
        image = example.astype("float64")
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray_r"
                  if image.shape[-1] == 1 else None, interpolation="nearest")
    else:
        ax.plot(squeezed.reshape(-1), linewidth=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_suspects(path, x, labels, issues, *, class_names=None, num=DEFAULT_NUM_SUSPECTS):
    """A contact sheet of the ``num`` highest-scoring examples, most suspicious first.

    Each tile shows the example (images as pictures, feature vectors as curves) titled
    ``#index  given → suggested`` and the score; flagged examples are in red, unflagged
    suspects (high score, but the rule found no confident other class) in grey with
    ``given → ?``. Uses ``matplotlib.figure.Figure`` (no global backend); written atomically.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    x, labels = np.asarray(x), checks.label_ids(labels)
    order = np.argsort(-issues.scores, kind="stable")[: max(int(num), 1)]
    names = class_names or [str(c) for c in range(
        int(max(labels.max(), issues.suggested_labels.max())) + 1)]
    cols = min(len(order), 6)
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(2.1 * cols, 2.3 * rows + 0.4))
    fig.suptitle("Most likely wrong labels: #index  given → suggested (score)", fontsize=10)
    for tile, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, tile + 1)
        _show(ax, x[i])
        flagged = bool(issues.is_issue[i])
        given = names[int(labels[i])]
        suggested = names[int(issues.suggested_labels[i])] if flagged else "?"
        ax.set_title(f"#{i}  {given} → {suggested}\n({issues.scores[i]:.2f})", fontsize=8,
                     color="tab:red" if flagged else "dimgray")
    fig.tight_layout()
    return _files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100),
                              binary=True)


# --------------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------------
def _retrain_config(config, retrain_loss):
    """``config`` for the retraining runs: ``retrain_loss`` with its own defaults, if given.
    ``config.warmup_epochs`` is kept: it applies to the retraining runs only (the fold
    models never warm up)."""
    if retrain_loss is None or retrain_loss == config.loss:
        return config
    return dataclasses.replace(config, loss=retrain_loss,
                               **{name: None for name in recipe.LOSS_HPARAMS})


def validate(config, *, folds=DEFAULT_FOLDS, retrain="none", retrain_loss=None):
    """Checks that need no data: the loss and its hyper-parameters, ``folds``, ``retrain``.

    Returns the fold models' loss object (:func:`fold_loss`).
    """
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
    losses.get(retrain_config.loss, **recipe.loss_settings(  # unknown name, bad value: raises
        retrain_config.loss, recipe.given_hparams(retrain_config), None,
        retrain_config.normalize))
    if config.warmup_epochs is not None and retrain == "none":
        raise ValueError(
            "`warmup_epochs` applies to the retraining runs (`retrain`) only: the fold models "
            f"train without a warm-up. Received: warmup_epochs={config.warmup_epochs}, "
            f"retrain={retrain!r}")
    recipe.warmup_epochs(retrain_config.loss, retrain_config.epochs,  # bad, no emphasis: raises
                         retrain_config.warmup_epochs)
    return fold_loss(config)


def given_labels(config, dataset):
    """``(given, is_noisy_or_None, clean_or_None, meta)``: the labels to check.

    ``config.noisy_labels`` (a ``noisy_labels.npz`` or its folder): those labels; the truth is
    known when the file stores clean labels (files written by ``scripts/train.py`` and by this
    workflow do). Else ``noise_type="none"``: the dataset's own training labels are checked as
    given -- a user's data, truth unknown. Else they are corrupted with
    ``noise.corrupt_labels`` exactly as ``scripts/train.py`` does (same flags, same noise).
    """
    y, k = dataset.y_train, dataset.num_classes
    if config.noisy_labels:
        source = os.path.abspath(config.noisy_labels)
        noisy, is_noisy, clean, meta = noise.load_noisy_labels(
            source, clean_labels=y, num_classes=k)
        if clean is None:
            return noisy, None, None, {**meta, "source": source}
        return noisy, np.asarray(is_noisy, bool), clean, {**meta, "source": source}
    noise_type, noise_rate = recipe.noise(config, dataset)
    if noise_type == "none":
        return y.copy(), None, None, {"dataset": dataset.name, "noise_type": "none"}
    noisy, is_noisy = noise.corrupt_labels(
        y, k, noise_type, noise_rate, config.noise_seed,
        dataset=dataset.name, superclasses=dataset.superclasses)
    meta = {"dataset": dataset.name, "noise_type": noise_type,
            "noise_rate": noise_rate, "noise_seed": config.noise_seed}
    return noisy, is_noisy, y, meta


def _retrain(config, dataset, given, clean, issues, mode, output_dir):
    """Test accuracy trained on the given labels vs on the cleaned labels (``training.run``)."""
    truth = clean if clean is not None else given
    if mode == "remove":
        keep = np.flatnonzero(~issues.is_issue)
        cleaned = given[keep]
    else:
        keep = np.arange(len(given))
        cleaned = issues.suggested_labels
    results = {"mode": mode}
    for name, index, labels in (("given", np.arange(len(given)), given),
                                ("cleaned", keep, cleaned)):
        folder = os.path.join(output_dir, f"retrain_{name}")
        labels_file = noise.save_noisy_labels(
            os.path.join(output_dir, f".retrain_{name}_labels.npz"), labels,
            labels != truth[index], clean=truth[index])
        subset = dataclasses.replace(dataset, train=data.ArrayReader(dataset.x_train[index]),
                                     y_train=truth[index])
        try:
            run = training_run(dataclasses.replace(
                config, noisy_labels=labels_file, model_dir=folder, export_dir="",
                overwrite=True, verbose=0), dataset=subset)
        finally:
            os.remove(labels_file)
        results["loss"] = run["loss"]  # as the run resolved it for its architecture
        results[name] = {key: run[key] for key in (
            "test_accuracy_final", "test_accuracy_best", "test_accuracy_best_epoch")}
        results[name]["train_examples"] = int(len(index))
    for key in ("test_accuracy_final", "test_accuracy_best"):
        results[f"gain_{key}"] = results["cleaned"][key] - results["given"][key]
    return results


def run(config, *, output_dir, folds=DEFAULT_FOLDS, retrain="none", retrain_loss=None,
        num_suspects=DEFAULT_NUM_SUSPECTS, dataset=None, fit=None, log=print):
    """The whole workflow: labels, K-fold probabilities, flags, files, optional retraining.

    Writes into ``output_dir``:

    - ``label_issues.csv``: :data:`COLUMNS`, one row per training example (:func:`write_csv`);
    - ``label_issues.png``: the top ``num_suspects`` (:func:`plot_suspects`);
    - ``noisy_labels.npz``: the labels checked, in ``scripts/train.py``'s format (``--noisy_labels``
      takes it back) -- only when the truth is known;
    - ``summary.json``: the settings, counts, and precision/recall/F1/ROC-AUC against the true
      mask when it is known, and the retraining results -- only when there is either.

    Args:
        config: a :class:`keras_imae.training.RunConfig`: data and noise (``dataset``,
            ``noise_type``, ``noisy_labels``...), loss, model, optimizer, epochs *per fold*,
            seed. ``model_dir``/``export_dir``/strategy fields are not used.
        output_dir: the folder for the files above (created; files in it are replaced).
        folds: ``K``.
        retrain: ``"none"``; ``"remove"`` (drop the flagged examples) or ``"relabel"`` (give
            them their suggested label), then train one model on the given and one on the
            cleaned labels with ``training.run(config)`` (same settings and seed) and report
            both test accuracies and the gain.
        retrain_loss: loss name of the two retraining runs, with its own defaults; default
            ``config.loss`` as ``scripts/train.py`` would use it (``recipe.DEFAULTS["fold_dm"]``
            applies to the K-fold models only).
        num_suspects: tiles on the contact sheet.
        dataset: an already loaded dataset (tests); default
            ``data.load(config.dataset, streaming="off")``.
        fit: the per-fold trainer (see :func:`cross_val_probabilities`); default
            :func:`make_fit` ``(config, dataset)``.
        log: progress printer (``None``: silent).

    Returns:
        A dict: ``quality`` (or ``None``), ``flagged``, ``examples``, ``files``, the settings,
        ``retrain`` results (or ``None``), and ``issues`` (the :class:`LabelIssues`),
        ``probs``, ``fold_of`` arrays (not written to ``summary.json``).
    """
    validate(config, folds=folds, retrain=retrain, retrain_loss=retrain_loss)
    log = log or (lambda *_: None)
    if dataset is None:
        dataset = data.load(config.dataset, data_dir=config.data_dir, streaming="off")
    given, is_noisy, clean, meta = given_labels(config, dataset)
    if is_noisy is not None:
        log(str(noise.noise_summary(clean, given, dataset.num_classes,
                                    nominal=meta.get("noise_rate"))))
    fit = fit or make_fit(config, dataset)
    log(f"Training {folds} models ({config.loss}, {config.epochs} epochs each) for "
        "out-of-sample probabilities...")
    probs, fold_of = cross_val_probabilities(dataset.x_train, given, dataset.num_classes,
                                             fit=fit, folds=folds, seed=config.seed)
    issues = find_label_issues(given, probs)
    os.makedirs(output_dir, exist_ok=True)
    written = {"csv": write_csv(os.path.join(output_dir, CSV_FILENAME), given, issues),
               "png": plot_suspects(os.path.join(output_dir, PNG_FILENAME), dataset.x_train,
                                    given, issues, class_names=dataset.class_names,
                                    num=num_suspects)}
    quality = None
    if is_noisy is not None:
        written["noisy_labels"] = noise.save_noisy_labels(output_dir, given, is_noisy,
                                                          clean=clean, **meta)
        if 0 < is_noisy.sum() < len(is_noisy):
            quality = issue_quality(issues.is_issue, issues.scores, is_noisy)
    results = {
        "dataset": dataset.name, "noise": meta, "folds": int(folds),
        "loss": fold_loss(config).get_config(),
        "epochs_per_fold": config.epochs, "seed": config.seed, "examples": len(given),
        "flagged": int(issues.is_issue.sum()), "quality": quality, "retrain": None,
    }
    if retrain != "none":
        done = {"remove": "flagged-removed", "relabel": "relabelled"}[retrain]
        log(f"Retraining on the given and on the {done} labels...")
        results["retrain"] = _retrain(_retrain_config(config, retrain_loss), dataset, given,
                                      clean, issues, retrain, output_dir)
    if quality is not None or results["retrain"] is not None:
        written["summary"] = os.path.join(output_dir, SUMMARY_FILENAME)
        _run_folder.write_json(written["summary"], {**results, "files": written})
    return {**results, "files": written, "issues": issues, "probs": probs,
            "fold_of": fold_of}


def format_summary(results):
    """The end-of-run text: counts, quality against the truth, retraining gain, files."""
    lines = [f"{results['flagged']} of {results['examples']} labels flagged as issues "
             f"({results['folds']}-fold out-of-sample, loss {results['loss']['name']})."]
    quality = results.get("quality")
    if quality:
        lines.append(
            f"Against the true noise mask ({quality['noisy']} wrong labels): precision "
            f"{quality['precision']:.3f}, recall {quality['recall']:.3f}, F1 "
            f"{quality['f1']:.3f}, ROC-AUC {quality['roc_auc']:.3f}")
    retrained = results.get("retrain")
    if retrained:
        mode = {"remove": "flagged removed", "relabel": "flagged relabelled"}[retrained["mode"]]
        lines.append(
            f"Test accuracy (final / best, {retrained['loss']['name']}): given labels "
            f"{retrained['given']['test_accuracy_final']:.4f} / "
            f"{retrained['given']['test_accuracy_best']:.4f}; {mode} "
            f"{retrained['cleaned']['test_accuracy_final']:.4f} / "
            f"{retrained['cleaned']['test_accuracy_best']:.4f}; gain "
            f"{retrained['gain_test_accuracy_final']:+.4f} / "
            f"{retrained['gain_test_accuracy_best']:+.4f}")
    lines += [f"Wrote {path}" for path in results["files"].values()]
    return "\n".join(lines)


def _fold_config(config):
    """``config`` with the fold models' DM defaults (``recipe.DEFAULTS["fold_dm"]``) for the
    hyper-parameters left unset."""
    if config.loss != "dm":
        return config
    unset = {k: v for k, v in recipe.DEFAULTS["fold_dm"].items() if getattr(config, k) is None}
    return dataclasses.replace(config, **unset)


def fold_loss(config):
    """A fold model's loss: ``config.loss`` with the recipe's fold defaults for the
    hyper-parameters left unset, and its other defaults (e.g. ``max_margin``)."""
    c = _fold_config(config)
    return losses.get(c.loss, **recipe.loss_settings(c.loss, recipe.given_hparams(c), None,
                                                     c.normalize))


def make_fit(config, dataset):
    """The default ``fit`` of :func:`cross_val_probabilities`: a robust model per fold.

    Each fold resolves the run recipe for its training part (``recipe.resolve``: the
    architecture, optimizer, schedule, decay, augmentation of a ``scripts/train.py`` run)
    with the fold defaults of :func:`fold_loss` and no warm-up, and trains for
    ``config.epochs``. Fold ``f`` seeds everything with ``config.seed * 1000 + f``.

    Args:
        config: a :class:`keras_imae.training.RunConfig` (loss, model, optimizer, epochs,
            batch size, augmentation, seed; data and noise fields are not used here).
        dataset: the :class:`keras_imae.data.Dataset` (input shape, classes, statistics).

    Returns:
        ``fit(x, labels, fold) -> predict``, ``predict(x)`` giving logits.
    """
    fold_loss(config)  # a bad loss setting fails now, not in the first fold
    fold_config = _fold_config(config)

    def fit(x, labels, fold):
        seed = config.seed * 1000 + fold
        keras.utils.set_random_seed(seed)
        resolved = recipe.resolve(fold_config, dataset, len(x))
        model = recipe.compiled_model(resolved, dataset, len(x), seed=seed)
        train = data.train_dataset(x, labels, batch_size=config.batch_size,
                                   augment=resolved["augment"], seed=seed)
        model.fit(train, epochs=config.epochs, verbose=0, shuffle=False)

        def predict(x_held_out):
            # Plain batched calls: `model.predict` would trace a new function per fold model,
            # and TensorFlow warns about retracing from the fifth on.
            batches = data.eval_dataset(x_held_out, batch_size=max(config.batch_size, 256))
            return np.concatenate([keras.ops.convert_to_numpy(model(b, training=False))
                                   for b in batches])

        return predict

    return fit
