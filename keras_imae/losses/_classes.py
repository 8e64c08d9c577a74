"""The ``keras.losses.Loss`` classes (thin wrappers of :mod:`._functions`) and :func:`get`."""

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae.losses import weighting
from keras_imae.losses._core import CoreLoss
from keras_imae.losses._functions import (
    _alpha_beta, _check_dm, categorical_crossentropy, check_transition,
    derivative_manipulation, forward_correction,
    generalized_cross_entropy, imae, mean_absolute_error, mean_squared_error,
    normalized_cross_entropy_reverse, symmetric_cross_entropy)
from keras_imae.losses._rejection import reject_margins

__all__ = ["DerivativeManipulation", "IMAE", "CategoricalCrossentropy", "MeanAbsoluteError",
           "MeanSquaredError", "GeneralizedCrossEntropy", "SymmetricCrossEntropy",
           "NormalizedCrossEntropyReverse", "ForwardCorrection", "LOSSES", "get"]

_PACKAGE = "keras_imae"


_SUM = "sum_over_batch_size"


def _dm_state_names(loss):
    """DM's and IMAE's state: the warm-up's flat emphasis, the ramp's share of the emphasis
    strength, and a noise transition for the pair margins when the rejection cap is one
    number R (:func:`reject_margins`)."""
    pairs = np.ndim(loss.reject_margin) == 0 and reject_margins(loss.reject_margin) is not None
    return ("flat_emphasis", "emphasis_scale", *(("noise_transition",) if pairs else ()))


def _strength(loss):
    """The emphasis strength the loss computes with now: 0 while its state is flat, the
    ramp's share of it after."""
    values = loss.state_values()
    if values.get("flat_emphasis", False):
        return 0.0
    return getattr(loss, loss.EMPHASIS_STRENGTH) * float(values.get("emphasis_scale", 1.0))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DerivativeManipulation(CoreLoss):
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
    HYPERPARAMETERS = ("beta", "lam", "max_margin", "reject_margin")
    EMPHASIS_STRENGTH = "beta"

    def __init__(self, *, beta=8.0, lam=0.5, normalize="batch", from_logits=True,
                 max_margin=None, reject_margin=None, reduction=_SUM,
                 name="derivative_manipulation", dtype=None):
        beta, lam, max_margin, reject_margin = _check_dm(beta, lam, normalize, max_margin,
                                                         reject_margin)
        super().__init__(
            {"beta": beta, "lam": lam, "max_margin": max_margin,
             "reject_margin": reject_margin},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )

    _state_names = _dm_state_names

    def log_emphasis(self, p, *, one_minus_p=None):
        return weighting.log_dm(p, beta=_strength(self), lam=self.lam, one_minus_p=one_minus_p)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IMAE(CoreLoss):
    """IMAE loss, ``w(p) = exp(T p (1 - p))``; see :func:`imae`.

    References:
        X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning."
        arXiv:1903.12141, 2019.
    """

    _fn = staticmethod(imae)
    HYPERPARAMETERS = ("temperature", "max_margin", "reject_margin")
    EMPHASIS_STRENGTH = "temperature"

    def __init__(self, *, temperature=8.0, normalize="batch", from_logits=True,
                 max_margin=None, reject_margin=None, reduction=_SUM, name="imae", dtype=None):
        temperature, _, max_margin, reject_margin = _check_dm(
            temperature, 1.0, normalize, max_margin, reject_margin, beta_name="temperature")
        super().__init__(
            {"temperature": temperature, "max_margin": max_margin,
             "reject_margin": reject_margin},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )

    _state_names = _dm_state_names

    def log_emphasis(self, p, *, one_minus_p=None):
        return weighting.log_dm(p, beta=_strength(self), lam=1.0, one_minus_p=one_minus_p)


class _ParameterFreeLoss(CoreLoss):
    """A baseline without hyper-parameters: subclasses set ``_fn`` and ``_default_name``."""

    _default_name = None

    def __init__(self, *, normalize=None, from_logits=True, reduction=_SUM, name=None,
                 dtype=None):
        super().__init__({}, normalize=normalize, from_logits=from_logits,
                         reduction=reduction, name=name or self._default_name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoricalCrossentropy(_ParameterFreeLoss):
    """Cross-entropy with the stable core gradient; ``normalize="batch"`` is CCE-DN."""

    _fn, _weight = staticmethod(categorical_crossentropy), staticmethod(weighting.cce)
    _default_name = "categorical_crossentropy"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanAbsoluteError(_ParameterFreeLoss):
    """MAE on probabilities, ``sum_k |p_k - y_k|``; see :func:`mean_absolute_error`."""

    _fn, _weight = staticmethod(mean_absolute_error), staticmethod(weighting.mae)
    _default_name = "mean_absolute_error"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanSquaredError(_ParameterFreeLoss):
    """Squared error on probabilities, ``sum_k (p_k - y_k)^2``; see :func:`mean_squared_error`."""

    _fn = staticmethod(mean_squared_error)
    _default_name = "mean_squared_error"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GeneralizedCrossEntropy(CoreLoss):
    """GCE ``(1 - p_c^q) / q``; see :func:`generalized_cross_entropy`."""

    _fn, _weight = staticmethod(generalized_cross_entropy), staticmethod(weighting.gce)
    HYPERPARAMETERS = ("q",)

    def __init__(self, *, q=0.7, normalize=None, from_logits=True, reduction=_SUM,
                 name="generalized_cross_entropy", dtype=None):
        super().__init__(
            {"q": checks.number("q", q, high=1.0, low_open=True)},
            normalize=normalize, from_logits=from_logits, reduction=reduction, name=name,
            dtype=dtype,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SymmetricCrossEntropy(CoreLoss):
    """SCE ``alpha CE + beta RCE``; see :func:`symmetric_cross_entropy`."""

    _fn, _weight = staticmethod(symmetric_cross_entropy), staticmethod(weighting.sce)
    HYPERPARAMETERS = ("alpha", "beta")

    def __init__(self, *, alpha=0.1, beta=1.0, normalize=None, from_logits=True,
                 reduction=_SUM, name="symmetric_cross_entropy", dtype=None):
        super().__init__(_alpha_beta(alpha, beta), normalize=normalize,
                         from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NormalizedCrossEntropyReverse(CoreLoss):
    """NCE+RCE ``alpha NCE + beta RCE``; see :func:`normalized_cross_entropy_reverse`."""

    _fn = staticmethod(normalized_cross_entropy_reverse)
    HYPERPARAMETERS = ("alpha", "beta")

    def __init__(self, *, alpha=1.0, beta=1.0, normalize=None, from_logits=True,
                 reduction=_SUM, name="normalized_cross_entropy_reverse", dtype=None):
        super().__init__(_alpha_beta(alpha, beta), normalize=normalize,
                         from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ForwardCorrection(CoreLoss):
    """Forward loss correction ``-log (T^T p)_c``; see :func:`forward_correction`.

    ``transition`` is part of the loss's config (a nested list in ``get_config``), so a saved
    model reloads with the ``T`` it trained with. Without one the loss is cross-entropy until
    an estimate is written into its :attr:`state` (``noise_transition``, saved with the
    model): ``scripts/train.py --loss=forward`` estimates it from its own model's predictions
    after a quarter of the epochs (:class:`keras_imae.callbacks.PairMargins`), as Patrini et
    al. estimate it from a network trained on the noisy labels.

    References:
        G. Patrini, A. Rozza, A. K. Menon, R. Nock, L. Qu. "Making Deep Neural Networks
        Robust to Label Noise: a Loss Correction Approach." CVPR 2017.
    """

    _fn = staticmethod(forward_correction)
    HYPERPARAMETERS = ("transition",)

    def __init__(self, *, transition=None, normalize=None, from_logits=True, reduction=_SUM,
                 name="forward_correction", dtype=None):
        matrix = check_transition(transition)
        super().__init__({"transition": None if matrix is None else matrix.tolist()},
                         normalize=normalize, from_logits=from_logits, reduction=reduction,
                         name=name, dtype=dtype)

    def _state_names(self):
        return ("noise_transition",) if self.transition is None else ()


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
    "forward": ForwardCorrection,
}


def get(identifier, **kwargs):
    """A loss from its short name (``dm imae cce mae mse gce sce nce_rce forward``) and
    keywords.

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
