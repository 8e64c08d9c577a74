"""Emphasis densities ``w(p)``: how much gradient an example receives.

Every loss of :mod:`keras_imae.losses` whose logit gradient points along ``(p - y)`` (CCE,
MAE, GCE, SCE, IMAE, DM) is fully described by the L1 norm of that gradient as a function of
``p``, the predicted probability of the labelled class (Wang et al., IMAE; DM)::

    g = w(p) * u,        u = (p - y) / ||p - y||_1 = (p - y) / (2 (1 - p))

| loss        | w(p)                           | mode (argmax of w)  |
|-------------|--------------------------------|---------------------|
| CCE         | 2 (1 - p)                      | p = 0               |
| MAE         | 4 p (1 - p)                    | 0.5                 |
| GCE(q)      | 2 p^q (1 - p)                  | q / (q + 1)         |
| SCE(a, b)   | 2 (a + 4 b p) (1 - p)          | depends on a, b     |
| IMAE(T)     | exp(T p (1 - p))               | 0.5                 |
| DM(beta,lam)| exp(beta p^lam (1 - p))        | lam / (lam + 1)     |

The DM paper also proposes the Normal density ``exp(-beta p (p - 2 psi))`` (mode ``psi``) and
the Beta density ``p^(alpha-1) (1-p)^(eta-1)``, which recovers CCE (alpha=1, eta=2),
MAE (alpha=2, eta=2) and GCE (alpha=q+1, eta=2) up to a constant factor.

All functions take ``p`` (a float tensor, any shape) and, optionally, ``one_minus_p``: the
same ``1 - p`` computed without cancellation (the losses pass ``sum_{k != c} p_k``), which
keeps ``w`` accurate when ``p`` rounds to 1. They are pure ``keras.ops`` functions (any Keras
backend; tensors of the backend in, out) and broadcast elementwise.

Example:
    >>> import keras
    >>> import numpy as np
    >>> from keras_imae import weighting
    >>> w = weighting.dm(np.float32([0.0, 0.5, 1.0]), beta=8.0, lam=1.0)
    >>> np.round(keras.ops.convert_to_numpy(w), 3)
    array([1.   , 7.389, 1.   ], dtype=float32)

References:
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
    Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
    Matters." arXiv:1903.12141, 2019.
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "Derivative Manipulation for General
    Example Weighting." arXiv:1905.11233, 2019.
"""

import keras
from keras import ops

__all__ = ["cce", "mae", "gce", "sce", "imae", "dm", "log_dm", "log_dm_peak", "normal",
           "beta_density", "mode"]


def _prepare(p, one_minus_p):
    p = ops.convert_to_tensor(p)
    if not keras.backend.is_float_dtype(p.dtype):
        p = ops.cast(p, "float32")
    one_minus_p = 1.0 - p if one_minus_p is None else ops.cast(one_minus_p, p.dtype)
    return p, one_minus_p


def cce(p, *, one_minus_p=None):
    """Categorical cross-entropy: ``w(p) = 2 (1 - p)``."""
    p, one_minus_p = _prepare(p, one_minus_p)
    return 2.0 * one_minus_p


def mae(p, *, one_minus_p=None):
    """Mean absolute error ``sum_k |p_k - y_k|``: ``w(p) = 4 p (1 - p)``."""
    p, one_minus_p = _prepare(p, one_minus_p)
    return 4.0 * p * one_minus_p


def gce(p, *, q, one_minus_p=None):
    """Generalized cross-entropy ``(1 - p^q) / q``: ``w(p) = 2 p^q (1 - p)``.

    References:
        Z. Zhang, M. R. Sabuncu. "Generalized Cross Entropy Loss for Training Deep Neural
        Networks with Noisy Labels." NeurIPS 2018.
    """
    p, one_minus_p = _prepare(p, one_minus_p)
    return 2.0 * ops.power(p, q) * one_minus_p


def sce(p, *, alpha, beta, one_minus_p=None):
    """Symmetric cross-entropy ``alpha CE + beta RCE`` (RCE with log 0 := -4).

    ``RCE = 4 (1 - p)``, so the logit gradient is ``(alpha + 4 beta p)(p - y)`` and
    ``w(p) = 2 (alpha + 4 beta p)(1 - p)``.

    References:
        Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey. "Symmetric Cross Entropy for
        Robust Learning with Noisy Labels." ICCV 2019.
    """
    p, one_minus_p = _prepare(p, one_minus_p)
    return 2.0 * (alpha + 4.0 * beta * p) * one_minus_p


def dm(p, *, beta, lam, one_minus_p=None):
    """Derivative Manipulation: ``w(p) = exp(beta * p^lam * (1 - p))``.

    ``lam`` moves the emphasis mode ``lam / (lam + 1)`` (0 emphasises hard examples, large
    ``lam`` easy ones); ``beta`` sets how peaked the emphasis is (``beta = 0``: every example
    weighs the same). ``p^0 = 1``, also at ``p = 0``.
    """
    return ops.exp(log_dm(p, beta=beta, lam=lam, one_minus_p=one_minus_p))


def log_dm(p, *, beta, lam, one_minus_p=None):
    """``log`` of DM's emphasis, ``beta * p^lam * (1 - p)``: finite where ``exp`` overflows.

    The losses normalise in this log domain, so any finite ``beta`` works with
    ``normalize="batch"``; its largest value is :func:`log_dm_peak`.
    """
    p, one_minus_p = _prepare(p, one_minus_p)
    return beta * ops.power(p, lam) * one_minus_p


def log_dm_peak(*, beta, lam):
    """``max_p log w(p) = beta * m^lam * (1 - m)`` at the mode ``m = lam / (lam + 1)``."""
    m = mode(lam=lam)
    return beta * (m**lam if lam > 0 else 1.0) * (1.0 - m)


def imae(p, *, temperature, one_minus_p=None):
    """IMAE: ``w(p) = exp(T * p * (1 - p))`` -- DM with ``lam = 1, beta = T``."""
    return dm(p, beta=temperature, lam=1.0, one_minus_p=one_minus_p)


def normal(p, *, beta, psi):
    """DM's Normal emphasis density: ``w(p) = exp(-beta * p * (p - 2 psi))``, mode ``psi``."""
    p, _ = _prepare(p, None)
    return ops.exp(-beta * p * (p - 2.0 * psi))


def beta_density(p, *, alpha, eta, one_minus_p=None):
    """DM's Beta emphasis density: ``w(p) = p^(alpha - 1) (1 - p)^(eta - 1)``.

    (alpha, eta) = (1, 2) is CCE / 2, (2, 2) is MAE / 4, (q + 1, 2) is GCE(q) / 2. Unbounded
    at p = 0 for alpha < 1 and at p = 1 for eta < 1.
    """
    p, one_minus_p = _prepare(p, one_minus_p)
    return ops.power(p, alpha - 1.0) * ops.power(one_minus_p, eta - 1.0)


def mode(*, lam):
    """Where DM's emphasis ``p^lam (1 - p)`` peaks: ``lam / (lam + 1)``."""
    return lam / (lam + 1.0)
