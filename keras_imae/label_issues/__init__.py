"""Which training labels are wrong: a score and a flag per example, as with cleanlab.

- :func:`find_label_issues` (``_find``, numpy only): from out-of-sample probabilities, the
  score ``1 - p_i(y_i)`` and confident learning's flag (Northcutt et al. 2021).
- :func:`cross_val_probabilities` (``_kfold``, numpy; any model): out-of-sample
  probabilities by K-fold training.
- :func:`ranking_quality` (from :mod:`keras_imae.noise`): precision@k and ROC-AUC of a
  score against a known noise mask.
- :func:`keras_fit` (``_keras``): the ``fit`` of :func:`cross_val_probabilities` for any
  Keras model builder.
- The workflow of ``scripts/find_label_issues.py`` (``_workflow``: one robust training run,
  or K robust fold models; CSV, contact sheet, retraining) loads TensorFlow only when used:
  ``run``, ``validate``, ``format_summary``, ... are reached as attributes of this package.

Importing this package (or ``keras_imae.find_label_issues``) imports numpy only.
"""

import importlib

from keras_imae.label_issues._find import (LabelIssues, class_thresholds, find_label_issues,
                                           issue_quality)
from keras_imae.label_issues._kfold import (DEFAULT_FOLDS, Part, assign_folds,
                                            cross_val_probabilities)
from keras_imae.noise import ranking_quality

_WORKFLOW = ("COLUMNS", "DEFAULT_EPOCHS", "DEFAULT_NUM_SUSPECTS", "METHODS", "RETRAIN_MODES",
             "fold_loss", "format_summary",
             "given_labels", "plot_suspects", "run", "validate", "write_csv")

__all__ = ["DEFAULT_FOLDS", "LabelIssues", "Part", "assign_folds", "class_thresholds",
           "cross_val_probabilities", "find_label_issues", "issue_quality", "keras_fit",
           "ranking_quality", *_WORKFLOW]


def __getattr__(name):
    if name in _WORKFLOW:
        return getattr(importlib.import_module("keras_imae.label_issues._workflow"), name)
    if name == "keras_fit":
        return importlib.import_module("keras_imae.label_issues._keras").keras_fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
