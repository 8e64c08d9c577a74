"""Stops a run that has visibly collapsed, before anything is saved or exported."""

import math

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae._defaults import DEFAULTS

__all__ = ["CollapseGuard", "TrainingCollapsed"]


def _is_number(value):
    value = np.asarray(value) if not isinstance(value, (int, float)) else value
    return isinstance(value, (int, float)) or (
        value.ndim == 0 and np.issubdtype(value.dtype, np.number))


class TrainingCollapsed(RuntimeError):
    """Training produced a model that must not be used (or exported); the message says why."""


class CollapseGuard(keras.callbacks.Callback):
    """Stops training with :class:`TrainingCollapsed` when it has visibly collapsed.

    Checked at the end of every epoch, on the logs (put it **after**
    :class:`FitMonitor`, whose ``train_*`` values it reads, and before ``BackupAndRestore``
    so a collapsed epoch is never backed up):

    - a non-finite value in the logs (loss, metrics, monitor values);
    - ``train_logit_scale`` (median ``max_k |z_k|``) above ``max_logit_scale``: the logits
      are diverging (past ~90 every float32 probability is exactly 0 or 1, so no loss can
      tell examples apart any more; DM's gradient does not vanish on fitted examples, and
      with it the logits grow without bound, see ``docs/studies/dm_study.md``);
    - ``train_top_class_fraction`` (share of the most predicted class on the training set)
      at or above ``max_top_class_fraction`` for ``patience`` epochs in a row, or at the
      last epoch: constant predictions. One epoch is not enough: a healthy BatchNorm
      network on a small data set predicts one class in inference mode for its first
      epochs, while its moving statistics (momentum 0.99) still lag its weights (digits
      upsampled to 28x28, the CNN: epochs 1-2). The last epoch counts alone, so a
      collapsed model is still never saved.

    Args:
        max_logit_scale: bound on the median max |logit|; ``None`` disables the check.
        max_top_class_fraction: bound on the most predicted class's share; ``None``
            disables it. Raise it for data in which one class holds nearly every label.
        patience: epochs in a row of constant predictions before they count (>= 1).
        previous_logs: the logs (or ``log.csv`` rows) of the epochs trained before this
            ``fit``: a resumed run counts the constant epochs it ended with, as an
            uninterrupted one would.
    """

    def __init__(self, *, max_logit_scale=DEFAULTS["max_logit_scale"],
                 max_top_class_fraction=DEFAULTS["max_top_class_fraction"],
                 patience=DEFAULTS["collapse_patience"], previous_logs=()):
        super().__init__()
        for name, value in (("max_logit_scale", max_logit_scale),
                            ("max_top_class_fraction", max_top_class_fraction)):
            if value is not None:  # None: that check is off
                checks.number(name, value, low_open=True)
        self.max_logit_scale = max_logit_scale
        self.max_top_class_fraction = max_top_class_fraction
        self.patience = checks.integer("patience", patience, low=1)
        self.previous_logs = [dict(logs) for logs in previous_logs]
        self._constant_epochs = 0

    def update(self, logs, *, last_epoch=False):
        """:meth:`check` for one more epoch, counting constant predictions across calls:
        they are a reason once they last ``patience`` epochs in a row or ``last_epoch``."""
        constant = self._constant_predictions(logs)
        self._constant_epochs = self._constant_epochs + 1 if constant else 0
        counted = constant and (last_epoch or self._constant_epochs >= self.patience)
        return self._immediate_reasons(logs) + ([constant] if counted else [])

    def check(self, logs):
        """The reasons ``logs`` show a collapse (empty list: healthy), for one epoch alone."""
        constant = self._constant_predictions(logs)
        return self._immediate_reasons(logs) + ([constant] if constant else [])

    def _immediate_reasons(self, logs):
        """Non-finite values and diverging logits: a collapse from the epoch they appear."""
        reasons = []
        bad = sorted(k for k, v in (logs or {}).items() if _is_number(v)
                     and not math.isfinite(float(v)))  # Keras logs: floats or 0-d arrays
        if bad:
            reasons.append(f"non-finite values: {', '.join(f'{k}={logs[k]}' for k in bad)}")
        scale = (logs or {}).get("train_logit_scale")
        if self.max_logit_scale is not None and scale is not None and scale > self.max_logit_scale:
            reasons.append(f"train_logit_scale={scale:.4g} > max_logit_scale="
                           f"{self.max_logit_scale:g} (the logits are diverging)")
        return reasons

    def _constant_predictions(self, logs):
        """The constant-predictions reason of this epoch's ``logs``, or ``None``."""
        top = (logs or {}).get("train_top_class_fraction")
        if (self.max_top_class_fraction is None or top is None
                or top < self.max_top_class_fraction):
            return None
        return (f"train_top_class_fraction={top:.4f} >= max_top_class_fraction="
                f"{self.max_top_class_fraction:g} (constant predictions)")

    def on_train_begin(self, logs=None):
        self._constant_epochs = 0
        for previous in self.previous_logs:
            top = previous.get("train_top_class_fraction")
            try:  # a log.csv cell is a string, "NA" where the epoch had no value
                top = float(top)
            except (TypeError, ValueError):
                top = None
            self.update({"train_top_class_fraction": top})

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        reasons = self.update(logs, last_epoch=last)
        if reasons:
            self.model.stop_training = True
            raise TrainingCollapsed(
                f"Training collapsed at epoch {epoch + 1}: " + "; ".join(reasons) + ". The "
                "model is not saved or exported. See docs/studies/dm_study.md.")
