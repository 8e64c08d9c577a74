"""Out-of-sample class probabilities by K-fold training (numpy; any model).

The training set is split into ``K`` folds, stratified by the given label
(:func:`assign_folds`). For each fold a fresh model is trained on the other ``K - 1`` folds
and predicts the held-out fold, so every example's ``p(·|x_i)`` comes from a model that never
saw it (or its label). The model is whatever ``fit`` trains: ``make_fit`` in
:mod:`keras_imae.label_issues._workflow` builds the robust fold models of
``scripts/find_label_issues.py``.
"""

import warnings

import numpy as np

from keras_imae import _checks as checks

__all__ = ["DEFAULT_FOLDS", "assign_folds", "cross_val_probabilities"]

DEFAULT_FOLDS = 5


def assign_folds(labels, folds, seed):
    """A fold id per example, stratified by label and drawn from ``seed``.

    Each class's examples are permuted with ``numpy.random.Generator(PCG64(seed))`` and dealt
    round-robin to the folds, continuing where the previous class stopped, so fold sizes differ
    by at most one and every class is spread evenly. Same inputs, same folds on any machine.

    Args:
        labels: ``(N,)`` integer labels to stratify by (the given, noisy ones).
        folds: number of folds ``K``, ``2 <= K <= N``.
        seed: integer seed.

    Returns:
        ``(N,)`` int64 fold ids in ``[0, K)``.

    Example:
        >>> assign_folds([0, 0, 1, 1], 2, seed=0).tolist()
        [0, 1, 0, 1]
    """
    labels = checks.label_ids(labels)
    folds = checks.integer("folds", folds, low=2, high=len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        small = classes[counts < folds]
        warnings.warn(
            f"{len(small)} classes have fewer examples than the {folds} folds (class "
            f"{small[0]}: {counts[counts < folds][0]}): their examples are scored by models that "
            "saw even fewer of them (none, for a class of one). Use fewer folds.",
            UserWarning, stacklevel=2)
    rng = np.random.Generator(np.random.PCG64(seed))
    fold_of = np.empty(len(labels), np.int64)
    dealt = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return fold_of


def _softmax(logits):
    z = np.asarray(logits, "float64")
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_val_probabilities(x, labels, num_classes, *, fit, folds=DEFAULT_FOLDS, seed=0):
    """Out-of-sample class probabilities by K-fold training.

    For each fold ``f``: ``predict = fit(x[train_f], labels[train_f], f)`` with ``train_f``
    the examples *not* in fold ``f``; then ``p[i] = softmax(predict(x[i]))`` for the examples
    ``i`` in fold ``f``. No example is scored by a model whose training data contained it.

    Args:
        x: ``(N, ...)`` inputs (numpy).
        labels: ``(N,)`` given (noisy) integer labels in ``[0, num_classes)``.
        num_classes: ``K``.
        fit: ``fit(x_train, labels_train, fold) -> predict``, where ``predict(x)`` returns
            logits ``(n, K)``. :func:`make_fit` builds one from a ``RunConfig``; any model
            works (scikit-learn: return ``lambda x: np.log(clf.predict_proba(x))``).
        folds: ``K``-fold count, ``>= 2``.
        seed: seed of the fold assignment (:func:`assign_folds`).

    Returns:
        ``(probs, fold_of)``: ``(N, K)`` float64 probabilities and ``(N,)`` fold ids.
    """
    labels = checks.label_ids(labels, num_classes)
    x = np.asarray(x)
    if len(x) != len(labels):
        raise ValueError(
            "Invalid value for argument `labels`. Expected one label per example of `x` "
            f"({len(x)}). Received: {len(labels)} labels")
    fold_of = assign_folds(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes))
    for fold in range(int(folds)):
        held_out = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        predict = fit(x[train], labels[train], fold)
        logits = np.asarray(predict(x[held_out]))
        if logits.shape != (len(held_out), num_classes):
            raise ValueError(
                f"`fit` returned a predictor giving shape {logits.shape} for {len(held_out)} "
                f"examples. Expected logits of shape ({len(held_out)}, {num_classes}).")
        probs[held_out] = _softmax(logits)
    return probs, fold_of
