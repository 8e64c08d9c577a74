"""Out-of-sample class probabilities by K-fold training (numpy; any model).

The training set is split into ``K`` folds, stratified by the given label
(:func:`assign_folds`). For each fold a fresh model is trained on the other ``K - 1`` folds
and predicts the held-out fold, so every example's ``p(·|x_i)`` comes from a model that never
saw it (or its label). The model is whatever ``fit`` trains:
:func:`keras_imae.label_issues.keras_fit` for any Keras model, and the workflow's own robust
fold models for ``scripts/find_label_issues.py --method=kfold``.
"""

import collections
import warnings

import numpy as np

from keras_imae import _checks as checks

__all__ = ["DEFAULT_FOLDS", "Part", "assign_folds", "cross_val_probabilities"]

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


class Part(collections.namedtuple("Part", ["dataset", "ids"])):
    """Some examples of a :class:`keras_imae.data.Dataset`'s training split, by id: what
    :func:`cross_val_probabilities` hands ``fit`` and ``predict`` for a dataset (streamed or
    not) where it would hand arrays ``x[ids]``."""

    def __len__(self):
        return len(self.ids)


def _is_dataset(x):
    return hasattr(x, "train") and hasattr(x, "test")


def _take(x, ids):
    return Part(x, ids) if _is_dataset(x) else x[ids]


def cross_val_probabilities(x, labels, num_classes, *, fit, folds=DEFAULT_FOLDS, seed=0,
                            verbose=0):
    """Out-of-sample class probabilities by K-fold training.

    For each fold ``f``: ``predict = fit(x[train_f], labels[train_f], f)`` with ``train_f``
    the examples *not* in fold ``f``; then ``p[i] = softmax(predict(x[i]))`` for the examples
    ``i`` in fold ``f``. No example is scored by a model whose training data contained it.

    Args:
        x: ``(N, ...)`` inputs (numpy), or a :class:`keras_imae.data.Dataset` (its training
            split, in memory or streamed): ``fit`` and ``predict`` then get a :class:`Part`
            (the dataset and the ids) instead of ``x[ids]``.
        labels: ``(N,)`` given (noisy) integer labels in ``[0, num_classes)``.
        num_classes: ``K``.
        fit: ``fit(x_train, labels_train, fold) -> predict``, where ``predict(x)`` returns
            logits ``(n, K)``: :func:`keras_imae.label_issues.keras_fit` builds one from any
            Keras model builder; any model works (scikit-learn: return
            ``lambda x: np.log(clf.predict_proba(x))``).
        folds: ``K``-fold count, ``>= 2``.
        seed: seed of the fold assignment (:func:`assign_folds`).
        verbose: print a line per fold (the fit's own progress bars are ``fit``'s).

    Returns:
        ``(probs, fold_of)``: ``(N, K)`` float64 probabilities and ``(N,)`` fold ids.
    """
    labels = checks.label_ids(labels, num_classes)
    if not _is_dataset(x):
        x = np.asarray(x)
    size = len(x.y_train) if _is_dataset(x) else len(x)
    if size != len(labels):
        raise ValueError(
            "Invalid value for argument `labels`. Expected one label per example of `x` "
            f"({size}). Received: {len(labels)} labels")
    fold_of = assign_folds(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes))
    for fold in range(int(folds)):
        held_out = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        if verbose:
            print(f"Fold {fold + 1}/{folds}: training on {len(train)} examples, scoring "
                  f"{len(held_out)} held out", flush=True)
        predict = fit(_take(x, train), labels[train], fold)
        logits = np.asarray(predict(_take(x, held_out)))
        if logits.shape != (len(held_out), num_classes):
            raise ValueError(
                f"`fit` returned a predictor giving shape {logits.shape} for {len(held_out)} "
                f"examples. Expected logits of shape ({len(held_out)}, {num_classes}).")
        probs[held_out] = _softmax(logits)
    return probs, fold_of
