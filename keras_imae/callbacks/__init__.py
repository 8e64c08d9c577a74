"""The callbacks of a run.

- :class:`FitMonitor`: at every epoch end, clean fit, memorisation (``noisy_fit``) and
  correction (``noisy_correct``) on the un-augmented training set and test accuracy,
  measured exactly, plus the logit scale and where the loss puts its emphasis.
- :class:`CollapseGuard`: stops a collapsed run (non-finite values, diverging logits,
  constant predictions) with :class:`TrainingCollapsed`, before it is saved or exported.
- :class:`EmphasisWarmup`: trains DM's (IMAE's) first epochs with a flat emphasis.
- :class:`PairMargins`: after the warm-up, one rejection margin per class pair for DM's
  (IMAE's) cap, from the noise transition estimated in the run's own training labels.
- :class:`ProgressBar`: Keras' progress bar with the few figures a person watches (loss,
  accuracy, clean fit, memorisation, test accuracy); the logs keep every value.

:func:`predict_pass`, :func:`fit_statistics` and :func:`logit_statistics` are the monitor's
measurements, usable on any model.
"""

from keras_imae.callbacks._guard import CollapseGuard, TrainingCollapsed
from keras_imae.callbacks._monitor import FitMonitor
from keras_imae.callbacks._pair_margins import PairMargins
from keras_imae.callbacks._passes import (EMPHASIS_BANDS, PassResult, fit_statistics,
                                          logit_statistics, pass_logit_statistics,
                                          predict_pass)
from keras_imae.callbacks._progress import PROGRESS_METRICS, ProgressBar
from keras_imae.callbacks._warmup import EmphasisWarmup

__all__ = ["CollapseGuard", "EMPHASIS_BANDS", "EmphasisWarmup", "FitMonitor", "PROGRESS_METRICS",
           "PairMargins", "PassResult", "ProgressBar", "TrainingCollapsed", "fit_statistics",
           "logit_statistics", "pass_logit_statistics", "predict_pass"]
