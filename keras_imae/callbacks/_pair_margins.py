"""DM's rejection margins per class pair, from the noise the run estimates in its own data."""

import json
import os

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae import _files, noise
from keras_imae.callbacks import _state
from keras_imae.callbacks._passes import (_check_arrays, _pass_from_logits, _predict_arrays,
                                          is_tf_dataset, label_ids, predict_pass)

__all__ = ["PairMargins"]


class PairMargins(keras.callbacks.Callback):
    """Estimates the noise transition of the training labels once, at the start of epoch
    ``at_epoch``, and from then on lets DM's (or IMAE's) rejection cap use one margin per
    class pair.

    Why: the cap (``reject_margin`` R) stops the push towards a label the model gives to
    another class ``k`` with ``log(p_k / (1 - p_k)) > R``. By Bayes' rule the evidence a label
    ``c`` needs against it depends on the pair: it is the likelier wrong once ``log(q_k /
    q_c) > log(T[c, c] / T[k, c])``. One R for every pair therefore rejects too little of
    coherent noise (under pair-flip the flipped pair's labels are wrong 40% of the time) or,
    set lower, too much of spread-out noise on a weak model
    (``docs/studies/class_dependent_noise.md``). This callback reads ``T`` from the model's own
    predictions on the noisy training set (:func:`keras_imae.noise.estimate_transition`,
    confident learning's joint) after the flat warm-up has sorted the regions by their
    majority label, and writes it into the loss's state (``model.loss.state``'s
    ``noise_transition``, a variable the compiled step reads): a pair whose labels read ``c``
    ``e^x`` times as often as the average of ``c``'s column gets the margin ``R - x``
    (:func:`keras_imae.losses.pair_reject_margins`), never above R.

    Forward correction (:class:`keras_imae.losses.ForwardCorrection` without a ``transition``
    of its own) takes the same estimate as its ``T``: before ``at_epoch`` it is plain
    cross-entropy, then it trains on ``T^T p`` (Patrini et al. 2017 estimate ``T`` from a
    network trained on the noisy labels, as here).

    The estimate is taken once: re-estimated later, a memorised pair would look like clean
    labels and raise its own margin. It is saved with the model (``save``, ``save_weights``:
    the run's backup); with ``path`` it is also written there (atomically) and read back by a
    resumed run whose backup does not hold it, which then trains with the same margins.

    Args:
        data: the training set without augmentation and with its noisy labels: ``(x,
            labels)`` arrays or a dataset yielding ``(x, labels)`` / ``(x, {"label": ...})``.
        at_epoch: the epoch (0-based) whose start takes the estimate, ``>= 1`` (after some
            training); before it the loss's single R applies. A run uses the warm-up's
            length.
        path: JSON file that keeps the estimate, or ``None``.
        batch_size: prediction batch size for array data.

    Attributes:
        transition: the estimate (``None`` before ``at_epoch``).
    """

    def __init__(self, data, at_epoch, *, path=None, batch_size=1024):
        super().__init__()
        if not is_tf_dataset(data):
            _check_arrays(data, "PairMargins")
        self.data, self.path, self.batch_size = data, path, batch_size
        self.at_epoch = checks.integer("at_epoch", at_epoch, low=1)
        self.transition = None

    def on_train_begin(self, logs=None):
        if _state.loss_state(self.model, "noise_transition") is None:
            raise ValueError(
                "PairMargins needs a model compiled with one loss that takes a noise "
                "transition (keras_imae.losses.DerivativeManipulation or IMAE with a number "
                "reject_margin; ForwardCorrection without a transition). Received: "
                f"loss={self.model.loss!r}")

    def on_epoch_begin(self, epoch, logs=None):
        state = _state.loss_state(self.model, "noise_transition")
        held = state.values()["noise_transition"]
        if epoch < self.at_epoch:
            self.transition = None
            if held.any():
                _state.write(self.model, state, noise_transition=None)
        elif held.any():  # estimated earlier in this fit, or restored with the model
            self.transition = held.astype("float64")
        else:
            self.transition = self._load() if self._saved() else self._estimate()
            _state.write(self.model, state, noise_transition=self.transition)

    def _saved(self):
        return self.path is not None and os.path.exists(self.path)

    def _load(self):
        try:
            with open(self.path) as f:
                transition = np.asarray(json.load(f)["transition"], "float64")
            if transition.ndim != 2 or transition.shape[0] != transition.shape[1] or not (
                    np.isfinite(transition).all()):
                raise ValueError(f"a {transition.shape} matrix, not a square finite one")
        except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
            raise ValueError(
                f"The saved noise estimate {self.path!r} is damaged ({type(err).__name__}: "
                f"{err}). Delete it and run again: the estimate is then taken again from the "
                "resumed weights.") from None
        return transition

    def _estimate(self):
        if is_tf_dataset(self.data):
            result = predict_pass(self.model, self.data)
        else:
            logits = _predict_arrays(self.model, self.data[0], self.batch_size)
            result = _pass_from_logits(logits, label_ids(self.data[1]), None)
        transition = noise.estimate_transition(
            result.given, result.pred, 1.0 / (1.0 + np.exp(-result.top_log_odds)),
            np.exp(result.log_p), len(result.class_mass))
        if self.path is not None:
            _files.atomic_write(self.path, lambda f: json.dump(
                {"transition": transition.tolist()}, f))
        return transition
