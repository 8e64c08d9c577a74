"""Argument and label checks shared by every module: one checker of each kind.

Internal (not part of the public API). Every error names the argument and the value, as
Keras does: "Invalid value for argument `beta`. Expected a finite float >= 0. Received:
beta=-1".

- :func:`number` and :func:`integer`: scalar hyper-parameters and sizes.
- :func:`label_ids`: numpy labels (data, noise, rankings, monitors) -> 1-D integer class ids.
- :func:`tensor_label_ids`: the same inside a loss or a train step, on tensors. It differs in
  two ways the graph needs: integer-valued *float* ids are accepted (Keras' ``Loss.__call__``
  and ``compile`` hand labels over as floats), and values are checked with an in-graph
  assertion (``tf.debugging.Assert``) rather than a Python ``if``.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

__all__ = ["number", "integer", "label_ids", "tensor_label_ids", "is_jax_tracer"]


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
        if low == 1 and high is None:
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


# ----------------------------------------------------------------------------- tensors


def _tensorflow():
    return keras.backend.backend() == "tensorflow"


def is_jax_tracer(x):
    """Whether ``x`` is abstract inside a JAX trace (``jit``, ``grad``, ``eval_shape``)."""
    if keras.backend.backend() != "jax":
        return False
    import jax  # only reached on the JAX backend

    return isinstance(x, jax.core.Tracer)


def _assert(condition, data, summarize=None):
    """Fails when the scalar boolean ``condition`` is false.

    TensorFlow: ``tf.debugging.Assert`` (``InvalidArgumentError``, also inside ``tf.function``
    and XLA). Other backends: ``ValueError`` when ``condition`` is concrete (eager calls);
    inside ``jax.jit`` -- as in ``fit`` -- values are abstract and are *not* checked.
    """
    if _tensorflow():
        tf.debugging.Assert(condition, data, summarize=summarize)
        return
    if is_jax_tracer(condition):
        return
    if not bool(ops.convert_to_numpy(condition)):
        raise ValueError(" ".join(
            item if isinstance(item, str)
            else np.array2string(ops.convert_to_numpy(item), threshold=summarize or 1000)
            for item in data))


def _rank(x):
    shape = x.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)  # tf.TensorShape or tuple


def tensor_label_ids(y_true, logits):
    """Integer class ids ``[B]`` (int32) from ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]``.

    ``logits`` (``[B, K]``) gives ``K``. Shapes are checked statically (``ValueError``) on
    every backend; values (integers in ``[0, K)``, exact one-hot rows) by an assertion, see
    :func:`_assert`.
    """
    if _rank(logits) != 2:
        raise ValueError(
            "Expected `y_pred` of shape [batch, num_classes]. "
            f"Received: y_pred.shape={logits.shape}"
        )
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < 2:
        raise ValueError(
            f"Expected at least 2 classes in `y_pred`. Received: y_pred.shape={logits.shape}"
        )
    y_true = ops.convert_to_tensor(y_true)
    k = ops.shape(logits)[-1]
    rank = _rank(y_true)
    last = y_true.shape[-1] if rank else None
    if rank == 2 and last is not None and last == num_classes:
        y = ops.cast(y_true, "float32")
        is_one_hot = ops.all(
            ops.logical_and(
                ops.all(ops.logical_or(ops.equal(y, 0.0), ops.equal(y, 1.0)), axis=-1),
                ops.equal(ops.sum(y, axis=-1), 1.0),
            )
        )
        _assert(
            is_one_hot,
            ["`y_true` of the logits' shape must be one-hot (soft labels, e.g. label "
             "smoothing, are not supported: the emphasis is defined for one labelled class)."],
        )
        return ops.cast(ops.argmax(y, axis=-1), "int32")
    if rank == 2 and last == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif rank != 1:
        raise ValueError(
            "Expected `y_true` of shape [batch], [batch, 1] (class ids) or [batch, num_classes] "
            f"(one-hot). Received: y_true.shape={y_true.shape}, y_pred.shape={logits.shape}"
        )
    if keras.backend.is_float_dtype(y_true.dtype):
        y = ops.cast(y_true, "float32")
        _assert(
            ops.all(ops.equal(y, ops.round(y))),
            ["`y_true` class ids must be integers. Received:", y],
            summarize=8,
        )
    ids = ops.cast(y_true, "int32")
    in_range = ops.all(ops.logical_and(ids >= 0, ids < k))
    _assert(
        in_range,
        ["`y_true` class ids must lie in [0, num_classes). num_classes:", k, "ids:", ids],
        summarize=16,
    )
    return ids
