"""Which epoch a run exports: the last one, or the best by its noisy validation split.

With ``checkpoint="best"`` a run holds out a stratified share of its *noisy* training labels
(``validation_fraction``) and scores every epoch on it (:class:`keras_imae.callbacks.FitMonitor`)
by the plain accuracy on those noisy labels (:data:`SCORE_KEY`). Drawn and real noise are
scored alike: the ``T`` a synthetic noise was drawn with is never read, so a study measures
what a user with real noise gets.

Not the accuracy corrected by a ``T`` estimated from the noisy labels (logged beside it as
``val_accuracy_corrected``): the correction ``mean (T^-1)[noisy, predicted]`` is unbiased only
with the true ``T``, and the estimate over-states the noise (a linear model's own errors
count as noise: every digits run scores above 100% corrected). Chosen by it, the exported
epoch was no better on digits (240 runs of the comparison, symmetric and pair-flip noise:
within 0.2 points of the plain choice on average) and worse on ``tabular`` under pair-flip
(2.4 points on average over 10 runs, 8 of them worse, 1 better), and the learning rate it
chose for MAE under pair-flip ended 6.3 points lower (docs/training.md).

Keras' ``ModelCheckpoint`` keeps the weights of every epoch that beats the best so far; after
training the run loads the best epoch's weights, measures that model and exports it. The same
rule applies to every loss, so comparisons stay fair.
"""

import os
import shutil

import keras
import numpy as np

from keras_imae import run_folder

__all__ = ["CHECKPOINTS", "SCORE_KEY", "checkpoint_callback", "restore_best"]

CHECKPOINTS = run_folder.CHECKPOINTS
SCORE_KEY = "val_accuracy"  # the log key an epoch (and a --tune point) is chosen by
_PATTERN = "epoch-{epoch:04d}.weights.h5"


def _scores(rows, key):
    return np.array([float(r[key]) for r in rows], "float64")


def checkpoint_callback(run_dir, key, done_rows=()):
    """Keras' ``ModelCheckpoint`` keeping each epoch that beats the best ``key`` so far in
    ``run_dir/checkpoints/`` (a new file per improvement: a good one is never overwritten).
    ``done_rows``, the log rows of epochs trained before a resume, set the best so far."""
    threshold = float(_scores(done_rows, key).max()) if len(done_rows) else None
    return keras.callbacks.ModelCheckpoint(
        os.path.join(run_dir, CHECKPOINTS, _PATTERN), monitor=key, mode="max",
        save_best_only=True, save_weights_only=True, initial_value_threshold=threshold)


def restore_best(model, run_dir, rows, key):
    """Load into ``model`` the weights of the epoch with the best ``key`` in ``rows`` (the
    run's log; ties: the earliest) and return that epoch (1-based). An epoch whose
    checkpoint cannot be read falls back to the next best that can.

    Raises:
        FileNotFoundError: no checkpoint of any logged epoch could be loaded.
    """
    scores = _scores(rows, key)
    for index in np.argsort(-scores, kind="stable"):
        epoch = int(rows[index]["epoch"]) + 1
        path = os.path.join(run_dir, CHECKPOINTS, _PATTERN.format(epoch=epoch))
        if not os.path.isfile(path):
            continue
        try:
            model.load_weights(path)
        except (OSError, ValueError):
            continue
        return epoch
    raise FileNotFoundError(f"No readable checkpoint in {os.path.join(run_dir, CHECKPOINTS)!r} "
                            "for the epochs in the log.")


def delete(run_dir):
    shutil.rmtree(os.path.join(run_dir, CHECKPOINTS), ignore_errors=True)
