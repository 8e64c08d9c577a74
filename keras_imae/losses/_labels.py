"""Class ids of a batch as a tensor, checked: what every loss and ``RobustModel`` reads.

Internal. The numpy counterpart is ``keras_imae._checks.label_ids``. Two differences the graph
needs: integer-valued *float* ids are accepted (Keras' ``Loss.__call__`` and ``compile`` hand
labels over as floats), and values are checked with an in-graph assertion
(``tf.debugging.Assert``) rather than a Python ``if``.
"""

import keras
import numpy as np
from keras import ops

from keras_imae import _backend

__all__ = ["tensor_label_ids"]


def _assert(condition, data, summarize=None):
    """Fails when the scalar boolean ``condition`` is false.

    TensorFlow: ``tf.debugging.Assert`` (``InvalidArgumentError``, also inside ``tf.function``
    and XLA). Other backends: ``ValueError`` when ``condition`` is concrete (eager calls);
    inside ``jax.jit`` -- as in ``fit`` -- values are abstract and are *not* checked.
    """
    if _backend.is_tensorflow():
        _backend.tf().debugging.Assert(condition, data, summarize=summarize)
        return
    if _backend.is_jax_tracer(condition):
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
