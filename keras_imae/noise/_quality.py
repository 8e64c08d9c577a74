"""How well a score finds the noisy examples of a corruption: precision@k and exact ROC-AUC."""

import numpy as np

__all__ = ["ranking_quality"]


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
        scores_or_ranking: Float scores per example (higher = more suspicious, as
            :func:`keras_imae.label_issues.find_label_issues` scores them), or an integer
            array: a permutation of example indices, most suspicious first.
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
