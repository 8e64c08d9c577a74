"""DM's (IMAE's) rejection cap: whether it acts, at which margins, and whom it rejects.

:func:`reject_margins` is the one decision whether the cap acts (its configuration, the
warm-up's flat emphasis, the estimated noise transition); :func:`rejected_by` is the rule,
applied by the loss's step (:func:`confident_other`, per batch) and by the fit monitor's
numpy pass (:func:`keras_imae.callbacks.logit_statistics`) alike.
"""

import math

import numpy as np
from keras import ops

from keras_imae import _checks as checks
from keras_imae._defaults import DEFAULTS
from keras_imae.losses._core import global_sum

__all__ = ["ALIVE_SHARE", "confident_other", "pair_reject_margins", "reject_margins",
           "rejected_by"]


def _shape(x):
    return tuple(getattr(x, "shape", np.shape(x)))


def _flat(flat_emphasis):
    """``flat_emphasis`` as a Python bool when it is one (numpy's too), else a bool tensor."""
    if isinstance(flat_emphasis, (bool, np.bool_)):
        return bool(flat_emphasis)
    return ops.cast(flat_emphasis, "bool")


def _check_reject_margin(reject_margin):
    """A number ``R > 0``, or a ``[K, K]`` matrix of margins ``R[c, k] >= 0`` (``inf``:
    never) as float32 (:func:`pair_reject_margins`)."""
    if np.ndim(reject_margin) == 0:
        return checks.number("reject_margin", reject_margin, low_open=True)
    margins = np.asarray(reject_margin, "float32")
    problem = None
    if margins.ndim != 2 or margins.shape[0] != margins.shape[1]:
        problem = f"shape {margins.shape}"
    elif np.isnan(margins).any():
        problem = f"NaN at {tuple(int(i) for i in np.argwhere(np.isnan(margins))[0])}"
    elif (margins < 0).any():
        i, j = np.argwhere(margins < 0)[0]
        problem = f"reject_margin[{i}, {j}]={margins[i, j]}"
    if problem:
        raise ValueError(
            "Invalid value for argument `reject_margin`. Expected a number > 0 or a square "
            f"[K, K] matrix of margins >= 0 (no NaN). Received: a matrix with {problem}")
    return margins  # inf (never) stays inf: rejected_by gathers, it does not multiply


def pair_reject_margins(transition, reject_margin):
    """Per class-pair rejection margins from a noise transition ``T[k, c] = P(label c | true
    class k)``: ``R[c, k] = clip(R - log(T[k, c] / mean_{j != c} T[j, c]), 0, R)``.

    ``R`` (``reject_margin``) is the margin for noise spread evenly over the other classes;
    a pair whose labels read ``c`` ``e^x`` times as often as the average of ``c``'s column
    gets ``R - x``. Under pair-flip 40% of 10 classes the flipped pair stands ``x = log 9``
    above its column's mean: ``R - 2.2``; under symmetric noise every pair sits at the mean
    and keeps ``R``; a pair below the mean, or never seen (``T[k, c] = 0``), keeps ``R``.

    Why this form: by Bayes' rule a label ``c`` is the likelier wrong once ``log(q_k / q_c) >
    log(T[c, c] / T[k, c])`` (``q``: the clean class probabilities), which depends on the pair
    as above; but a network's probabilities are not calibrated, and the threshold that
    measured best for spread-out noise, ``R = 3``, lies above Bayes' 2.6 there. So the pair's
    term, ``log(T[k, c] / mean_j T[j, c])``, is taken from Bayes and the level from ``R``.
    (Bayes' threshold itself lowered every margin to about 2.3 under symmetric noise on a
    weak model, whose confusions inflate the off-diagonal estimate, and cost 0.7-1.5 points
    there: ``docs/studies/class_dependent_noise.md``.)

    Returns:
        float32 ``[K, K]``, ``R[c, k]`` for label ``c`` and predicted class ``k``.
    """
    ceiling = checks.number("reject_margin", reject_margin, low_open=True)
    return ops.convert_to_numpy(_pair_margins(np.asarray(transition, "float32"), ceiling))


def _pair_margins(transition, ceiling):
    """:func:`pair_reject_margins` in ``keras.ops`` (a tensor ``T`` is read in the step)."""
    t = ops.cast(ops.convert_to_tensor(transition), "float32")
    k = ops.shape(t)[0]
    off = 1.0 - ops.eye(k, dtype="float32")
    mean = ops.sum(off * t, axis=0) / max(k - 1, 1)  # [c]: mean_{j != c} T[j, c]
    seen = ops.logical_and(off > 0, t > 0)
    # t > 0 off the diagonal makes mean > 0; elsewhere the ratio is not used.
    ratio = ops.where(seen, t, 1.0) / ops.where(seen, ops.expand_dims(mean, 0), 1.0)
    margins = ops.where(seen, ops.clip(ceiling - ops.log(ratio), 0.0, ceiling), ceiling)
    return ops.transpose(margins)  # [c, k]


def reject_margins(reject_margin, *, flat_emphasis=False, noise_transition=None,
                   emphasis_scale=None):
    """The one decision whether DM's (IMAE's) rejection cap acts, and at which margins.

    - ``reject_margin`` ``None`` (the papers' DM), or ``flat_emphasis`` ``True`` (the
      warm-up): ``None``, the cap does not act.
    - Else the configured margin (a number R or a ``[K, K]`` matrix) or, given a
      ``noise_transition`` T that is not all zeros, ``pair_reject_margins(T, R)``
      (all zeros: R for every pair, the scalar rule).
    - ``flat_emphasis`` a tensor (the phase read when the step runs): those margins, or
      ``+inf`` (nothing rejected) while it is ``True``.

    ``emphasis_scale`` (the ramp's share of the emphasis) is taken so that a loss's whole
    state can be passed (``**loss.state_values()``); the cap does not depend on it.

    :func:`keras_imae.losses.derivative_manipulation`'s gradient and
    :class:`keras_imae.callbacks.FitMonitor`'s ``rejected`` share both take their margins from
    here and apply :func:`rejected_by`.

    Returns:
        ``None``, a number, or a float32 ``[K, K]`` array/tensor ``R[label, predicted]``.
    """
    flat = _flat(flat_emphasis)
    if reject_margin is None or flat is True:
        return None
    margins = reject_margin
    if noise_transition is not None:
        if np.ndim(reject_margin) == 2:
            raise ValueError("Invalid arguments: `reject_margin` is already a matrix of "
                             "margins per class pair, so `noise_transition` cannot set them. "
                             "Pass a number reject_margin, or no noise_transition.")
        margins = _pair_margins(noise_transition, reject_margin)
    if flat is not False:
        margins = ops.where(flat, math.inf, margins)
    return margins


# a class is alive while its predicted mass is >= this share of its labels
ALIVE_SHARE = DEFAULTS["reject_alive_share"]


def rejected_by(margins, label, predicted, log_odds, label_alive):
    """The rejection rule: example i is rejected when the model gives it to another class
    (``predicted_i != label_i``) with ``log_odds_i = log(p_k / (1 - p_k)) > margin`` (the
    number ``margins``, or ``margins[label_i, predicted_i]``) while its labelled class is
    alive (``label_alive_i``, see :func:`confident_other`). ``keras.ops`` on any input: the
    loss's step and the fit monitor's numpy pass apply the same rule."""
    label, predicted = ops.cast(label, "int32"), ops.cast(predicted, "int32")
    log_odds = ops.convert_to_tensor(log_odds)
    if len(_shape(margins)) == 2:
        k = _shape(margins)[1]
        margins = ops.take(ops.reshape(ops.convert_to_tensor(margins), [-1]), label * k + predicted)
    margins = ops.cast(margins, log_odds.dtype)
    return ops.logical_and(ops.logical_and(ops.not_equal(label, predicted), label_alive),
                           log_odds > margins)


def confident_other(s, margins):
    """Whether the rejection cap (:func:`rejected_by`, at ``margins``) rejects each example
    of the batch: the model gives it to another class ``k = argmax z`` with margin
    ``z_k - log sum_{j != k} exp z_j = log(p_k / (1 - p_k))`` above the margin, while the
    labelled class ``c`` is alive in the (global) batch.

    Alive: the model's predicted mass for ``c`` is at least half (:data:`ALIVE_SHARE`) its
    label count, ``sum_i p_ic >= 1/2 sum_i y_ic``. A model that predicts the true classes
    passes for every class whose noisy labels are fewer than twice its own examples (for
    balanced classes, a column of the noise transition matrix summing to less than 2). A
    class the model is losing (predicted for its clean examples too: absorbed by a pair
    partner, or a collapse to one class) fails, and its examples keep their gradient:
    rejection never locks in the model's own mistake.
    """
    predicted = ops.argmax(s.z, axis=-1)
    label = ops.argmax(s.onehot, axis=-1)
    top = ops.one_hot(predicted, ops.shape(s.z)[-1], dtype=s.z.dtype)
    z_k = ops.sum(top * s.z, axis=-1)
    lse_not_k = ops.logsumexp(ops.where(top > 0, ops.full_like(s.z, -math.inf), s.z), axis=-1)
    mass = global_sum(ops.exp(s.z - ops.expand_dims(s.lse, -1)))
    alive = mass >= ALIVE_SHARE * global_sum(s.onehot)
    return rejected_by(margins, label, predicted, z_k - lse_not_k, ops.take(alive, label))
