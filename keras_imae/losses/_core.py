"""The gradient core shared by every loss in :mod:`keras_imae.losses` (internal).

Every loss there is a forward value plus a per-example logit gradient ``g_i``, put together
by :func:`gradient_core` with ``keras.ops.custom_gradient`` (TensorFlow and JAX backends). For
CCE, MAE, GCE, SCE, IMAE and DM ``g_i = w(p_ci) * u_i`` (:func:`emphasis_gradient`), with the
unit-L1 direction::

    u = (p - y) / ||p - y||_1 = (p - y) / (2 (1 - p_c))

computed stably as ``u_j = softmax(z with z_c = -inf)_j / 2`` for ``j != c`` and
``u_c = -1/2`` (:func:`softmax_stats`: no epsilon, finite for all finite logits). MSE and
NCE+RCE keep their natural gradient (:func:`natural_gradient`).

``normalize="batch"`` divides each example's gradient by the mean L1 norm over the *global*
batch, in the log domain (:func:`log_global_mean_exp`), so ``exp(beta ...)`` never overflows:
a cross-replica all-reduce under ``tf.distribute``, the batch the loss sees on JAX (global
under ``keras.distribution.DataParallel``).

:class:`CoreLoss` is the ``keras.losses.Loss`` base class of the losses: hyper-parameters,
``get_config``, a training-phase :attr:`~CoreLoss.state`, and a ``__call__`` that computes in
float32 whatever the ``dtype``.
"""

import collections
import math

import keras
import numpy as np
from keras import ops

from keras_imae import _backend
from keras_imae.losses._labels import tensor_label_ids
from keras_imae.losses._state import LossState

NORMALIZE_OPTIONS = (None, "batch")
_TINY = float(np.finfo(np.float32).tiny)  # probabilities are floored here before the log
_LOWEST = float(np.finfo(np.float32).min)  # the most negative finite float32

# Everything the forward and backward passes need about one batch of logits.
Stats = collections.namedtuple(
    "Stats", "onehot z lse log_p_c p_c one_minus_p_c margin u num_classes"
)


def check_normalize(normalize):
    if isinstance(normalize, str) and normalize.lower() == "none":
        normalize = None
    if normalize not in NORMALIZE_OPTIONS:
        raise ValueError(
            "Invalid value for argument `normalize`. Expected one of "
            f"{list(NORMALIZE_OPTIONS)}. Received: normalize={normalize!r}"
        )
    return normalize



def _replica_context():
    """The ``tf.distribute`` replica context when several replicas train, else ``None``."""
    if not _backend.is_tensorflow():
        return None
    ctx = _backend.tf().distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def _cross_replica_max(x):
    """Maximum of the scalar ``x`` over all replicas (``ReduceOp`` has no MAX: each replica
    writes its value into its own slot of a zero vector, one SUM all-reduce gathers them)."""
    ctx = _replica_context()
    if ctx is None:
        return x
    tf = _backend.tf()
    slots = tf.one_hot(ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync, dtype=x.dtype)
    return ops.max(ctx.all_reduce(tf.distribute.ReduceOp.SUM, slots * x))


def log_global_mean_exp(log_magnitude):
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
    ctx = _replica_context()
    if ctx is not None:
        total, count = ctx.all_reduce(_backend.tf().distribute.ReduceOp.SUM, [total, count])
    # total == 0 (every magnitude 0): +inf, so the gradient is 0. NaN stays NaN.
    return ops.where(total == 0, math.inf, top + ops.log(total / count))


def global_sum(x):
    """``sum_i x_i`` over the global batch (axis 0), all-reduced under ``tf.distribute``."""
    total = ops.sum(x, axis=0)
    ctx = _replica_context()
    if ctx is not None:
        total = ctx.all_reduce(_backend.tf().distribute.ReduceOp.SUM, total)
    return total


def softmax_stats(z, ids):
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
    margin = z_c - lse_other  # log(p_c / (1 - p_c)), exact for any logits
    log_p_c = -ops.softplus(-margin)  # = z_c - lse, but exact when p_c rounds to 1
    return Stats(
        onehot=onehot,
        z=z,
        lse=lse,
        log_p_c=log_p_c,
        p_c=ops.exp(log_p_c),
        one_minus_p_c=ops.exp(lse_other - lse),
        margin=margin,
        u=0.5 * (e / total[:, None] - onehot),
        num_classes=ops.cast(num_classes, z.dtype),
    )


def log_p(s):
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


def gradient_core(y_true, y_pred, *, value_fn, grad_fn, normalize, from_logits):
    """Per-example loss ``value_fn(stats)`` whose logit gradient is given by ``grad_fn(stats)``.

    ``grad_fn`` returns ``(g, log_scale, log_l1)``: example i's logit gradient is
    ``exp(log_scale_i) * g_i`` (``log_scale`` may be ``None``, meaning 0) and ``log_l1_i`` is
    the log of its L1 norm. ``normalize="batch"`` subtracts ``log(mean_j exp(log_l1_j))`` over
    the global batch from ``log_scale`` -- in the log domain, so huge emphasis weights
    (``exp(beta ...)`` with any finite ``beta``) never overflow.
    """
    normalize = check_normalize(normalize)
    y_pred = ops.convert_to_tensor(y_pred)
    if from_logits:
        logits = y_pred
    else:
        logits = _log_probabilities(ops.cast(y_pred, "float32"))
    ids = tensor_label_ids(y_true, logits)

    @ops.custom_gradient
    def core(logits_in):
        stats = softmax_stats(ops.cast(logits_in, "float32"), ids)

        def backward(*args, upstream=None):
            g, log_scale, log_l1 = grad_fn(stats)
            if normalize == "batch":
                shift = log_global_mean_exp(log_l1)
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


def emphasis_gradient(weight_fn=None, *, log_weight_fn=None):
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


def natural_gradient(g):
    return g, None, ops.log(ops.sum(ops.abs(g), axis=-1))


def cross_entropy_value(s):
    return -s.log_p_c


class _Reduce(keras.losses.Loss):
    """Keras' sample weighting and reduction of per-example values computed beforehand."""

    def call(self, y_true, y_pred):
        return y_pred


class CoreLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` around one per-example function of :mod:`keras_imae.losses`.

    Subclasses set ``_fn`` and declare their hyper-parameters' names in
    :attr:`HYPERPARAMETERS` (validated in ``__init__``, stored as attributes, round-tripped by
    ``get_config``).

    ``dtype`` is the dtype of the returned loss only. Keras' ``Loss.__call__`` would cast
    ``y_pred`` *and* ``y_true`` to it before ``call`` -- rounding float32 logits to bfloat16
    and class ids above 256 to the wrong class -- so ``__call__`` below hands both over
    unchanged: the core computes in float32, weights and reduces in float32 (Keras' own
    ``sample_weight``/``reduction`` code, on a float32 ``Loss``), then casts the result to
    ``dtype``. The logits' gradient comes back in the logits' dtype.

    A loss with a training phase (DM's and IMAE's warm-up and pair margins, forward
    correction's estimated ``T``) keeps it in :attr:`state`, variables the function is given
    as keyword arguments when the step runs (:mod:`keras_imae.losses._state`): never in its
    hyper-parameters or Python attributes, so ``get_config`` is the whole configuration and
    a saved model reloads with the phase it was saved in.
    """

    _fn = None
    HYPERPARAMETERS = ()  # the loss-specific keyword arguments, e.g. ("beta", "lam", ...)
    # The hyper-parameter that scales log w (DM: "beta", IMAE: "temperature"); a flat
    # emphasis (state "flat_emphasis") computes as if it were 0. None: no such knob.
    EMPHASIS_STRENGTH = None

    def __init__(self, hparams, *, normalize, from_logits, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        assert tuple(hparams) == self.HYPERPARAMETERS, (tuple(hparams), self.HYPERPARAMETERS)
        self._hparams = dict(hparams)
        for key, value in self._hparams.items():
            setattr(self, key, value)
        self.normalize = check_normalize(normalize)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(
                "Invalid value for argument `from_logits`. Expected True or False. "
                f"Received: from_logits={from_logits!r}")
        self.from_logits = bool(from_logits)
        self._eager_call = {}
        names = self._state_names()
        self.state = LossState(names) if names else None

    def _state_names(self):
        """The :class:`~keras_imae.losses._state.LossState` variables this configuration
        takes (none by default)."""
        return ()

    def state_values(self):
        """``{name: numpy value}`` of :attr:`state` now (empty without a built state)."""
        return {} if self.state is None else self.state.values()

    def _state_arguments(self):
        """The state's variables, as the keyword arguments of ``_fn`` (read in the step)."""
        if self.state is None or not self.state.built:
            return {}
        return {name: ops.convert_to_tensor(self.state.variable(name))
                for name in self.state.names}

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)  # float32, [batch]
        reduce = _Reduce(name=self.name, reduction=self.reduction, dtype="float32")
        return ops.cast(reduce(values, values, sample_weight=sample_weight), self.dtype)

    def call(self, y_true, y_pred):
        if _backend.is_tensorflow() and _backend.tf().executing_eagerly():
            # Eagerly, ~30 small ops would be dispatched one by one; a traced function runs
            # them as a single graph (same ops, same gradient). One per pair of ranks (the
            # label checks need the rank), each generalising over batch sizes, and per
            # state built or not (its variables are read by reference, never retraced).
            key = (len(np.shape(y_true)), len(np.shape(y_pred)),
                   self.state is not None and self.state.built)
            if key not in self._eager_call:
                self._eager_call[key] = _backend.tf().function(self._call,
                                                               reduce_retracing=True)
            return self._eager_call[key](y_true, y_pred)
        return self._call(y_true, y_pred)

    def _call(self, y_true, y_pred):
        return type(self)._fn(
            y_true, y_pred, normalize=self.normalize, from_logits=self.from_logits,
            **self._hparams, **self._state_arguments(),
        )

    def get_config(self):
        return {
            **super().get_config(),
            **self._hparams,
            "normalize": self.normalize,
            "from_logits": self.from_logits,
            "dtype": self.dtype,  # Keras' Loss.get_config leaves it out (a round trip lost it)
        }

    _weight = None  # w(p, *, one_minus_p, **hyper-parameters) of an emphasis density

    def log_emphasis(self, p, *, one_minus_p=None):
        """``log w(p)`` of this loss's emphasis density (``None`` for MSE and NCE+RCE).

        Used by :class:`keras_imae.callbacks.FitMonitor` to log where the emphasis sits.
        """
        if self._weight is None:
            return None
        return ops.log(self._weight(p, one_minus_p=one_minus_p, **self._hparams))
