"""One prediction pass over a data set, kept as a few numbers per example, and the statistics
:class:`keras_imae.callbacks.FitMonitor` computes from it: exact fit ratios (clean fit,
memorisation), logit scale and where the loss puts its emphasis.
"""

import collections
import sys

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae import losses

__all__ = ["EMPHASIS_BANDS", "PassResult", "fit_statistics", "logit_statistics",
           "pass_logit_statistics", "predict_pass"]


def is_tf_dataset(data):
    """Whether ``data`` is a ``tf.data.Dataset`` (without importing TensorFlow)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def label_ids(y):
    """Integer class ids ``[N]`` from ids ``[N]``/``[N, 1]`` or one-hot ``[N, K]``."""
    return checks.label_ids(y, one_hot=True)


PassResult = collections.namedtuple(
    "PassResult", ["ids", "pred", "given", "clean", "max_abs", "log_p", "log_q", "top_log_odds",
                   "class_mass"])
PassResult.__doc__ = """Per-example results of one prediction pass, sorted by example id.

``pred`` predicted class ``k``, ``given``/``clean`` labels (``clean`` is ``None`` without
clean labels; -1 marks an unverified example), ``max_abs`` = ``max_j |z_j|``,
``log_p``/``log_q`` = ``log p_c`` / ``log (1 - p_c)`` of the given class ``c``,
``top_log_odds`` = ``log(p_k / (1 - p_k))`` of the predicted class (float64): six numbers
per example, never the logits. ``class_mass`` is not per example: the ``[K]`` sums
``sum_i p_ij`` of the predicted probabilities over the pass (what the rejection cap's
"labelled class alive" rule reads)."""


def _targets_of(y, count, position):
    """``(given, clean_or_None, ids)`` of one batch's targets."""
    if isinstance(y, dict):
        clean = label_ids(y["clean_label"]) if "clean_label" in y else None
        ids = np.asarray(y["id"]).reshape(-1) if "id" in y else None
        given = label_ids(y["label"])
    else:
        given, clean, ids = label_ids(y), None, None
    if ids is None:  # no ids: the position in the pass
        ids = np.arange(position, position + count)
    return given, clean, ids


def predict_pass(model, dataset):
    """One prediction pass over ``dataset`` (yielding ``(x, y)``, ``y`` labels or
    ``{"label"[, "clean_label"][, "id"]}``), accumulated by example id.

    Memory is a few numbers per example (:class:`PassResult`), not the logits, so a streamed
    training set (:func:`keras_imae.data.eval_dataset` with ``with_ids=True``) is measured
    without being materialised. Without ``"id"`` an example's id is its position in the pass.

    Raises:
        ValueError: an empty dataset, or an id seen twice.
    """
    parts, position = [], 0
    replicated = _replicated(model)
    for batch in dataset:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        if replicated:
            logits = _predict_arrays(model, x, len(x))
        else:  # the batch as it comes: no copy to numpy and back
            logits = np.asarray(model.predict_on_batch(x))
        given, clean, ids = _targets_of(y, len(logits), position)
        position += len(logits)
        parts.append(_pass_from_logits(logits, given, clean, ids))
    if not parts:
        raise ValueError("FitMonitor received an empty dataset.")
    columns = [None if col[0] is None else np.concatenate(col)
               for col in zip(*(part[:-1] for part in parts))]
    order = np.argsort(columns[0], kind="stable")
    if len(np.unique(columns[0])) != len(order):
        raise ValueError("FitMonitor: the dataset yields some example id more than once; "
                         "measure an unshuffled, unrepeated pass (e.g. streaming.eval_dataset).")
    return PassResult(*(None if col is None else col[order] for col in columns),
                      class_mass=np.sum([part.class_mass for part in parts], axis=0))


def _pass_from_logits(logits, given, clean, ids=None):
    logits = np.asarray(logits)
    log_p, log_q = _log_p_given(logits, given)
    pred = logits.argmax(-1)
    log_p_top, log_q_top = _log_p_given(logits, pred)
    return PassResult(np.arange(len(logits)) if ids is None else ids, pred, given, clean,
                      np.abs(logits).max(-1), log_p, log_q, log_p_top - log_q_top,
                      np.exp(_log_softmax(logits)).sum(0))


def _replicated(model):
    """Whether ``model`` runs under a strategy with several replicas: then
    ``predict_on_batch`` returns only this worker's share of a batch
    (``MultiWorkerMirroredStrategy``) or every local replica's prediction of the whole batch
    (``MirroredStrategy``), and ``predict``, which splits and gathers, is used instead."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    return strategy is not None and strategy.num_replicas_in_sync > 1


def _predict_arrays(model, x, batch_size):
    """Logits of ``x`` by ``predict_on_batch`` over slices: Keras' compiled predict step
    without ``predict``'s per-call set-up (data adapter, iterator, callbacks), which cost
    2-5x the prediction itself for a few thousand examples."""
    x = np.asarray(x)
    if _replicated(model):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def _check_arrays(data, who="FitMonitor"):
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            f"{who} data must be a tf.data.Dataset or a tuple (x, labels) / "
            f"(x, noisy_labels, clean_labels). Received: {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )


def _log_softmax(logits):
    z = np.asarray(logits, "float64")
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _log_p_given(logits, ids):
    """``(log p_c, log (1 - p_c))`` of the given classes, float64, without cancellation."""
    z = np.asarray(logits, "float64")
    z_c = z[np.arange(len(z)), ids]
    others = z.copy()
    others[np.arange(len(z)), ids] = -np.inf
    top = others.max(-1)
    lse_other = top + np.log(np.exp(others - top[:, None]).sum(-1))
    lse = np.logaddexp(lse_other, z_c)
    return z_c - lse, lse_other - lse


EMPHASIS_BANDS = (0.1, 0.9)  # p < 0.1 "low", 0.1 <= p <= 0.9 "mid", p > 0.9 "high"


def logit_statistics(logits, given, loss=None):
    """How saturated the model is, and where the loss puts its emphasis, on one data set.

    - ``logit_scale``: median over examples of ``max_k |z_k|``. Past ~90, float32
      probabilities are exactly 0 or 1 and every emphasis density sees only its end points.
    - ``top_class_fraction``: share of the most frequent predicted class (1.0: constant
      predictions).
    - ``emphasis_low`` / ``emphasis_mid`` / ``emphasis_high``: share of the loss's total
      emphasis ``sum_i w(p_i)`` (``p_i`` the probability of example i's given label) held by
      examples with ``p < 0.1``, ``0.1 <= p <= 0.9`` and ``p > 0.9`` -- only for losses with an
      emphasis density (``loss.log_emphasis``; DM, IMAE, CCE, MAE, GCE, SCE). Computed in
      the log domain, exact for any ``beta``.
    - ``rejected`` (losses with ``reject_margin`` R, e.g. DM's default): share of the examples
      DM's rejection cap gives no gradient at these weights -- predicted class ``k`` not the
      given one, ``log(p_k / (1 - p_k)) > R``, the given class alive (the rule of
      ``reject_margin`` in :func:`keras_imae.losses.derivative_manipulation`, with this whole
      set standing in for the batch); 0 while the warm-up keeps the cap off. With clean
      labels, ``rejected_wrong``: the share of the wrongly labelled examples that it rejects
      (the cap at work).

    Returns:
        dict of floats.
    """
    logits = np.asarray(logits)
    given = np.asarray(given)
    return pass_logit_statistics(_pass_from_logits(logits, given, None), loss)


def pass_logit_statistics(result, loss=None):
    """:func:`logit_statistics` from a :class:`PassResult` (no logits needed)."""
    out = {
        "logit_scale": float(np.median(result.max_abs)),
        "top_class_fraction": float(np.bincount(result.pred).max() / len(result.pred)),
    }
    log_emphasis = getattr(loss, "log_emphasis", None)
    if log_emphasis is not None and len(result.given):
        log_p, log_q = result.log_p, result.log_q
        log_w = np.asarray(keras.ops.convert_to_numpy(
            log_emphasis(np.exp(log_p).astype("float32"),
                         one_minus_p=np.exp(log_q).astype("float32"))), "float64")
        finite = np.isfinite(log_w)
        if finite.any():
            w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
            p = np.exp(log_p)
            low, high = EMPHASIS_BANDS
            total = w.sum()
            out["emphasis_low"] = float(w[p < low].sum() / total)
            out["emphasis_mid"] = float(w[(p >= low) & (p <= high)].sum() / total)
            out["emphasis_high"] = float(w[p > high].sum() / total)
    out.update(_rejected(result, loss))
    return out


def _rejected(result, loss):
    """``rejected`` and ``rejected_wrong`` of :func:`logit_statistics`: the loss's own
    decision (:func:`keras_imae.losses.reject_margins`, its state included) and rule
    (:func:`keras_imae.losses.rejected_by`), with the pass standing in for the batch."""
    if "reject_margin" not in getattr(loss, "HYPERPARAMETERS", ()) or not len(result.given):
        return {}
    # None: the cap is off (the warm-up, or the user)
    margins = losses.reject_margins(loss.reject_margin, **loss.state_values())
    rejected = np.zeros(len(result.given), bool)
    if margins is not None:
        counts = np.bincount(result.given, minlength=len(result.class_mass))
        alive = result.class_mass >= losses.ALIVE_SHARE * counts
        rejected = keras.ops.convert_to_numpy(losses.rejected_by(
            keras.ops.convert_to_numpy(margins), result.given, result.pred,
            result.top_log_odds, alive[result.given]))
    out = {"rejected": float(rejected.mean())}
    if result.clean is not None:
        wrong = (result.clean >= 0) & (result.given != result.clean)
        if wrong.any():
            out["rejected_wrong"] = float(rejected[wrong].mean())
    return out


def fit_statistics(pred, given, clean=None):
    """Exact fit ratios of predictions ``pred`` against ``given`` (and ``clean``) labels.

    ``accuracy = mean(pred == given)``; with clean labels, ``clean_fit`` = accuracy on
    ``given == clean``, ``noisy_fit`` = ``mean(pred == given)`` and ``noisy_correct`` =
    ``mean(pred == clean)`` on ``given != clean``. A ratio over an empty subset is omitted.

    A clean label of -1 marks an unverified example (a label file whose clean labels cover
    a subset, as in Clothing1M): ``clean_fit``, ``noisy_fit`` and ``noisy_correct`` then
    cover the verified examples only, and ``verified_fraction`` (their share) is added so the
    output says so; ``accuracy`` covers every example.

    Returns:
        dict of floats.
    """
    pred, given = np.asarray(pred), np.asarray(given)
    out = {"accuracy": float(np.mean(pred == given))}
    if clean is not None:
        clean = np.asarray(clean)
        verified = clean >= 0
        if not verified.all():
            out["verified_fraction"] = float(np.mean(verified))
        noisy = (given != clean) & verified
        kept = ~noisy & verified
        if kept.any():
            out["clean_fit"] = float(np.mean(pred[kept] == given[kept]))
        if noisy.any():
            out["noisy_fit"] = float(np.mean(pred[noisy] == given[noisy]))
            out["noisy_correct"] = float(np.mean(pred[noisy] == clean[noisy]))
    return out
