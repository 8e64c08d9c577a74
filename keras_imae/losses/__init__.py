"""Noise-robust losses with exact, custom logit gradients.

Every loss here is a forward value plus a per-example logit gradient ``g_i``, built by one
gradient core (``keras_imae.losses._core``, on ``keras.ops.custom_gradient``: TensorFlow and
JAX backends). For CCE, MAE, GCE, SCE, IMAE and DM that gradient is ``g_i = w(p_ci) * u_i``
with the emphasis ``w`` of :mod:`keras_imae.losses.weighting` and the unit-L1 direction::

    u = (p - y) / ||p - y||_1 = (p - y) / (2 (1 - p_c))

computed stably as ``u_j = softmax(z with z_c = -inf)_j / 2`` for ``j != c`` and
``u_c = -1/2`` (no epsilon, finite for all finite logits). MSE and NCE+RCE keep their natural
gradient (closed forms below), and so does forward correction (Patrini et al. 2017, the
baseline for instance-dependent and class-dependent noise with ``T`` estimated from the data).

``normalize="batch"`` divides each example's gradient by the mean L1 norm over the *global*
batch, ``g_i <- g_i / mean_j ||g_j||_1`` (``= w_j`` for the emphasis losses): a cross-replica
all-reduce under ``tf.distribute`` (two replicas of 32 give exactly the gradients of one of
64); on JAX the batch the loss sees, global under ``keras.distribution.DataParallel``. With
the default ``"sum_over_batch_size"`` reduction the update is ``sum_i (w_i / sum_j w_j) u_i``,
as in the authors' code. It is the default for DM and IMAE (without it ``beta`` rescales the
learning rate by up to ``e^beta``); for the baselines it gives the papers' "-DN" variants.
``sample_weight`` multiplies an example's gradient after normalisation.

Training phases are data, not attributes: DM's and IMAE's flat-emphasis warm-up and the noise
transition their per-pair rejection margins come from (forward correction's estimated ``T``)
are arguments of the functions (``flat_emphasis=``, ``noise_transition=``) and, for the
classes, variables in ``loss.state`` (:class:`LossState`) that the callbacks write, that
:class:`keras_imae.models.RobustModel` tracks and that a saved model keeps.
:func:`reject_margins` is the one decision whether the rejection cap acts.

Forward values: DM and IMAE report the example's plain cross-entropy ``-log p_c`` (so loss
curves compare across losses; their gradient is *not* the gradient of that value). The
baselines report their own value. All values and gradients are finite for finite logits;
NaN logits give NaN (never silently finite).

Labels (``y_true``): integer class ids ``[B]``/``[B, 1]`` (ints or integer-valued floats) or
one-hot ``[B, K]``; soft labels are rejected (the emphasis is defined for one labelled class);
values are checked in-graph (:func:`tensor_label_ids`; on JAX only in eager
calls, not under ``jax.jit``). ``y_pred``: logits ``[B, K]``, or softmax probabilities with
``from_logits=False`` -- then ``log(max(p, tiny))`` serves as the logits, and since every ``g``
sums to zero over classes, back-propagating ``g / p`` through the softmax gives exactly ``g``.
Computation is in float32 whatever the dtype of the logits (float16/bfloat16 under mixed
precision) or of the loss (``dtype=`` sets the dtype of the returned value only); the gradient
comes back in the logits' dtype.

References:
    The IMAE (arXiv:1903.12141) and DM (arXiv:1905.11233) papers of X. Wang, Y. Hua,
    E. Kodirov and N. M. Robertson, 2019; full citations in :mod:`keras_imae.losses.weighting`.
"""

from keras_imae.losses import weighting
from keras_imae.losses._classes import (
    IMAE, LOSSES, CategoricalCrossentropy, DerivativeManipulation, ForwardCorrection,
    GeneralizedCrossEntropy,
    MeanAbsoluteError, MeanSquaredError, NormalizedCrossEntropyReverse, SymmetricCrossEntropy,
    get)
from keras_imae.losses._core import NORMALIZE_OPTIONS, CoreLoss
from keras_imae.losses._functions import (
    categorical_crossentropy, derivative_manipulation, forward_correction,
    generalized_cross_entropy, imae,
    mean_absolute_error, mean_squared_error, normalized_cross_entropy_reverse,
    symmetric_cross_entropy)
from keras_imae.losses._labels import tensor_label_ids
from keras_imae.losses._rejection import (ALIVE_SHARE, pair_reject_margins, reject_margins,
                                          rejected_by)
from keras_imae.losses._state import LossState

__all__ = [
    "DerivativeManipulation", "IMAE", "CategoricalCrossentropy", "MeanAbsoluteError",
    "MeanSquaredError", "GeneralizedCrossEntropy", "SymmetricCrossEntropy",
    "NormalizedCrossEntropyReverse", "ForwardCorrection", "derivative_manipulation",
    "forward_correction", "imae", "categorical_crossentropy",
    "mean_absolute_error", "mean_squared_error", "generalized_cross_entropy",
    "symmetric_cross_entropy", "normalized_cross_entropy_reverse", "get", "LOSSES",
    "NORMALIZE_OPTIONS", "CoreLoss", "weighting", "pair_reject_margins", "reject_margins",
    "rejected_by", "LossState", "ALIVE_SHARE", "tensor_label_ids",
]
