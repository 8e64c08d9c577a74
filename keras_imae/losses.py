"""Noise-robust losses with exact, custom logit gradients.

One gradient core, :func:`_gradient_core`, built on ``keras.ops.custom_gradient`` (so the
losses run on the TensorFlow and the JAX backends): every loss here is a forward value plus a
per-example logit gradient ``g_i``. For CCE, MAE, GCE, SCE, IMAE and DM that gradient is
``g_i = w(p_ci) * u_i`` with the emphasis ``w`` of :mod:`keras_imae.weighting` and the unit-L1
direction::

    u = (p - y) / ||p - y||_1 = (p - y) / (2 (1 - p_c))

computed stably as ``u_j = softmax(z with z_c = -inf)_j / 2`` for ``j != c`` and
``u_c = -1/2`` (no epsilon, finite for all finite logits). MSE and NCE+RCE keep their natural
gradient (closed forms below).

``normalize="batch"`` divides each example's gradient by the mean L1 norm over the *global*
batch, ``g_i <- g_i / mean_j ||g_j||_1`` (for the emphasis losses ``||g_j||_1 = w_j``). Under a
``tf.distribute`` strategy the mean is a cross-replica all-reduce of (sum, count), so two
replicas of 32 examples produce exactly the gradients of one replica of 64. On JAX it is the
mean over the batch the loss sees, which under ``keras.distribution.DataParallel`` (global,
sharded arrays in one jit-compiled step) is the global batch as well. With Keras'
default ``"sum_over_batch_size"`` reduction the update is then ``sum_i (w_i / sum_j w_j) u_i``,
as in the authors' code. It is the default for DM and IMAE (without it ``beta`` rescales the
learning rate by up to ``e^beta``); for the baselines it gives the papers' "-DN" variants.
``sample_weight`` multiplies an example's gradient after normalisation.

Forward values: DM and IMAE report the example's plain cross-entropy ``-log p_c`` (so loss
curves compare across losses; their gradient is *not* the gradient of that value). The
baselines report their own value. All values and gradients are finite for finite logits;
NaN logits give NaN (never silently finite).

Labels (``y_true``): integer class ids of shape ``[B]`` or ``[B, 1]`` (ints or integer-valued
floats), or a one-hot tensor of the logits' shape. Soft labels are rejected: the emphasis is
defined for a single labelled class. ``y_pred``: logits ``[B, K]``, or softmax probabilities
with ``from_logits=False`` -- then ``log(max(p, tiny))`` is used as the logits; since every
``g`` sums to zero over classes, back-propagating ``g / p`` through the softmax gives exactly
``g`` w.r.t. the pre-softmax logits. Computation is in float32 whatever the input dtype
(float16/bfloat16 under mixed precision); the gradient is cast back to the input dtype.

Label values are checked by ``tf.debugging.Assert`` on TensorFlow (``InvalidArgumentError``,
also in ``tf.function``/XLA). On JAX they are checked (``ValueError``) only when concrete, i.e.
in eager calls; inside ``jax.jit`` (``fit``, ``evaluate``) they cannot be: an out-of-range id
then matches no class and that example's value and gradient are meaningless, without error.

References:
    The IMAE (arXiv:1903.12141) and DM (arXiv:1905.11233) papers of X. Wang, Y. Hua,
    E. Kodirov and N. M. Robertson, 2019; full citations in :mod:`keras_imae.weighting`.
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_imae import weighting

__all__ = [
    "DerivativeManipulation",
    "IMAE",
    "CategoricalCrossentropy",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "GeneralizedCrossEntropy",
    "SymmetricCrossEntropy",
    "NormalizedCrossEntropyReverse",
    "derivative_manipulation",
    "imae",
    "categorical_crossentropy",
    "mean_absolute_error",
    "mean_squared_error",
    "generalized_cross_entropy",
    "symmetric_cross_entropy",
    "normalized_cross_entropy_reverse",
    "get",
    "NORMALIZE_OPTIONS",
]

NORMALIZE_OPTIONS = (None, "batch")
_TINY = float(np.finfo(np.float32).tiny)  # probabilities are floored here before the log
_LOG_MAX = float(np.log(np.finfo(np.float32).max))  # exp() overflows float32 beyond this
_LOWEST = float(np.finfo(np.float32).min)  # the most negative finite float32
_PACKAGE = "keras_imae"

# Everything the forward and backward passes need about one batch of logits.
_Stats = collections.namedtuple(
    "_Stats", "onehot z lse log_p_c p_c one_minus_p_c margin u num_classes"
)


# ----------------------------------------------------------------------------- validation


def _check_number(name, value, *, low=0.0, high=math.inf, low_open=False):
    """Keras-style check that ``value`` is a real number in [low, high] (or (low, high])."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite float in "
            f"{bracket}{low}, {high}]. Received: {name}={value!r}"
        )
    return float(value)


def _check_normalize(normalize):
    if isinstance(normalize, str) and normalize.lower() == "none":
        normalize = None
    if normalize not in NORMALIZE_OPTIONS:
        raise ValueError(
            "Invalid value for argument `normalize`. Expected one of "
            f"{list(NORMALIZE_OPTIONS)}. Received: normalize={normalize!r}"
        )
    return normalize


def _rank(x):
    shape = x.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)  # tf.TensorShape or tuple


def _class_ids(y_true, logits):
    """Integer class ids ``[B]`` from ``y_true`` (ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]``).

    Shapes are checked statically (``ValueError``) on every backend; label *values* by
    :func:`_check_labels`.
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
        _check_labels(
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
        _check_labels(
            ops.all(ops.equal(y, ops.round(y))),
            ["`y_true` class ids must be integers. Received:", y],
            summarize=8,
        )
    ids = ops.cast(y_true, "int32")
    in_range = ops.all(ops.logical_and(ids >= 0, ids < k))
    _check_labels(
        in_range,
        ["`y_true` class ids must lie in [0, num_classes). num_classes:", k, "ids:", ids],
        summarize=16,
    )
    return ids


# ----------------------------------------------------------------------------- backends
# The only backend-specific code of the module: label-value checks and the cross-replica sum.


def _tensorflow():
    return keras.backend.backend() == "tensorflow"


def is_jax_tracer(x):
    """Whether ``x`` is abstract inside a JAX trace (``jit``, ``grad``, ``eval_shape``)."""
    if keras.backend.backend() != "jax":
        return False
    import jax  # only reached on the JAX backend

    return isinstance(x, jax.core.Tracer)


def _check_labels(condition, data, summarize=None):
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


def _cross_replica_max(x):
    """Maximum of the scalar ``x`` over all replicas (``ReduceOp`` has no MAX: each replica
    writes its value into its own slot of a zero vector, one SUM all-reduce gathers them)."""
    if _tensorflow():
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            slots = tf.one_hot(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync,
                               dtype=x.dtype)
            return ops.max(ctx.all_reduce(tf.distribute.ReduceOp.SUM, slots * x))
    return x


def _log_global_mean_exp(log_magnitude):
    """``log(mean_j exp(log_magnitude_j))`` over the global batch, without overflow.

    Shifted by the global maximum ``M``: ``M + log(sum_j exp(x_j - M) / n)``, so any finite
    ``beta`` normalises exactly (``exp(beta ...)`` itself would overflow float32 past ~88).
    TensorFlow: under a ``tf.distribute`` strategy ``M`` and the (sum, count) pair are
    all-reduced across replicas. JAX: the batch the loss sees; with ``keras.distribution``
    (``DataParallel``) arrays are global and jit-compiled, so that is the global batch too.
    Returns ``+inf`` when every magnitude is 0, so that the normalised gradient is 0.
    """
    # Floored at float32's lowest: a replica whose magnitudes are all 0 (log = -inf) would
    # make the all-gather's 0 * -inf a NaN. The shift stays finite; exp(-inf - top) = 0.
    top = _cross_replica_max(ops.maximum(ops.max(log_magnitude), _LOWEST))
    total = ops.sum(ops.exp(log_magnitude - top))
    count = ops.cast(ops.size(log_magnitude), log_magnitude.dtype)
    if _tensorflow():
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            total, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    # total == 0 (every magnitude 0): +inf, so the gradient is 0. NaN stays NaN.
    return ops.where(total == 0, math.inf, top + ops.log(total / count))


# ----------------------------------------------------------------------------- the core


def _stats(z, ids):
    """Softmax quantities of float32 logits ``z`` [B, K] for labelled classes ``ids`` [B].

    One exponential pass: with the labelled class removed (``z_c = -inf``),
    ``e = exp(z_other - max z_other)`` gives the direction ``u_j = e_j / (2 sum e)`` and
    ``lse_other = log sum_{k != c} exp z_k``; then ``log p_c = z_c - logaddexp(lse_other, z_c)``
    and ``1 - p_c = exp(lse_other - lse)``, both without cancellation.
    """
    num_classes = ops.shape(z)[-1]
    onehot = ops.one_hot(ids, num_classes, dtype=z.dtype)
    z_c = ops.sum(onehot * z, axis=-1)
    z_other = ops.where(onehot > 0, ops.full_like(z, -math.inf), z)
    top = ops.max(z_other, axis=-1)
    e = ops.exp(z_other - top[:, None])
    total = ops.sum(e, axis=-1)
    lse_other = top + ops.log(total)
    lse = ops.logaddexp(lse_other, z_c)
    log_p_c = z_c - lse
    return _Stats(
        onehot=onehot,
        z=z,
        lse=lse,
        log_p_c=log_p_c,
        p_c=ops.exp(log_p_c),
        one_minus_p_c=ops.exp(lse_other - lse),
        margin=z_c - lse_other,  # log(p_c / (1 - p_c)), exact for any logits
        u=0.5 * (e / total[:, None] - onehot),
        num_classes=ops.cast(num_classes, z.dtype),
    )


def _log_p(s):
    """Log-probabilities of all classes ``[B, K]`` (only MSE and NCE+RCE need them)."""
    return s.z - s.lse[:, None]


def _upstream(args, upstream):
    """The output gradient: ``grad(upstream)`` on TF/JAX, ``grad(*args, upstream=...)`` else."""
    return args[0] if upstream is None else upstream


@ops.custom_gradient
def _log_probabilities(p):
    """``log(max(p, tiny))`` with gradient ``1 / max(p, tiny)`` everywhere.

    The softmax backward of ``g / p`` is exactly ``g`` because ``sum_k g_k = 0``. Unlike the
    gradient of ``maximum``, this one is never masked to 0, so NaN stays NaN.
    """
    floored = ops.maximum(p, _TINY)
    return ops.log(floored), lambda *args, upstream=None: _upstream(args, upstream) / floored


def _gradient_core(y_true, y_pred, *, value_fn, grad_fn, normalize, from_logits):
    """Per-example loss ``value_fn(stats)`` whose logit gradient is given by ``grad_fn(stats)``.

    ``grad_fn`` returns ``(g, log_scale, log_l1)``: example i's logit gradient is
    ``exp(log_scale_i) * g_i`` (``log_scale`` may be ``None``, meaning 0) and ``log_l1_i`` is
    the log of its L1 norm. ``normalize="batch"`` subtracts ``log(mean_j exp(log_l1_j))`` over
    the global batch from ``log_scale`` -- in the log domain, so huge emphasis weights
    (``exp(beta ...)`` with any finite ``beta``) never overflow.
    """
    normalize = _check_normalize(normalize)
    y_pred = ops.convert_to_tensor(y_pred)
    if from_logits:
        logits = y_pred
    else:
        logits = _log_probabilities(ops.cast(y_pred, "float32"))
    ids = _class_ids(y_true, logits)

    @ops.custom_gradient
    def core(logits_in):
        stats = _stats(ops.cast(logits_in, "float32"), ids)

        def backward(*args, upstream=None):
            g, log_scale, log_l1 = grad_fn(stats)
            if normalize == "batch":
                shift = _log_global_mean_exp(log_l1)
                if log_scale is None:
                    g = ops.exp(-shift) * g
                else:
                    log_scale = log_scale - shift
            if log_scale is not None:
                g = ops.exp(log_scale)[:, None] * g
            upstream = ops.cast(_upstream(args, upstream), "float32")
            return ops.cast(upstream[:, None] * g, logits_in.dtype)

        return value_fn(stats), backward

    return core(logits)


def _emphasis_gradient(weight_fn=None, *, log_weight_fn=None):
    """``grad_fn`` for a loss along ``(p - y)``: ``g = w(p_c) u`` with ``||g||_1 = w(p_c)``.

    Give ``weight_fn`` (``w``), or ``log_weight_fn`` (``log w``, for weights that would
    overflow float32, as DM's ``exp(beta ...)`` can).
    """

    def grad_fn(s):  # ||u||_1 = 1, so log ||g||_1 = log w
        if log_weight_fn is not None:
            log_w = log_weight_fn(s.p_c, one_minus_p=s.one_minus_p_c)
            return s.u, log_w, log_w
        w = weight_fn(s.p_c, one_minus_p=s.one_minus_p_c)
        return w[:, None] * s.u, None, ops.log(w)

    return grad_fn


def _natural_gradient(g):
    return g, None, ops.log(ops.sum(ops.abs(g), axis=-1))


def _cross_entropy_value(s):
    return -s.log_p_c


# ----------------------------------------------------------------------------- functions


def derivative_manipulation(y_true, y_pred, *, beta=8.0, lam=0.5, normalize="batch",
                            from_logits=True, max_margin=None):
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
    beta, lam, max_margin = _check_dm(beta, lam, normalize, max_margin)
    return _gradient_core(
        y_true, y_pred,
        value_fn=_cross_entropy_value,
        grad_fn=_dm_gradient(beta, lam, max_margin),
        normalize=normalize, from_logits=from_logits,
    )


def _check_dm(beta, lam, normalize, max_margin, beta_name="beta"):
    """Validated DM hyper-parameters; ``exp(beta ...)`` must fit float32 without normalising.

    ``beta_name`` is the argument's public name (IMAE calls it ``temperature``).
    """
    beta, lam = _check_number(beta_name, beta), _check_number("lam", lam)
    if max_margin is not None:
        max_margin = _check_number("max_margin", max_margin, low_open=True)
    if _check_normalize(normalize) is None and weighting.log_dm_peak(beta=beta, lam=lam) > _LOG_MAX:
        raise ValueError(
            f"Invalid value for argument `{beta_name}` with normalize=None: the emphasis "
            f"exp(beta * p^lam * (1 - p)) reaches exp({weighting.log_dm_peak(beta=beta, lam=lam):.4g}),"
            f" beyond float32 (exp({_LOG_MAX:.4g})). Use normalize='batch' (computed in the log "
            f"domain, any {beta_name} works) or a smaller one. Received: {beta_name}={beta}, "
            f"lam={lam}")
    return beta, lam, max_margin


def _dm_gradient(beta, lam, max_margin):
    """DM's ``grad_fn``: ``w = exp(beta p^lam (1 - p))`` times ``u``, in the log domain.

    With ``max_margin = M``, an example whose margin ``log(p / (1 - p))`` lies outside
    ``[-M, M]`` gets no gradient, but still counts with its own ``w`` in the batch mean.
    """

    def grad_fn(s):
        log_w = weighting.log_dm(s.p_c, beta=beta, lam=lam, one_minus_p=s.one_minus_p_c)
        if max_margin is None:
            return s.u, log_w, log_w
        inside = ops.abs(s.margin) <= max_margin
        return s.u, ops.where(inside, log_w, ops.full_like(log_w, -math.inf)), log_w

    return grad_fn


def imae(y_true, y_pred, *, temperature=8.0, normalize="batch", from_logits=True,
         max_margin=None):
    """IMAE: DM with ``lam = 1, beta = temperature``, i.e. ``w(p) = exp(T p (1 - p))``.

    Same arguments and value (``-log p_c``) as :func:`derivative_manipulation`.

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
        Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
        Matters." arXiv:1903.12141, 2019.
    """
    _check_dm(temperature, 1.0, normalize, max_margin, beta_name="temperature")
    return derivative_manipulation(
        y_true, y_pred, beta=temperature, lam=1.0, normalize=normalize, from_logits=from_logits,
        max_margin=max_margin)


def categorical_crossentropy(y_true, y_pred, *, normalize=None, from_logits=True):
    """Cross-entropy ``-log p_c``; gradient ``p - y``, i.e. ``w(p) = 2 (1 - p)``."""
    return _gradient_core(
        y_true, y_pred, value_fn=_cross_entropy_value,
        grad_fn=_emphasis_gradient(weighting.cce),
        normalize=normalize, from_logits=from_logits,
    )


def mean_absolute_error(y_true, y_pred, *, normalize=None, from_logits=True):
    """MAE ``sum_k |p_k - y_k| = 2 (1 - p_c)``; ``w(p) = 4 p (1 - p)``.

    References:
        A. Ghosh, H. Kumar, P. S. Sastry. "Robust Loss Functions under Label Noise for Deep
        Neural Networks." AAAI 2017.
    """
    return _gradient_core(
        y_true, y_pred, value_fn=lambda s: 2.0 * s.one_minus_p_c,
        grad_fn=_emphasis_gradient(weighting.mae),
        normalize=normalize, from_logits=from_logits,
    )


def generalized_cross_entropy(y_true, y_pred, *, q=0.7, normalize=None, from_logits=True):
    """GCE ``(1 - p_c^q) / q``, ``q`` in (0, 1]; ``w(p) = 2 p^q (1 - p)``.

    q -> 0 is CCE, q = 1 is MAE / 2.

    References:
        Z. Zhang, M. R. Sabuncu. "Generalized Cross Entropy Loss for Training Deep Neural
        Networks with Noisy Labels." NeurIPS 2018.
    """
    q = _check_number("q", q, low=0.0, high=1.0, low_open=True)
    return _gradient_core(
        y_true, y_pred,
        value_fn=lambda s: -ops.expm1(q * s.log_p_c) / q,
        grad_fn=_emphasis_gradient(lambda p, **kw: weighting.gce(p, q=q, **kw)),
        normalize=normalize, from_logits=from_logits,
    )


def symmetric_cross_entropy(y_true, y_pred, *, alpha=0.1, beta=1.0, normalize=None,
                            from_logits=True):
    """SCE ``alpha * CE + beta * RCE`` with ``RCE = -A (1 - p_c)``, ``A = log 0 := -4``.

    Gradient ``(alpha + 4 beta p_c)(p - y)``: ``w(p) = 2 (alpha + 4 beta p)(1 - p)``.

    References:
        Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey. "Symmetric Cross Entropy for
        Robust Learning with Noisy Labels." ICCV 2019.
    """
    alpha, beta = _check_number("alpha", alpha), _check_number("beta", beta)
    return _gradient_core(
        y_true, y_pred,
        value_fn=lambda s: -alpha * s.log_p_c + 4.0 * beta * s.one_minus_p_c,
        grad_fn=_emphasis_gradient(
            lambda p, **kw: weighting.sce(p, alpha=alpha, beta=beta, **kw)),
        normalize=normalize, from_logits=from_logits,
    )


def _mse_gradient(s):
    # L = sum_k (p_k - y_k)^2, dL/dz_j = 2 p_j ((p_j - y_j) - sum_k p_k (p_k - y_k)).
    p = ops.exp(_log_p(s))
    r = p - s.onehot
    return _natural_gradient(2.0 * p * (r - ops.sum(p * r, axis=-1, keepdims=True)))


def mean_squared_error(y_true, y_pred, *, normalize=None, from_logits=True):
    """Squared error of the probabilities, ``sum_k (p_k - y_k)^2`` (natural gradient).

    Its gradient ``2 p ⊙ (r - <p, r>)``, ``r = p - y``, is not along ``p - y``; with
    ``normalize="batch"`` it is divided by the batch mean of its L1 norm.
    """
    return _gradient_core(
        y_true, y_pred,
        value_fn=lambda s: ops.sum(ops.square(ops.exp(_log_p(s)) - s.onehot), axis=-1),
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

    alpha, beta = _check_number("alpha", alpha), _check_number("beta", beta)

    def grad_fn(s):
        p = ops.exp(_log_p(s))
        a = s.log_p_c[:, None]
        b = ops.sum(_log_p(s), axis=-1, keepdims=True)
        p_minus_y = 2.0 * s.one_minus_p_c[:, None] * s.u
        d_nce = (-p_minus_y * b - a * (1.0 - s.num_classes * p)) / ops.square(b)
        return _natural_gradient(alpha * d_nce + 4.0 * beta * s.p_c[:, None] * p_minus_y)

    return _gradient_core(
        y_true, y_pred,
        value_fn=lambda s: alpha * s.log_p_c / ops.sum(_log_p(s), axis=-1)
        + 4.0 * beta * s.one_minus_p_c,
        grad_fn=grad_fn, normalize=normalize, from_logits=from_logits,
    )


# ----------------------------------------------------------------------------- Loss classes


class _CoreLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` around one of the per-example functions above.

    Subclasses set ``_fn`` and declare their hyper-parameters' names in
    :attr:`HYPERPARAMETERS` (validated in ``__init__``, stored as attributes, round-tripped by
    ``get_config``).
    """

    _fn = None
    HYPERPARAMETERS = ()  # the loss-specific keyword arguments, e.g. ("beta", "lam", ...)

    def __init__(self, hparams, *, normalize, from_logits, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        assert tuple(hparams) == self.HYPERPARAMETERS, (tuple(hparams), self.HYPERPARAMETERS)
        self._hparams = dict(hparams)
        for key, value in self._hparams.items():
            setattr(self, key, value)
        self.normalize = _check_normalize(normalize)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(
                "Invalid value for argument `from_logits`. Expected True or False. "
                f"Received: from_logits={from_logits!r}")
        self.from_logits = bool(from_logits)
        self._eager_call = {}

    def call(self, y_true, y_pred):
        if _tensorflow() and tf.executing_eagerly():
            # Eagerly, ~30 small ops would be dispatched one by one; a traced function runs
            # them as a single graph (same ops, same gradient). One per pair of ranks (the
            # label checks need the rank), each generalising over batch sizes.
            key = (len(np.shape(y_true)), len(np.shape(y_pred)))
            if key not in self._eager_call:
                self._eager_call[key] = tf.function(self._call, reduce_retracing=True)
            return self._eager_call[key](y_true, y_pred)
        return self._call(y_true, y_pred)

    def _call(self, y_true, y_pred):
        return type(self)._fn(
            y_true, y_pred, normalize=self.normalize, from_logits=self.from_logits,
            **self._hparams,
        )

    def get_config(self):
        return {
            **super().get_config(),
            **self._hparams,
            "normalize": self.normalize,
            "from_logits": self.from_logits,
        }

    _log_weight = None  # p, one_minus_p -> log w(p), for the losses with an emphasis density

    def log_emphasis(self, p, *, one_minus_p=None):
        """``log w(p)`` of this loss's emphasis density (``None`` for MSE and NCE+RCE).

        Used by :class:`keras_imae.callbacks.FitMonitor` to log where the emphasis sits.
        """
        if self._log_weight is None:
            return None
        return self._log_weight(p, one_minus_p=one_minus_p)


_SUM = "sum_over_batch_size"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DerivativeManipulation(_CoreLoss):
    """Derivative Manipulation loss; see :func:`derivative_manipulation`.

    ``w(p) = exp(beta * p^lam * (1 - p))``, normalised over the global batch by default.

    Example:
        >>> model.compile(optimizer="adam",
        ...               loss=keras_imae.losses.DerivativeManipulation(beta=8.0, lam=0.5))

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "Derivative Manipulation for General
        Example Weighting." arXiv:1905.11233, 2019.
    """

    _fn = staticmethod(derivative_manipulation)
    HYPERPARAMETERS = ("beta", "lam", "max_margin")

    def __init__(self, *, beta=8.0, lam=0.5, normalize="batch", from_logits=True,
                 max_margin=None, reduction=_SUM, name="derivative_manipulation", dtype=None):
        beta, lam, max_margin = _check_dm(beta, lam, normalize, max_margin)
        super().__init__(
            {"beta": beta, "lam": lam, "max_margin": max_margin},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )

    def _log_weight(self, p, *, one_minus_p=None):
        return weighting.log_dm(p, beta=self.beta, lam=self.lam, one_minus_p=one_minus_p)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IMAE(_CoreLoss):
    """IMAE loss, ``w(p) = exp(T p (1 - p))``; see :func:`imae`.

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning."
        arXiv:1903.12141, 2019.
    """

    _fn = staticmethod(imae)
    HYPERPARAMETERS = ("temperature", "max_margin")

    def __init__(self, *, temperature=8.0, normalize="batch", from_logits=True,
                 max_margin=None, reduction=_SUM, name="imae", dtype=None):
        temperature, _, max_margin = _check_dm(temperature, 1.0, normalize, max_margin,
                                               beta_name="temperature")
        super().__init__(
            {"temperature": temperature, "max_margin": max_margin},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )

    def _log_weight(self, p, *, one_minus_p=None):
        return weighting.log_dm(p, beta=self.temperature, lam=1.0, one_minus_p=one_minus_p)


class _ParameterFreeLoss(_CoreLoss):
    """A baseline without hyper-parameters: subclasses set ``_fn`` and ``_default_name``."""

    _default_name = None

    def __init__(self, *, normalize=None, from_logits=True, reduction=_SUM, name=None,
                 dtype=None):
        super().__init__({}, normalize=normalize, from_logits=from_logits,
                         reduction=reduction, name=name or self._default_name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalCrossentropy(_ParameterFreeLoss):
    """Cross-entropy with the stable core gradient; ``normalize="batch"`` is CCE-DN."""

    _fn = staticmethod(categorical_crossentropy)
    _default_name = "categorical_crossentropy"

    def _log_weight(self, p, *, one_minus_p=None):
        return ops.log(weighting.cce(p, one_minus_p=one_minus_p))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanAbsoluteError(_ParameterFreeLoss):
    """MAE on probabilities, ``sum_k |p_k - y_k|``; see :func:`mean_absolute_error`."""

    _fn = staticmethod(mean_absolute_error)
    _default_name = "mean_absolute_error"

    def _log_weight(self, p, *, one_minus_p=None):
        return ops.log(weighting.mae(p, one_minus_p=one_minus_p))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanSquaredError(_ParameterFreeLoss):
    """Squared error on probabilities, ``sum_k (p_k - y_k)^2``; see :func:`mean_squared_error`."""

    _fn = staticmethod(mean_squared_error)
    _default_name = "mean_squared_error"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GeneralizedCrossEntropy(_CoreLoss):
    """GCE ``(1 - p_c^q) / q``; see :func:`generalized_cross_entropy`."""

    _fn = staticmethod(generalized_cross_entropy)
    HYPERPARAMETERS = ("q",)

    def __init__(self, *, q=0.7, normalize=None, from_logits=True, reduction=_SUM,
                 name="generalized_cross_entropy", dtype=None):
        super().__init__(
            {"q": _check_number("q", q, low=0.0, high=1.0, low_open=True)},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )


    def _log_weight(self, p, *, one_minus_p=None):
        return ops.log(weighting.gce(p, q=self.q, one_minus_p=one_minus_p))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SymmetricCrossEntropy(_CoreLoss):
    """SCE ``alpha CE + beta RCE``; see :func:`symmetric_cross_entropy`."""

    _fn = staticmethod(symmetric_cross_entropy)
    HYPERPARAMETERS = ("alpha", "beta")

    def __init__(self, *, alpha=0.1, beta=1.0, normalize=None, from_logits=True,
                 reduction=_SUM, name="symmetric_cross_entropy", dtype=None):
        super().__init__(
            {"alpha": _check_number("alpha", alpha), "beta": _check_number("beta", beta)},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )


    def _log_weight(self, p, *, one_minus_p=None):
        return ops.log(weighting.sce(p, alpha=self.alpha, beta=self.beta, one_minus_p=one_minus_p))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedCrossEntropyReverse(_CoreLoss):
    """NCE+RCE ``alpha NCE + beta RCE``; see :func:`normalized_cross_entropy_reverse`."""

    _fn = staticmethod(normalized_cross_entropy_reverse)
    HYPERPARAMETERS = ("alpha", "beta")

    def __init__(self, *, alpha=1.0, beta=1.0, normalize=None, from_logits=True,
                 reduction=_SUM, name="normalized_cross_entropy_reverse", dtype=None):
        super().__init__(
            {"alpha": _check_number("alpha", alpha), "beta": _check_number("beta", beta)},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )


# ----------------------------------------------------------------------------- get()

LOSSES = {
    "dm": DerivativeManipulation,
    "imae": IMAE,
    "cce": CategoricalCrossentropy,
    "mae": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "gce": GeneralizedCrossEntropy,
    "sce": SymmetricCrossEntropy,
    "nce_rce": NormalizedCrossEntropyReverse,
}


def get(identifier, **kwargs):
    """A loss from its short name (``dm imae cce mae mse gce sce nce_rce``) and keywords.

    A ``keras.losses.Loss`` instance is returned as is (then no keywords are allowed).

    Example:
        >>> get("dm", beta=12.0, lam=0.5)   # doctest: +ELLIPSIS
        <...DerivativeManipulation...>
    """
    if isinstance(identifier, keras.losses.Loss):
        if kwargs:
            raise ValueError(
                f"Keyword arguments {sorted(kwargs)} cannot be applied to an existing loss "
                f"instance {identifier!r}."
            )
        return identifier
    key = identifier.lower() if isinstance(identifier, str) else None
    if key not in LOSSES:
        raise ValueError(
            f"Unknown loss {identifier!r}. Valid names: {', '.join(LOSSES)}."
        )
    return LOSSES[key](**kwargs)
