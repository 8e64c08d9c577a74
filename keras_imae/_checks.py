"""Argument and label checks shared by every layer: one checker of each kind (numpy only).

Internal (not part of the public API). Every error names the argument and the value, as
Keras does: "Invalid value for argument `beta`. Expected a finite float >= 0. Received:
beta=-1".

- :func:`number` and :func:`integer`: scalar hyper-parameters and sizes.
- :func:`label_ids`: numpy labels (data, noise, rankings, monitors) -> 1-D integer class ids.

Their counterpart on tensors, inside a loss or a train step, is
``keras_imae.losses.tensor_label_ids``.
"""

import math

import numpy as np

__all__ = ["number", "integer", "label_ids", "probability_rows"]

PROB_SUM_TOLERANCE = 1e-3  # |sum of a pred_probs row - 1| above this is not a distribution


def _bound(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(name, value, *, low=0.0, high=math.inf, low_open=False, high_open=False):
    """``float(value)`` if it is a real number in the interval, else ``ValueError``.

    The interval is ``[low, high]``; ``low_open``/``high_open`` exclude an end. NaN, infinite
    values, bools and strings are refused.
    """
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        if high == math.inf:
            expected = f"a finite float {'>' if low_open else '>='} {_bound(low)}"
        else:
            expected = (f"a float in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}"
                        f"{')' if high_open else ']'}")
        raise ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                         f"Received: {name}={value!r}")
    return float(value)


def integer(name, value, *, low=None, high=None):
    """``int(value)`` if it is an integer (not a bool) in ``[low, high]``, else ``ValueError``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if ok:
        ok = (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if low is None and high is None:
            expected = "an integer"
        elif low == 1 and high is None:
            expected = "a positive integer"
        elif high is None:
            expected = f"an integer >= {low}"
        else:
            expected = f"an integer in [{low}, {high}]"
        raise ValueError(f"Invalid value for argument `{name}`. Expected {expected}. "
                         f"Received: {name}={value!r}")
    return int(value)


def label_ids(labels, num_classes=None, name="labels", *, one_hot=False):
    """Labels as a 1-D integer array of class ids; ``[N, 1]`` is squeezed.

    With ``one_hot=True`` a one-hot ``[N, K]`` array (0/1 entries, one 1 per row) is also
    accepted and converted by arg-max (int64). Integer ids keep their dtype. Float ids are
    refused: data labels are integers.

    Raises:
        ValueError: not integer ids (or one-hot rows), or (when ``num_classes`` is given) an
            id outside ``[0, num_classes)``; the message names ``name`` and the first
            offending value.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif one_hot and labels.ndim == 2 and labels.shape[1] > 1:
        rows_ok = np.all((labels == 0) | (labels == 1), axis=1) & (labels.sum(axis=1) == 1)
        if not rows_ok.all():
            row = int(np.argmin(rows_ok))
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected class ids or one-hot rows "
                f"(soft labels are not supported). Received: {name}[{row}]={labels[row]}")
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected {num_classes} one-hot "
                f"columns. Received: {name} with shape {labels.shape}")
        return labels.argmax(axis=1).astype(np.int64)
    if labels.ndim != 1 or not (
        np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a 1-D array of integer class ids"
            f"{' or one-hot rows' if one_hot else ''}. Received: {name} with shape "
            f"{labels.shape} and dtype {labels.dtype}"
        )
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise ValueError(
                f"Invalid value for argument `{name}`. Expected class ids in "
                f"[0, {num_classes}). Received: {name}[{int(np.argmax(bad))}]={labels[bad][0]}"
            )
    return labels


def probability_rows(probs, labels):
    """``(probs, labels)``: ``pred_probs`` as a float64 ``(N, K)`` array of probability rows
    (finite, non-negative, each summing to 1 within :data:`PROB_SUM_TOLERANCE`, ``K >= 2``)
    and one integer label id per row, as int64; else ``ValueError`` naming the first bad row.
    """
    probs = np.asarray(probs, "float64")
    if probs.ndim != 2 or probs.shape[1] < 2 or not np.all(np.isfinite(probs)) or np.any(
        probs < 0
    ):
        raise ValueError(
            "Invalid value for argument `pred_probs`. Expected finite non-negative "
            f"probabilities of shape (N, K), K >= 2. Received: pred_probs with shape "
            f"{probs.shape}")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROB_SUM_TOLERANCE)
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            "Invalid value for argument `pred_probs`. Expected each row to be a probability "
            f"distribution (summing to 1 within {PROB_SUM_TOLERANCE:g}; pass softmax outputs, "
            f"not logits or scores). Received: pred_probs[{row}]={probs[row]} summing to "
            f"{sums[row]:g} ({len(bad)} such rows)")
    labels = label_ids(labels, probs.shape[1])
    if len(labels) != len(probs):
        raise ValueError(
            "Invalid value for argument `labels`. Expected one label per row of `pred_probs` "
            f"({len(probs)}). Received: {len(labels)} labels")
    return probs, labels.astype(np.int64)
