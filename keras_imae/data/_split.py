"""Seeded stratified splits: built-in train/test splits, noisy validation splits, by id."""

import collections

import numpy as np

from keras_imae import _checks as checks
from keras_imae.noise import largest_remainder

__all__ = ["MAX_CLASSES", "SPLIT_SEED", "Split", "check_labels", "classes_from_labels",
           "split_ids", "split_validation", "stratified_split"]

SPLIT_SEED = 0  # fixed seed of the built-in train/test splits (digits, single image folders)
# Most classes ``K = max label + 1`` may imply when no class list is given: a label such as
# ``y + 2**40`` is refused at once instead of growing class-sized arrays until memory runs out.
MAX_CLASSES = 100_000

Split = collections.namedtuple(
    "Split", ["x_train", "y_train", "x_val", "y_val", "train_index", "val_index"])


def check_labels(y, name, num_examples, num_classes=None):
    """``y`` as ``(num_examples,)`` int64 class ids (in ``[0, num_classes)`` if given)."""
    y = checks.label_ids(y, num_classes, name)
    if len(y) != num_examples:
        raise ValueError(
            f"Invalid value for `{name}`. Expected {num_examples} labels (one per example). "
            f"Received: {len(y)} labels")
    return y.astype(np.int64)


def classes_from_labels(labels, name):
    """``K = max label + 1`` over the label arrays ``labels``.

    Raises:
        ValueError: ``K`` above :data:`MAX_CLASSES`, naming ``name`` and the label.
    """
    top = max(int(np.max(y, initial=0)) for y in labels)
    if top >= MAX_CLASSES:
        raise ValueError(
            f"Invalid value in `{name}`: label {top} implies {top + 1:,} classes, more than "
            f"MAX_CLASSES={MAX_CLASSES:,} (keras_imae.data.MAX_CLASSES). Expected class ids "
            "0..K-1; list the classes (`class_names` in an npz, classes.txt in a TFRecord "
            "folder) to use more.")
    return top + 1


def stratified_split(y, num_holdout, seed):
    """Sorted ``(keep, holdout)`` indices; each class holds out its share of ``num_holdout``.

    Per-class counts are ``n_c * num_holdout / N`` rounded by largest remainder (ties: lower
    class id first), so they sum to ``num_holdout``; members are drawn by a seeded permutation.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    classes, class_counts = np.unique(y, return_counts=True)
    counts = largest_remainder(class_counts * num_holdout / len(y))
    holdout = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, counts)]
    holdout = np.sort(np.concatenate(holdout)) if holdout else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(y)), holdout)
    return keep, holdout


def split_ids(labels, fraction, seed):
    """``(train_ids, val_ids)``: a stratified validation split of ``fraction`` of the examples.

    Each class contributes ``fraction`` of its examples (largest-remainder rounding so the
    total is ``round(fraction * N)``), drawn with ``numpy.random.Generator(PCG64(seed))``.
    Stratify by the *noisy* labels you train on: settings and checkpoints can then be chosen
    on noisy validation accuracy, with no clean labels.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or one that leaves a side empty.
    """
    y = checks.label_ids(labels, name="labels")
    fraction = checks.number("fraction", fraction, low_open=True, high=1.0, high_open=True)
    if not 1 <= round(fraction * len(y)) < len(y):  # both sides keep an example
        raise ValueError(
            "Invalid value for argument `fraction`. Expected a float in (0, 1) leaving at "
            f"least one example on each side of {len(y)}. Received: fraction={fraction!r}")
    return stratified_split(y, round(fraction * len(y)), seed)


def split_validation(x, y, fraction, seed):
    """:func:`split_ids` applied to arrays: ``Split(x_train, y_train, x_val, y_val,
    train_index, val_index)``, indices sorted.

    Example:
        >>> s = split_validation(np.zeros((10, 2)), np.repeat([0, 1], 5), 0.2, seed=0)
        >>> s.y_val, len(s.train_index)
        (array([0, 1]), 8)
    """
    x = np.asarray(x)
    y = check_labels(y, "y", len(x))
    train, val = split_ids(y, fraction, seed)
    return Split(x[train], y[train], x[val], y[val], train, val)
