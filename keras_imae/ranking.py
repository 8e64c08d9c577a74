"""Which training examples are mislabelled? Rank them by how unlikely the model finds their
label, and measure a ranking against the known noise mask.

A model trained with DM/IMAE, which does not fit noisy labels, ranks them far better than a
CCE-trained one that memorised them (``README``, "Which examples are mislabelled?"). For
out-of-sample K-fold flags see :mod:`keras_imae.label_issues`.
"""

import numpy as np

from keras_imae import checks

__all__ = ["mislabel_scores", "rank_mislabelled", "ranking_quality"]

SCORES = ("prob", "loss")


def _check_score(score):
    if score not in SCORES:
        raise ValueError(
            f"Invalid value for argument `score`. Expected 'prob' or 'loss'. Received: "
            f"score={score!r}"
        )


def rank_mislabelled(model, x, labels, *, batch_size=256, score="prob"):
    """Ranks training examples by how unlikely ``model`` finds their given label.

    ``score="prob"``: ``s_i = 1 - p_i(y_i)``; ``score="loss"``: ``s_i = -log p_i(y_i)``, the
    rank-by-CE-loss baseline. Both are decreasing in ``p(y_i)`` and give the *same* ranking;
    what matters is the model: a DM/IMAE-trained model, which does not fit noisy labels,
    ranks them far better than a CCE-trained one that memorised them. (A DM emphasis weight
    is not offered as a score: ``exp(β p^λ (1 - p))`` is small both for ``p → 0`` and
    ``p → 1``, so it cannot tell mislabelled from well-fitted examples.)

    Args:
        model: A Keras model returning logits ``[N, K]``.
        x: Inputs (anything ``model.predict`` takes that yields ``x`` only, in order).
        labels: Given labels, integer ids ``[N]``/``[N, 1]`` or one-hot ``[N, K]``.
        batch_size: Prediction batch size (for array input).
        score: ``"prob"`` or ``"loss"``.

    Returns:
        ``(indices, scores)``: ``indices`` the example indices, most suspicious first (stable
        for ties); ``scores[i]`` example ``i``'s score (original order; higher = more
        suspicious), float64.
    """
    _check_score(score)
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return mislabel_scores(logits, labels, score=score)


def mislabel_scores(logits, labels, *, score="prob"):
    """:func:`rank_mislabelled` from already computed logits ``[N, K]``.

    Returns:
        ``(indices, scores)`` as :func:`rank_mislabelled`.
    """
    _check_score(score)
    logits = np.asarray(logits, "float64")
    labels = np.asarray(labels)
    ids = checks.label_ids(labels, one_hot=True)
    if logits.ndim != 2 or len(ids) != len(logits):
        raise ValueError(
            "`labels` must give one label per example of `x`. Received: "
            f"labels.shape={labels.shape}, predictions.shape={logits.shape}"
        )
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z[np.arange(len(ids)), ids] - np.log(np.exp(z).sum(axis=-1))
    scores = -log_p if score == "loss" else -np.expm1(log_p)
    return np.argsort(-scores, kind="stable"), scores


def _average_ranks(values):
    """1-based ranks of ``values`` with ties given their average rank (as in Mann-Whitney)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def ranking_quality(scores_or_ranking, is_noisy):
    """How well a mislabel ranking finds the truly noisy examples.

    With ``k`` the number of truly noisy examples, ``precision_at_k`` is the fraction of
    the top-``k`` that are noisy and ``recall_at_k`` the fraction of noisy examples in the
    top-``k`` (equal, since ``k`` is the number of noisy examples; both kept for clarity).
    ``roc_auc`` is the probability that a random noisy example scores above a random clean one
    (ties count 1/2), computed exactly by the Mann-Whitney rank formula
    ``(R_noisy - n_noisy (n_noisy + 1) / 2) / (n_noisy n_clean)`` with average ranks for ties.

    Args:
        scores_or_ranking: Float scores per example (higher = more suspicious, as returned
            by :func:`rank_mislabelled`), or an integer array: a permutation of example
            indices, most suspicious first.
        is_noisy: Boolean mask, ``True`` for mislabelled examples.

    Returns:
        ``dict(precision_at_k, recall_at_k, roc_auc, k)``.
    """
    is_noisy = np.asarray(is_noisy).astype(bool).reshape(-1)
    values = np.asarray(scores_or_ranking).reshape(-1)
    n = len(is_noisy)
    if len(values) != n:
        raise ValueError(
            "`scores_or_ranking` and `is_noisy` must have the same length. Received: "
            f"{len(values)} and {n}"
        )
    if np.issubdtype(values.dtype, np.integer):
        if not np.array_equal(np.sort(values), np.arange(n)):
            raise ValueError(
                "An integer `scores_or_ranking` must be a permutation of the example indices "
                "(most suspicious first). Pass float scores otherwise."
            )
        scores = np.empty(n, "float64")
        scores[values] = np.arange(n, 0, -1)
    else:
        scores = values.astype("float64")
    k = int(is_noisy.sum())
    if k == 0 or k == n:
        raise ValueError(
            "`is_noisy` must contain both noisy and clean examples. "
            f"Received: {k} noisy of {n}"
        )
    top = np.argsort(-scores, kind="stable")[:k]
    hits = int(is_noisy[top].sum())
    ranks = _average_ranks(scores)
    auc = (ranks[is_noisy].sum() - k * (k + 1) / 2.0) / (k * (n - k))
    return {"precision_at_k": hits / k, "recall_at_k": hits / k, "roc_auc": float(auc), "k": k}
