"""End-of-epoch fit monitor: clean fit, memorisation and test accuracy, measured exactly.

References:
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
    Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
    Matters." arXiv:1903.12141, 2019 (claim: a robust model fits the clean training examples
    and not the noisy ones).
"""

import math

import keras
import numpy as np
import tensorflow as tf

__all__ = ["FitMonitor", "fit_statistics"]


def label_ids(y):
    """Integer class ids (numpy int64 ``[N]``) from ids ``[N]``/``[N, 1]`` or one-hot ``[N, K]``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] > 1:
        return y.argmax(-1).astype("int64")
    return y.reshape(-1).astype("int64")


def _predict(model, data, batch_size):
    """``(pred_ids, given_ids, clean_ids_or_None)`` over ``data`` (arrays or a dataset)."""
    if isinstance(data, tf.data.Dataset):
        preds, given, clean = [], [], []
        for batch in data:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
            preds.append(np.asarray(model.predict_on_batch(x)).argmax(-1))
            if isinstance(y, dict):
                given.append(label_ids(y["label"]))
                if "clean_label" in y:
                    clean.append(label_ids(y["clean_label"]))
            else:
                given.append(label_ids(y))
        if not preds:
            raise ValueError("FitMonitor received an empty dataset.")
        cat = np.concatenate
        return cat(preds), cat(given), (cat(clean) if clean else None)
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "FitMonitor data must be a tf.data.Dataset or a tuple (x, labels) / "
            f"(x, noisy_labels, clean_labels). Received: {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )
    logits = model.predict(data[0], batch_size=batch_size, verbose=0)
    return (
        np.asarray(logits).argmax(-1),
        label_ids(data[1]),
        label_ids(data[2]) if len(data) == 3 else None,
    )


def fit_statistics(pred, given, clean=None):
    """Exact fit ratios of predictions ``pred`` against ``given`` (and ``clean``) labels.

    ``accuracy = mean(pred == given)``; with clean labels, ``clean_fit`` = accuracy on
    ``given == clean``, ``noisy_fit`` = ``mean(pred == given)`` and ``noisy_correct`` =
    ``mean(pred == clean)`` on ``given != clean``. A ratio over an empty subset is omitted.

    Returns:
        dict of floats.
    """
    pred, given = np.asarray(pred), np.asarray(given)
    out = {"accuracy": float(np.mean(pred == given))}
    if clean is not None:
        clean = np.asarray(clean)
        noisy = given != clean
        if (~noisy).any():
            out["clean_fit"] = float(np.mean(pred[~noisy] == given[~noisy]))
        if noisy.any():
            out["noisy_fit"] = float(np.mean(pred[noisy] == given[noisy]))
            out["noisy_correct"] = float(np.mean(pred[noisy] == clean[noisy]))
    return out


class FitMonitor(keras.callbacks.Callback):
    """Measures claim-4 metrics on the un-augmented training set and test accuracy per epoch.

    At the end of every epoch it predicts (in batches, ``training=False``) on

    - ``train``: ``(x, noisy_labels, clean_labels)`` arrays, or a dataset yielding
      ``(x, {"label": noisy, "clean_label": clean})`` (e.g. ``keras_imae.data.eval_dataset``);
      the same without clean labels gives only ``train_accuracy``;
    - ``test``: ``(x, y)`` arrays or a dataset yielding ``(x, y)`` / ``(x, {"label": y})``,

    and writes into the epoch ``logs`` ``train_accuracy``, ``train_clean_fit``,
    ``train_noisy_fit``, ``train_noisy_correct`` (see :func:`fit_statistics`),
    ``test_accuracy`` and ``best_test_accuracy``. Place it **before** ``CSVLogger``,
    ``TensorBoard``, ``EarlyStopping`` and ``ModelCheckpoint`` in the callbacks list so they see
    these keys (``History`` and the progress bar come last automatically).

    It also keeps the best test accuracy and its epoch, and the final one (CCE's final
    collapses under label noise; a robust loss's does not): :meth:`summary`.

    Args:
        train: Training data without augmentation, or ``None``.
        test: Test data, or ``None``.
        batch_size: Prediction batch size for array data.
        previous_test_accuracy: test accuracies of epochs trained before a resume (from the
            run's log), so ``best_test_accuracy`` and ``best_epoch`` cover the whole run.

    Attributes:
        best_test_accuracy, best_epoch (1-based), final_test_accuracy, last (dict of the
        latest measured values).
    """

    def __init__(self, train=None, test=None, *, batch_size=256, previous_test_accuracy=()):
        super().__init__()
        if train is None and test is None:
            raise ValueError("FitMonitor needs `train` or `test` data. Received neither.")
        self.train, self.test, self.batch_size = train, test, batch_size
        self.previous_test_accuracy = [float(a) for a in previous_test_accuracy]
        self._reset()

    def _reset(self):
        self.best_test_accuracy = -math.inf
        self.best_epoch = None
        self.final_test_accuracy = None
        self.last = {}
        for epoch, accuracy in enumerate(self.previous_test_accuracy):
            if accuracy > self.best_test_accuracy:
                self.best_test_accuracy, self.best_epoch = accuracy, epoch + 1

    def on_train_begin(self, logs=None):
        self._reset()

    def measure(self):
        """The monitor's values for the current weights (a dict of floats)."""
        values = {}
        if self.train is not None:
            stats = fit_statistics(*_predict(self.model, self.train, self.batch_size))
            values.update({f"train_{k}": v for k, v in stats.items()})
        if self.test is not None:
            pred, given, _ = _predict(self.model, self.test, self.batch_size)
            values["test_accuracy"] = float(np.mean(pred == given))
        return values

    def on_epoch_end(self, epoch, logs=None):
        values = self.measure()
        if "test_accuracy" in values:
            self.final_test_accuracy = values["test_accuracy"]
            if values["test_accuracy"] > self.best_test_accuracy:
                self.best_test_accuracy, self.best_epoch = values["test_accuracy"], epoch + 1
            values["best_test_accuracy"] = self.best_test_accuracy
        self.last = dict(values)
        if logs is not None:
            logs.update(values)

    def summary(self):
        """``dict``: best/final test accuracy, best epoch, and the latest train fit values."""
        out = {k: v for k, v in self.last.items() if k.startswith("train_")}
        if self.best_epoch is not None:
            out.update(
                best_test_accuracy=self.best_test_accuracy,
                best_epoch=self.best_epoch,
                final_test_accuracy=self.final_test_accuracy,
            )
        return out
