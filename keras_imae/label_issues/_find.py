"""Which labels are wrong, from out-of-sample probabilities: a score and a flag per example.

The workflow (what ``scripts/find_label_issues.py`` runs; step 1 lives in
:mod:`keras_imae.label_issues._kfold`):

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

Measured choices (digits and MNIST-1D, 40% symmetric and pair-flip noise; ``docs/label_issues.md``
"Finding the wrong labels" has the numbers). The loss matters most: DM with ``λ = 2``
(emphasis mode ``λ/(λ+1) = 2/3``) gave the best pair-flip results on both data sets (digits,
in a comparison run at ``β = 12``: F1 / ROC-AUC 0.85 / 0.94 vs 0.61 / 0.72 for DM's class
default ``λ = 0.5, β = 8``, 0.81 / 0.93 for IMAE, 0.65 / 0.78 for GCE), and ``β = 8``
rather than a sharper emphasis keeps CNN fold models on translated inputs from holding class
pairs on the wrong side (MNIST-1D as images, pair-flip: F1 0.83 at ``β = 8`` vs 0.67 at
``β = 12``; digits, 5 folds: 0.861 / 0.957 vs 0.781 / 0.918 at ``β = 16``), hence the fold
models' named recipe ``"folds"`` (:func:`keras_imae.config.recipe.table`: ``λ = 2, β = 8``,
no warm-up). On these robust
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

import numpy as np

from keras_imae import _checks as checks
from keras_imae.noise import ranking_quality

__all__ = ["LabelIssues", "class_thresholds", "find_label_issues", "issue_quality"]

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


def find_label_issues(labels, pred_probs):
    """Score, flag and suggest a label for every example (the rule in the module docstring).

    ``s_i = 1 - p_i(y_i)``; ``t_j = mean_{y_i = j} p_i(j)``; ``C_i = {j : p_i(j) >= t_j}``;
    ``is_issue_i = C_i ≠ ∅ and argmax_{j ∈ C_i} p_i(j) ≠ y_i`` (ties: lowest class id).

    Args:
        labels: ``(N,)`` given (noisy) integer labels.
        pred_probs: ``(N, K)`` out-of-sample probabilities (non-negative rows summing to 1
            within ``keras_imae._checks.PROB_SUM_TOLERANCE``, as cleanlab requires), from any
            model (:func:`cross_val_probabilities` makes them by K-fold training).

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
    probs, labels = checks.probability_rows(pred_probs, labels)
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
    nothing is right), ``roc_auc`` of ``scores`` (``noise.ranking_quality``: the probability
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
    auc = ranking_quality(np.asarray(scores, "float64"), is_noisy)["roc_auc"]
    return {"precision": precision, "recall": recall, "f1": f1, "roc_auc": auc,
            "flagged": int(is_issue.sum()), "noisy": int(is_noisy.sum())}
