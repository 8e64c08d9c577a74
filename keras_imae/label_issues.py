"""Which training labels are wrong? Out-of-sample probabilities, a score and a flag per example.

The workflow (what ``scripts/find_label_issues.py`` runs; step 1 lives in
:mod:`keras_imae.kfold`):

1. **Out-of-sample probabilities** (:func:`cross_val_probabilities`). The training set is
   split into ``K`` folds, stratified by the given label (:func:`assign_folds`). For each fold
   a fresh model is trained with a noise-robust loss on the other ``K - 1`` folds and
   predicts the held-out fold, so every example's ``p(·|x_i)`` comes from a model that never
   saw it (or its label). A model scored on its own training examples has memorised part of
   their wrong labels and cannot see them; under 40% pair-flip noise the default DM run fits
   93% of them.
2. **Score** (higher = more likely wrong): the out-of-sample self-confidence complement
   ``s_i = 1 - p_i(y_i)``, with ``y_i`` the given label. It is the ranking whose ROC-AUC we
   report.
3. **Flag rule**, confident learning (Northcutt et al. 2021): per-class thresholds
   ``t_j = mean_{i: y_i = j} p_i(j)``, the average self-confidence of the examples labelled
   ``j``. Example ``i`` is *confidently* in the classes ``C_i = {j : p_i(j) >= t_j}``; with
   ``ĵ_i = argmax_{j in C_i} p_i(j)``, it is an issue iff ``C_i`` is not empty and
   ``ĵ_i != y_i``, and its suggested label is then ``ĵ_i`` (the given label otherwise). These
   are the off-diagonal entries of the confident joint, cleanlab's
   ``filter_by="confident_learning"``. The per-class thresholds adapt to each class's own
   confidence: with soft probabilities (a model that partly learned the noisy posterior, e.g.
   ~0.6 / 0.4 for every class under 40% pair-flip noise) a fixed threshold would not fit all
   classes.

Measured choices (digits and MNIST-1D, 40% symmetric and pair-flip noise; the README's
"Finding the wrong labels" has the numbers). The loss matters most: DM with ``λ = 2``
(emphasis mode ``λ/(λ+1) = 2/3``) gave the best pair-flip results on both data sets (digits,
β = 12: F1 / ROC-AUC 0.85 / 0.94 vs 0.61 / 0.72 for DM's class default ``λ = 0.5, β = 8``,
0.81 / 0.93 for IMAE, 0.65 / 0.78 for GCE), and ``β = 8`` rather than 12 keeps CNN fold models
on translated inputs from holding class pairs on the wrong side (MNIST-1D as images, pair-flip:
F1 0.83 vs 0.67), hence :data:`LOSS_DEFAULTS`. On these robust
probabilities (default DM) the rule hardly matters: confident learning, cleanlab's
``prune_by_noise_rate`` and "argmax differs from the label" were within 0.01 F1 of each
other; on logistic-regression probabilities they differed by up to 0.07 in both directions.
Confident learning needs no noise-rate estimate and adapts to soft probabilities, so it is
the one rule offered. The self-confidence score ranked as well as the normalised margin
``max_{k != y} p_k - p_y`` on digits (±0.004 ROC-AUC) and better on MNIST-1D (+0.03 to
+0.06).

References:
    C. G. Northcutt, L. Jiang, I. L. Chuang. "Confident Learning: Estimating Uncertainty in
    Dataset Labels." Journal of Artificial Intelligence Research 70, 2021.
    X. Wang, Y. Hua, E. Kodirov, D. A. Clifton, N. M. Robertson. "Derivative Manipulation for
    General Example Weighting." arXiv:1905.11233, 2019.
"""

import collections
import csv
import dataclasses
import io
import os

import numpy as np

from keras_imae import checks, data, files, noise, ranking, recipe, training
# Step 1, re-exported: label_issues.cross_val_probabilities etc. are this module's API.
from keras_imae.kfold import (DEFAULT_EPOCHS, DEFAULT_FOLDS, LOSS_DEFAULTS,  # noqa: F401
                              assign_folds, cross_val_probabilities, fold_loss, make_fit)

__all__ = [
    "COLUMNS",
    "DEFAULT_EPOCHS",
    "DEFAULT_FOLDS",
    "LOSS_DEFAULTS",
    "LabelIssues",
    "RETRAIN_MODES",
    "assign_folds",
    "class_thresholds",
    "cross_val_probabilities",
    "find_label_issues",
    "fold_loss",
    "format_summary",
    "given_labels",
    "issue_quality",
    "make_fit",
    "plot_suspects",
    "run",
    "validate",
    "write_csv",
]

COLUMNS = ("index", "given_label", "suggested_label", "score", "is_issue")
CSV_FILENAME = "label_issues.csv"
PNG_FILENAME = "label_issues.png"
SUMMARY_FILENAME = "summary.json"
DEFAULT_NUM_SUSPECTS = 36
RETRAIN_MODES = ("none", "remove", "relabel")

LabelIssues = collections.namedtuple(
    "LabelIssues", ["scores", "is_issue", "suggested_labels", "thresholds"])
LabelIssues.__doc__ = """What :func:`find_label_issues` returns, one entry per example.

Attributes:
    scores: ``(N,)`` float64, ``1 - p_i(y_i)``; higher = more likely wrong.
    is_issue: ``(N,)`` bool, the confident-learning flag.
    suggested_labels: ``(N,)`` int64, the confident class for flagged examples, the given
        label otherwise.
    thresholds: ``(K,)`` float64 per-class thresholds ``t_j`` (``inf`` for a class no example
        is labelled with).
"""


# --------------------------------------------------------------------------------------------
# Score, rule, quality
# --------------------------------------------------------------------------------------------
def class_thresholds(probs, labels):
    """Confident learning's per-class thresholds ``t_j = mean_{i: y_i = j} p_i(j)``.

    Args:
        probs: ``(N, K)`` out-of-sample probabilities.
        labels: ``(N,)`` given labels.

    Returns:
        ``(K,)`` float64; ``inf`` for a class that no example is labelled with.

    Example:
        >>> class_thresholds(np.array([[.9, .1], [.5, .5], [.2, .8]]), [0, 0, 1]).tolist()
        [0.7, 0.8]
    """
    probs = np.asarray(probs, "float64")
    labels = checks.label_ids(labels, probs.shape[-1])
    counts = np.bincount(labels, minlength=probs.shape[1])
    sums = np.zeros(probs.shape[1])
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def _check_probs(probs, labels):
    probs = np.asarray(probs, "float64")
    if probs.ndim != 2 or probs.shape[1] < 2 or not np.all(np.isfinite(probs)) or np.any(
        probs < 0
    ):
        raise ValueError(
            "Invalid value for argument `probs`. Expected finite non-negative probabilities "
            f"of shape (N, K), K >= 2. Received: probs with shape {probs.shape}")
    labels = checks.label_ids(labels, probs.shape[1])
    if len(labels) != len(probs):
        raise ValueError(
            "Invalid value for argument `labels`. Expected one label per row of `probs` "
            f"({len(probs)}). Received: {len(labels)} labels")
    return probs, labels.astype(np.int64)


def find_label_issues(labels, probs):
    """Score, flag and suggest a label for every example (the rule in the module docstring).

    ``s_i = 1 - p_i(y_i)``; ``t_j = mean_{y_i = j} p_i(j)``; ``C_i = {j : p_i(j) >= t_j}``;
    ``is_issue_i = C_i ≠ ∅ and argmax_{j ∈ C_i} p_i(j) ≠ y_i`` (ties: lowest class id).

    Args:
        labels: ``(N,)`` given (noisy) integer labels.
        probs: ``(N, K)`` out-of-sample probabilities (:func:`cross_val_probabilities`).

    Returns:
        A :class:`LabelIssues`.

    Example:
        >>> p = np.array([[.9, .1], [.8, .2], [.3, .7], [.9, .1]])
        >>> r = find_label_issues([0, 0, 1, 1], p)
        >>> r.is_issue.tolist(), r.suggested_labels.tolist(), r.scores.round(2).tolist()
        ([False, False, False, True], [0, 0, 1, 0], [0.1, 0.2, 0.3, 0.9])

    References:
        C. G. Northcutt, L. Jiang, I. L. Chuang. "Confident Learning: Estimating Uncertainty
        in Dataset Labels." JAIR 70, 2021.
    """
    probs, labels = _check_probs(probs, labels)
    rows = np.arange(len(labels))
    scores = 1.0 - probs[rows, labels]
    thresholds = class_thresholds(probs, labels)
    confident = probs >= thresholds[None, :]
    best = np.where(confident, probs, -np.inf).argmax(axis=-1)
    is_issue = confident.any(axis=-1) & (best != labels)
    suggested = np.where(is_issue, best, labels).astype(np.int64)
    return LabelIssues(scores, is_issue, suggested, thresholds)


def issue_quality(is_issue, scores, is_noisy):
    """Flags and scores against the true noise mask.

    ``precision = TP / #flagged``, ``recall = TP / #noisy``, ``f1 = 2PR / (P + R)`` (0 when
    nothing is right), ``roc_auc`` of ``scores`` (``ranking.ranking_quality``: the probability
    that a random mislabelled example scores above a random correct one).

    Returns:
        ``dict(precision, recall, f1, roc_auc, flagged, noisy)``.
    """
    is_issue = np.asarray(is_issue, bool).reshape(-1)
    is_noisy = np.asarray(is_noisy, bool).reshape(-1)
    if is_issue.shape != is_noisy.shape:
        raise ValueError(
            "`is_issue` and `is_noisy` must have the same length. Received: "
            f"{len(is_issue)} and {len(is_noisy)}")
    hits = int((is_issue & is_noisy).sum())
    precision = hits / max(int(is_issue.sum()), 1)
    recall = hits / max(int(is_noisy.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    auc = ranking.ranking_quality(np.asarray(scores, "float64"), is_noisy)["roc_auc"]
    return {"precision": precision, "recall": recall, "f1": f1, "roc_auc": auc,
            "flagged": int(is_issue.sum()), "noisy": int(is_noisy.sum())}


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
    return files.atomic_write(path, lambda f: f.write(buffer.getvalue()))


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
    return files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100),
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
                               **{name: None for name in recipe.HPARAM_FIELDS})


def validate(config, *, folds=DEFAULT_FOLDS, retrain="none", retrain_loss=None):
    """Checks that need no data: the loss and its hyper-parameters, ``folds``, ``retrain``.

    Returns the fold models' loss object (:func:`fold_loss`).
    """
    if config.noise_type not in training.NOISE_TYPES:
        raise ValueError(
            f"Invalid value for `noise_type`. Expected one of {list(training.NOISE_TYPES)}. "
            f"Received: noise_type={config.noise_type!r}")
    checks.integer("folds", folds, low=2)
    if retrain not in RETRAIN_MODES:
        raise ValueError(
            f"Invalid value for argument `retrain`. Expected one of {list(RETRAIN_MODES)}. "
            f"Received: retrain={retrain!r}")
    retrain_config = _retrain_config(config, retrain_loss)
    recipe.loss_from_config(retrain_config)  # unknown name: raises
    if config.warmup_epochs is not None and retrain == "none":
        raise ValueError(
            "`warmup_epochs` applies to the retraining runs (`retrain`) only: the fold models "
            f"train without a warm-up. Received: warmup_epochs={config.warmup_epochs}, "
            f"retrain={retrain!r}")
    recipe.warmup_epochs(retrain_config)  # bad, or no emphasis: raises
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
    if config.noise_type == "none":
        return y.copy(), None, None, {"dataset": dataset.name, "noise_type": "none"}
    noisy, is_noisy = noise.corrupt_labels(
        y, k, config.noise_type, config.noise_rate, config.noise_seed,
        dataset=dataset.name, superclasses=dataset.superclasses)
    meta = {"dataset": dataset.name, "noise_type": config.noise_type,
            "noise_rate": config.noise_rate, "noise_seed": config.noise_seed}
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
        subset = dataclasses.replace(dataset, x_train=dataset.x_train[index],
                                     y_train=truth[index])
        try:
            run = training.run(dataclasses.replace(
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
            ``config.loss`` as ``scripts/train.py`` would use it (for DM: ``λ = 0.5, β = 8``
            unless set -- :data:`LOSS_DEFAULTS` apply to the K-fold models only).
        num_suspects: tiles on the contact sheet.
        dataset: an already loaded dataset (tests); default ``data.load_dataset(config.dataset)``.
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
        dataset = data.load_dataset(config.dataset, data_dir=config.data_dir)
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
        training.write_json(written["summary"], {**results, "files": written})
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
