"""Which training examples are mislabelled? Rank them by how unlikely the model finds their
label, and measure a ranking against the known noise mask.

A model trained with DM/IMAE, which does not fit noisy labels, ranks them far better than a
CCE-trained one that memorised them. For out-of-sample flags see
:func:`keras_imae.label_issues.find_label_issues`.
"""

import numpy as np

from keras_imae import _checks as checks
from keras_imae.noise import ranking_quality  # re-exported: the measure of a ranking

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
