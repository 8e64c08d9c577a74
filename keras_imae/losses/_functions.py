"""The per-example loss functions: a forward value and an exact logit gradient each.

Every function takes ``(y_true, y_pred)`` and keyword-only hyper-parameters and returns one
value per example; its gradient comes from :func:`keras_imae.losses._core.gradient_core`. See
:mod:`keras_imae.losses` for the conventions (labels, normalisation, dtypes).
"""

import math

import keras  # noqa: F401  (doctests)
import numpy as np
from keras import ops

from keras_imae import _checks as checks
from keras_imae.losses import weighting
from keras_imae.losses._core import (check_normalize, cross_entropy_value, emphasis_gradient,
                                     gradient_core, log_p, natural_gradient)
from keras_imae.losses._rejection import (_check_reject_margin, _flat, _shape, confident_other,
                                          reject_margins)

__all__ = ["derivative_manipulation", "imae", "categorical_crossentropy", "mean_absolute_error",
           "mean_squared_error", "generalized_cross_entropy", "symmetric_cross_entropy",
           "normalized_cross_entropy_reverse", "forward_correction", "check_transition"]

_LOG_MAX = float(np.log(np.finfo(np.float32).max))  # exp() overflows float32 beyond this
_TINY = float(np.finfo(np.float32).tiny)



def derivative_manipulation(y_true, y_pred, *, beta=8.0, lam=0.5, normalize="batch",
                            from_logits=True, max_margin=None, reject_margin=None,
                            flat_emphasis=False, noise_transition=None, emphasis_scale=1.0):
    """Derivative Manipulation (DM): cross-entropy value, emphasis-density gradient.

    Example i's logit gradient is ``w_i u_i`` with ``w_i = exp(beta * p_i^lam * (1 - p_i))``
    (``p_i``: predicted probability of its label; ``u_i = (p_i - y_i) / ||p_i - y_i||_1``),
    divided by ``mean_j w_j`` over the global batch when ``normalize="batch"``. Examples the
    model finds impossible (p -> 0, likely mislabelled) and examples it already fits
    (p -> 1) get weight ~1, those near the mode ``lam / (lam + 1)`` up to ``e^beta`` times
    more. The returned value is ``-log p_i``.

    Args:
        y_true: class ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]``.
        y_pred: logits ``[B, K]`` (probabilities if ``from_logits=False``).
        beta: emphasis strength, >= 0 (papers: 2 to 16).
        lam: emphasis mode parameter, >= 0 (papers' grid: 0, 0.5, 1, 2).
        normalize: ``"batch"`` (default) or ``None``.
        from_logits: whether ``y_pred`` are logits.
        max_margin: ``M > 0`` or ``None`` (off): no gradient for an example whose margin
            ``log(p / (1 - p))`` lies outside ``[-M, M]`` (this project's option; it stops
            the push on fitted examples, where DM's gradient never vanishes).
        reject_margin: ``R > 0``, a ``[K, K]`` matrix ``R[label, predicted]``
            (:func:`~keras_imae.losses.pair_reject_margins`) or ``None`` (off): no gradient
            for an example the model confidently gives to *another* class ``k``: ``k =
            argmax p != label`` and ``log(p_k / (1 - p_k)) > R`` (``p_k > sigmoid(R)``),
            unless its labelled class is losing in the batch
            (:func:`~keras_imae.losses._rejection.confident_other`). This project's option for
            class-dependent noise: DM's emphasis never falls below 1, so once the clean
            examples are fitted a wrong label pushes as hard as any other example, and
            under pair-flip all of a class's wrong labels push the same way. Both capped
            kinds of example still count with their own ``w`` in the batch mean. ``None``
            for both is the papers' DM.
        flat_emphasis: the training phase: ``True`` trains with a flat emphasis (``w = 1``
            for every example, as ``beta=0``; ``max_margin`` still applies, the rejection cap
            does not). A Python bool, or a scalar bool tensor read when the step runs (the
            loss's ``state``, which :class:`keras_imae.callbacks.EmphasisWarmup` writes).
        noise_transition: ``None``, or a ``[K, K]`` noise transition ``T[k, c] = P(label c |
            true class k)`` estimated from the training labels (array or tensor; all zeros:
            none yet). With a number ``reject_margin`` R the cap then rejects per class pair,
            at the margins ``pair_reject_margins(T, R)``
            (:func:`~keras_imae.losses.reject_margins`).
        emphasis_scale: the training phase's share ``s`` in ``[0, 1]`` of the emphasis
            strength: ``w = exp(s * beta * p^lam * (1 - p))``. ``1`` (default): the loss as
            configured; a number or a scalar float tensor read when the step runs
            (:class:`keras_imae.callbacks.EmphasisWarmup`'s ramp writes it). Ignored while
            ``flat_emphasis``.

    Returns:
        Per-example loss values ``[B]`` (float32).

    Example:
        >>> z = np.float32([[2.0, 0.0], [0.0, 2.0]])
        >>> keras.ops.convert_to_numpy(
        ...     derivative_manipulation([0, 0], z, beta=8.0, lam=1.0)).round(4)
        array([0.1269, 2.1269], dtype=float32)

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "Derivative Manipulation for General
        Example Weighting." arXiv:1905.11233, 2019.
    """
    beta, lam, max_margin, reject_margin = _check_dm(beta, lam, normalize, max_margin,
                                                     reject_margin)
    num_classes = getattr(y_pred, "shape", np.shape(y_pred))[-1]
    for name, matrix in (("reject_margin", reject_margin), ("noise_transition", noise_transition)):
        size = _shape(matrix)[0] if len(_shape(matrix)) == 2 else None
        if size is not None and num_classes not in (None, size):
            raise ValueError(f"Invalid value for argument `{name}`: a {size}x{size} matrix "
                             f"for logits of {num_classes} classes.")
    flat = _flat(flat_emphasis)
    return gradient_core(
        y_true, y_pred,
        value_fn=cross_entropy_value,
        grad_fn=_dm_gradient(beta, lam, max_margin, flat, reject_margins(
            reject_margin, flat_emphasis=flat, noise_transition=noise_transition),
            emphasis_scale),
        normalize=normalize, from_logits=from_logits,
    )


def _check_dm(beta, lam, normalize, max_margin, reject_margin, beta_name="beta"):
    """Validated DM hyper-parameters; ``exp(beta ...)`` must fit float32 without normalising.

    ``beta_name`` is the argument's public name (IMAE calls it ``temperature``).
    """
    beta, lam = checks.number(beta_name, beta), checks.number("lam", lam)
    if max_margin is not None:
        max_margin = checks.number("max_margin", max_margin, low_open=True)
    if reject_margin is not None:
        reject_margin = _check_reject_margin(reject_margin)
    peak = weighting.log_dm_peak(beta=beta, lam=lam)
    if check_normalize(normalize) is None and peak > _LOG_MAX:
        raise ValueError(
            f"Invalid value for argument `{beta_name}` with normalize=None: the emphasis "
            f"exp(beta * p^lam * (1 - p)) reaches exp({peak:.4g}),"
            f" beyond float32 (exp({_LOG_MAX:.4g})). Use normalize='batch' (computed in the log "
            f"domain, any {beta_name} works) or a smaller one. Received: {beta_name}={beta}, "
            f"lam={lam}")
    return beta, lam, max_margin, reject_margin


def _dm_gradient(beta, lam, max_margin, flat=False, margins=None, scale=1.0):
    """DM's ``grad_fn``: ``w = exp(scale beta p^lam (1 - p))`` times ``u``, in the log
    domain (``w = 1`` while ``flat``, a bool or a bool tensor; ``scale`` a number or a
    float tensor).

    An example outside the margin caps (``|log(p / (1 - p))| > max_margin``, or
    :func:`confident_other` at the :func:`reject_margins` ``margins``) gets no gradient, but
    still counts with its own ``w`` in the batch mean: a cap removes force, it does not hand
    it to the others.
    """
    if flat is True:
        beta = 0.0

    def grad_fn(s):
        log_w = weighting.log_dm(s.p_c, beta=beta, lam=lam, one_minus_p=s.one_minus_p_c)
        if not (isinstance(scale, (int, float)) and scale == 1):
            log_w = log_w * ops.cast(scale, log_w.dtype)
        if flat is not False and flat is not True:
            log_w = ops.where(flat, ops.zeros_like(log_w), log_w)
        capped = None
        if max_margin is not None:
            capped = ops.abs(s.margin) > max_margin
        if margins is not None:
            rejected = confident_other(s, margins)
            capped = rejected if capped is None else ops.logical_or(capped, rejected)
        if capped is None:
            return s.u, log_w, log_w
        return s.u, ops.where(capped, ops.full_like(log_w, -math.inf), log_w), log_w

    return grad_fn


def imae(y_true, y_pred, *, temperature=8.0, normalize="batch", from_logits=True,
         max_margin=None, reject_margin=None, flat_emphasis=False, noise_transition=None,
         emphasis_scale=1.0):
    """IMAE: DM with ``lam = 1, beta = temperature``, i.e. ``w(p) = exp(T p (1 - p))``.

    Same arguments (``flat_emphasis``, ``noise_transition`` and ``emphasis_scale`` included)
    and value
    (``-log p_c``) as :func:`derivative_manipulation`.

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
        Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
        Matters." arXiv:1903.12141, 2019.
    """
    _check_dm(temperature, 1.0, normalize, max_margin, reject_margin, beta_name="temperature")
    return derivative_manipulation(
        y_true, y_pred, beta=temperature, lam=1.0, normalize=normalize, from_logits=from_logits,
        max_margin=max_margin, reject_margin=reject_margin, flat_emphasis=flat_emphasis,
        noise_transition=noise_transition, emphasis_scale=emphasis_scale)


def categorical_crossentropy(y_true, y_pred, *, normalize=None, from_logits=True):
    """Cross-entropy ``-log p_c``; gradient ``p - y``, i.e. ``w(p) = 2 (1 - p)``."""
    return gradient_core(
        y_true, y_pred, value_fn=cross_entropy_value,
        grad_fn=emphasis_gradient(weighting.cce),
        normalize=normalize, from_logits=from_logits,
    )


def mean_absolute_error(y_true, y_pred, *, normalize=None, from_logits=True):
    """MAE ``sum_k |p_k - y_k| = 2 (1 - p_c)``; ``w(p) = 4 p (1 - p)``.

    References:
        A. Ghosh, H. Kumar, P. S. Sastry. "Robust Loss Functions under Label Noise for Deep
        Neural Networks." AAAI 2017.
    """
    return gradient_core(
        y_true, y_pred, value_fn=lambda s: 2.0 * s.one_minus_p_c,
        grad_fn=emphasis_gradient(weighting.mae),
        normalize=normalize, from_logits=from_logits,
    )


def generalized_cross_entropy(y_true, y_pred, *, q=0.7, normalize=None, from_logits=True):
    """GCE ``(1 - p_c^q) / q``, ``q`` in (0, 1]; ``w(p) = 2 p^q (1 - p)``.

    q -> 0 is CCE, q = 1 is MAE / 2.

    References:
        Z. Zhang, M. R. Sabuncu. "Generalized Cross Entropy Loss for Training Deep Neural
        Networks with Noisy Labels." NeurIPS 2018.
    """
    q = checks.number("q", q, high=1.0, low_open=True)
    return gradient_core(
        y_true, y_pred,
        value_fn=lambda s: -ops.expm1(q * s.log_p_c) / q,
        grad_fn=emphasis_gradient(lambda p, **kw: weighting.gce(p, q=q, **kw)),
        normalize=normalize, from_logits=from_logits,
    )


def _alpha_beta(alpha, beta):
    return {"alpha": checks.number("alpha", alpha), "beta": checks.number("beta", beta)}


def symmetric_cross_entropy(y_true, y_pred, *, alpha=0.1, beta=1.0, normalize=None,
                            from_logits=True):
    """SCE ``alpha * CE + beta * RCE`` with ``RCE = -A (1 - p_c)``, ``A = log 0 := -4``.

    Gradient ``(alpha + 4 beta p_c)(p - y)``: ``w(p) = 2 (alpha + 4 beta p)(1 - p)``.

    References:
        Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey. "Symmetric Cross Entropy for
        Robust Learning with Noisy Labels." ICCV 2019.
    """
    alpha, beta = _alpha_beta(alpha, beta).values()
    return gradient_core(
        y_true, y_pred,
        value_fn=lambda s: -alpha * s.log_p_c + 4.0 * beta * s.one_minus_p_c,
        grad_fn=emphasis_gradient(
            lambda p, **kw: weighting.sce(p, alpha=alpha, beta=beta, **kw)),
        normalize=normalize, from_logits=from_logits,
    )


def _p_minus_y(s):
    """``(p, p - y)``; ``p_c - 1`` is ``-(1 - p_c)``, exact when ``p_c`` rounds to 1."""
    p = ops.exp(log_p(s))
    return p, ops.where(s.onehot > 0, -s.one_minus_p_c[:, None], p)


def _mse_gradient(s):
    # L = sum_k (p_k - y_k)^2, dL/dz_j = 2 p_j ((p_j - y_j) - sum_k p_k (p_k - y_k)).
    p, r = _p_minus_y(s)
    return natural_gradient(2.0 * p * (r - ops.sum(p * r, axis=-1, keepdims=True)))


def mean_squared_error(y_true, y_pred, *, normalize=None, from_logits=True):
    """Squared error of the probabilities, ``sum_k (p_k - y_k)^2`` (natural gradient).

    Its gradient ``2 p ⊙ (r - <p, r>)``, ``r = p - y``, is not along ``p - y``; with
    ``normalize="batch"`` it is divided by the batch mean of its L1 norm.
    """
    return gradient_core(
        y_true, y_pred,
        value_fn=lambda s: ops.sum(ops.square(_p_minus_y(s)[1]), axis=-1),
        grad_fn=_mse_gradient, normalize=normalize, from_logits=from_logits,
    )


def normalized_cross_entropy_reverse(y_true, y_pred, *, alpha=1.0, beta=1.0, normalize=None,
                                     from_logits=True):
    """NCE+RCE (Ma et al. 2020): ``alpha * log p_c / sum_k log p_k + beta * 4 (1 - p_c)``.

    Natural gradient: with ``a = log p_c``, ``b = sum_k log p_k``,
    ``dNCE/dz = ((y - p) b - a (1 - K p)) / b^2`` and ``dRCE/dz = 4 p_c (p - y)``.

    References:
        X. Ma, H. Huang, Y. Wang, S. Romano, S. Erfani, J. Bailey. "Normalized Loss Functions
        for Deep Learning with Noisy Labels." ICML 2020.
    """
    alpha, beta = _alpha_beta(alpha, beta).values()

    def grad_fn(s):
        p = ops.exp(log_p(s))
        a = s.log_p_c[:, None]
        b = ops.sum(log_p(s), axis=-1, keepdims=True)
        p_minus_y = 2.0 * s.one_minus_p_c[:, None] * s.u
        d_nce = (-p_minus_y * b - a * (1.0 - s.num_classes * p)) / ops.square(b)
        return natural_gradient(alpha * d_nce + 4.0 * beta * s.p_c[:, None] * p_minus_y)

    return gradient_core(
        y_true, y_pred,
        value_fn=lambda s: alpha * s.log_p_c / ops.sum(log_p(s), axis=-1)
        + 4.0 * beta * s.one_minus_p_c,
        grad_fn=grad_fn, normalize=normalize, from_logits=from_logits,
    )


def check_transition(transition, name="transition"):
    """``None``, or ``transition`` as a float64 ``[K, K]`` row-stochastic array (rows summing
    to 1 within 1e-3, as an estimate rounded to a few digits does); else ``ValueError``."""
    if transition is None:
        return None
    matrix = np.asarray(transition, dtype=np.float64) if np.ndim(transition) == 2 else None
    if matrix is None or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a K x K transition "
                         f"matrix (K >= 2). Received: {name} with shape {np.shape(transition)}")
    bad = ~np.isfinite(matrix).all(1) | (matrix < 0).any(1) | (np.abs(matrix.sum(1) - 1) > 1e-3)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"Invalid value for argument `{name}`. Expected rows of non-negative "
                         f"probabilities summing to 1. Received: {name}[{i}]={matrix[i]!r:.80}")
    return matrix


def forward_correction(y_true, y_pred, *, transition=None, normalize=None, from_logits=True,
                       noise_transition=None):
    """Forward loss correction (Patrini et al. 2017): cross-entropy of the *noisy* label under
    the noisy-label distribution the model implies, ``q = T^T p``:

        loss = -log q_c,   q_c = sum_k p_k T[k, c],   T[k, c] = P(noisy = c | clean = k).

    The model's ``p`` then estimates the clean class while ``q`` fits the noisy labels.
    Natural gradient: ``dloss/dz_j = p_j (1 - T[j, c] / q_c)`` (it sums to 0 over classes;
    with ``T = I`` it is cross-entropy's ``p - y``). ``q_c`` is floored at float32's tiny
    value, so the loss stays finite when the model puts all its mass where ``T[., c] = 0``.

    Args:
        y_true: class ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]`` (the noisy labels).
        y_pred: logits ``[B, K]`` (probabilities if ``from_logits=False``).
        transition: ``[K, K]`` row-stochastic ``T``, estimated from the noisy labels
            (a run estimates it from its own model, :class:`keras_imae.callbacks.PairMargins`;
            :func:`keras_imae.noise.transition_from_labels` needs no model); ``None`` =
            identity, cross-entropy.
        normalize: ``None`` or ``"batch"``.
        noise_transition: without a ``transition``, a ``[K, K]`` estimate of ``T`` (array or
            tensor) read when the step runs: the loss's ``state``, which
            :class:`keras_imae.callbacks.PairMargins` writes. All zeros (none yet):
            cross-entropy.

    References:
        G. Patrini, A. Rozza, A. K. Menon, R. Nock, L. Qu. "Making Deep Neural Networks
        Robust to Label Noise: a Loss Correction Approach." CVPR 2017.
    """
    matrix = check_transition(transition)
    if matrix is not None and noise_transition is not None:
        raise ValueError("Invalid arguments: forward correction takes its `transition` or a "
                         "`noise_transition` estimate, not both.")
    if matrix is None and noise_transition is None:
        return categorical_crossentropy(y_true, y_pred, normalize=normalize,
                                        from_logits=from_logits)
    t, name = (matrix, "transition") if matrix is not None else (noise_transition,
                                                                 "noise_transition")
    num_classes, size = y_pred.shape[-1], _shape(t)[0]
    if num_classes is not None and num_classes != size:
        raise ValueError(f"Invalid value for argument `{name}`: a {size} x {size} matrix for "
                         f"logits of {num_classes} classes.")
    t = ops.transpose(ops.cast(ops.convert_to_tensor(t), "float32"))  # row c: T[:, c]
    # An estimate of all zeros is none yet: cross-entropy, exactly (both are computed).
    known = None if matrix is not None else ops.sum(ops.abs(t)) > 0
    cross_entropy = emphasis_gradient(weighting.cce)

    def column_and_q(s):
        p = ops.exp(log_p(s))
        column = ops.matmul(s.onehot, t)  # [B, K]: T[k, c_i]
        return p, column, ops.sum(p * column, axis=-1)

    def value_fn(s):
        value = -ops.log(ops.maximum(column_and_q(s)[2], _TINY))
        return value if known is None else ops.where(known, value, cross_entropy_value(s))

    def grad_fn(s):
        p, column, q = column_and_q(s)
        share = ops.where(q[:, None] > 0, p * column / ops.maximum(q, _TINY)[:, None], 0.0)
        g, _, log_l1 = natural_gradient(p - share)
        if known is None:
            return g, None, log_l1
        g_ce, _, log_l1_ce = cross_entropy(s)
        return ops.where(known, g, g_ce), None, ops.where(known, log_l1, log_l1_ce)

    return gradient_core(y_true, y_pred, value_fn=value_fn, grad_fn=grad_fn,
                         normalize=normalize, from_logits=from_logits)
