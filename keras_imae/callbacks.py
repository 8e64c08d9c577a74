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

__all__ = ["CollapseGuard", "FitMonitor", "TrainingCollapsed", "fit_statistics",
           "logit_statistics"]


def label_ids(y):
    """Integer class ids (numpy int64 ``[N]``) from ids ``[N]``/``[N, 1]`` or one-hot ``[N, K]``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] > 1:
        return y.argmax(-1).astype("int64")
    return y.reshape(-1).astype("int64")


def _logits_of(model, data, batch_size):
    """``(logits, given_ids, clean_ids_or_None)`` over ``data`` (arrays or a dataset)."""
    if isinstance(data, tf.data.Dataset):
        logits, given, clean = [], [], []
        for batch in data:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
            logits.append(np.asarray(model.predict_on_batch(x)))
            if isinstance(y, dict):
                given.append(label_ids(y["label"]))
                if "clean_label" in y:
                    clean.append(label_ids(y["clean_label"]))
            else:
                given.append(label_ids(y))
        if not logits:
            raise ValueError("FitMonitor received an empty dataset.")
        cat = np.concatenate
        return cat(logits), cat(given), (cat(clean) if clean else None)
    # Array data was checked by FitMonitor.__init__.
    return (_predict_arrays(model, data[0], batch_size), label_ids(data[1]),
            label_ids(data[2]) if len(data) == 3 else None)


def _predict_arrays(model, x, batch_size):
    """Logits of ``x`` by ``predict_on_batch`` over slices: Keras' compiled predict step
    without ``predict``'s per-call set-up (data adapter, iterator, callbacks), which cost
    2-5x the prediction itself for a few thousand examples."""
    x = np.asarray(x)
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # predict_on_batch returns only this worker's share of a batch; predict gathers.
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def _check_arrays(data):
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "FitMonitor data must be a tf.data.Dataset or a tuple (x, labels) / "
            f"(x, noisy_labels, clean_labels). Received: {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )


def _log_p_given(logits, ids):
    """``(log p_c, log (1 - p_c))`` of the given classes, float64, without cancellation."""
    z = np.asarray(logits, "float64")
    z_c = z[np.arange(len(z)), ids]
    others = z.copy()
    others[np.arange(len(z)), ids] = -np.inf
    top = others.max(-1)
    lse_other = top + np.log(np.exp(others - top[:, None]).sum(-1))
    lse = np.logaddexp(lse_other, z_c)
    return z_c - lse, lse_other - lse


EMPHASIS_BANDS = (0.1, 0.9)  # p < 0.1 "low", 0.1 <= p <= 0.9 "mid", p > 0.9 "high"


def logit_statistics(logits, given, loss=None):
    """How saturated the model is, and where the loss puts its emphasis, on one data set.

    - ``logit_scale``: median over examples of ``max_k |z_k|``. Past ~90, float32
      probabilities are exactly 0 or 1 and every emphasis density sees only its end points.
    - ``top_class_fraction``: share of the most frequent predicted class (1.0: constant
      predictions).
    - ``emphasis_low`` / ``emphasis_mid`` / ``emphasis_high``: share of the loss's total
      emphasis ``sum_i w(p_i)`` (``p_i`` the probability of example i's given label) held by
      examples with ``p < 0.1``, ``0.1 <= p <= 0.9`` and ``p > 0.9`` -- only for losses with an
      emphasis density (``loss.log_emphasis``; DM, IMAE, CCE, MAE, GCE, SCE). Computed in
      the log domain, exact for any ``beta``.

    Returns:
        dict of floats.
    """
    logits = np.asarray(logits)
    given = np.asarray(given)
    pred = logits.argmax(-1)
    out = {
        "logit_scale": float(np.median(np.abs(logits).max(-1))),
        "top_class_fraction": float(np.bincount(pred).max() / len(pred)),
    }
    log_emphasis = getattr(loss, "log_emphasis", None)
    if log_emphasis is not None and len(given):
        log_p, log_q = _log_p_given(logits, given)
        log_w = np.asarray(keras.ops.convert_to_numpy(
            log_emphasis(np.exp(log_p).astype("float32"),
                         one_minus_p=np.exp(log_q).astype("float32"))), "float64")
        finite = np.isfinite(log_w)
        if finite.any():
            w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
            p = np.exp(log_p)
            low, high = EMPHASIS_BANDS
            total = w.sum()
            out["emphasis_low"] = float(w[p < low].sum() / total)
            out["emphasis_mid"] = float(w[(p >= low) & (p <= high)].sum() / total)
            out["emphasis_high"] = float(w[p > high].sum() / total)
    return out


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
    ``train_logit_scale``, ``train_top_class_fraction`` and, for losses with an emphasis
    density, ``train_emphasis_low|mid|high`` (see :func:`logit_statistics`),
    ``test_accuracy`` and ``best_test_accuracy``. When train and test are arrays of the same
    shape, one prediction pass per epoch covers both. Place it **before** ``CSVLogger``,
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

    def __init__(self, train=None, test=None, *, batch_size=1024, previous_test_accuracy=()):
        super().__init__()
        if train is None and test is None:
            raise ValueError("FitMonitor needs `train` or `test` data. Received neither.")
        self.train, self.test, self.batch_size = train, test, batch_size
        for data in (train, test):
            if data is not None and not isinstance(data, tf.data.Dataset):
                _check_arrays(data)
        self._joint = None
        self.last_train_logits = None
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

    def _joint_arrays(self):
        """Train and test inputs concatenated once, when both are arrays of one shape: the
        monitor then runs a single prediction pass per epoch."""
        if self._joint is None:
            train, test = self.train, self.test
            joint = (isinstance(train, (tuple, list)) and isinstance(test, (tuple, list))
                     and len(train) in (2, 3) and len(test) == 2)
            if joint:
                a, b = np.asarray(train[0]), np.asarray(test[0])
                joint = a.shape[1:] == b.shape[1:] and a.dtype == b.dtype
            self._joint = np.concatenate([a, b]) if joint else False
        return self._joint

    def measure(self):
        """The monitor's values for the current weights (a dict of floats)."""
        values = {}
        joint = self._joint_arrays()
        if joint is not False:
            logits = _predict_arrays(self.model, joint, self.batch_size)
            n = len(self.train[0])
            train = (logits[:n], label_ids(self.train[1]),
                     label_ids(self.train[2]) if len(self.train) == 3 else None)
            test = (logits[n:], label_ids(self.test[1]))
        else:
            train = (_logits_of(self.model, self.train, self.batch_size)
                     if self.train is not None else None)
            test = (_logits_of(self.model, self.test, self.batch_size)[:2]
                    if self.test is not None else None)
        if train is not None:
            logits, given, clean = train
            stats = fit_statistics(logits.argmax(-1), given, clean)
            stats.update(logit_statistics(logits, given, getattr(self.model, "loss", None)))
            values.update({f"train_{k}": v for k, v in stats.items()})
            self.last_train_logits = logits
        if test is not None:
            logits, given = test
            values["test_accuracy"] = float(np.mean(logits.argmax(-1) == given))
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
      with it the logits grow without bound, see the README);
    - ``train_top_class_fraction`` (share of the most predicted class on the training set)
      at or above ``max_top_class_fraction``: constant predictions.

    Args:
        max_logit_scale: bound on the median max |logit|; ``None`` disables the check.
        max_top_class_fraction: bound on the most predicted class's share; ``None``
            disables it. Raise it for data in which one class holds nearly every label.
    """

    def __init__(self, *, max_logit_scale=1000.0, max_top_class_fraction=0.98):
        super().__init__()
        for name, value in (("max_logit_scale", max_logit_scale),
                            ("max_top_class_fraction", max_top_class_fraction)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"Invalid value for argument `{name}`. Expected a positive "
                                 f"number or None. Received: {name}={value!r}")
        self.max_logit_scale = max_logit_scale
        self.max_top_class_fraction = max_top_class_fraction

    def check(self, logs):
        """The reasons ``logs`` show a collapse (empty list: healthy)."""
        reasons = []
        bad = sorted(k for k, v in (logs or {}).items() if _is_number(v)
                     and not math.isfinite(float(v)))  # Keras logs: floats or 0-d arrays
        if bad:
            reasons.append(f"non-finite values: {', '.join(f'{k}={logs[k]}' for k in bad)}")
        scale = (logs or {}).get("train_logit_scale")
        if self.max_logit_scale is not None and scale is not None and scale > self.max_logit_scale:
            reasons.append(f"train_logit_scale={scale:.4g} > max_logit_scale="
                           f"{self.max_logit_scale:g} (the logits are diverging)")
        top = (logs or {}).get("train_top_class_fraction")
        if (self.max_top_class_fraction is not None and top is not None
                and top >= self.max_top_class_fraction):
            reasons.append(f"train_top_class_fraction={top:.4f} >= max_top_class_fraction="
                           f"{self.max_top_class_fraction:g} (constant predictions)")
        return reasons

    def on_epoch_end(self, epoch, logs=None):
        reasons = self.check(logs)
        if reasons:
            self.model.stop_training = True
            raise TrainingCollapsed(
                f"Training collapsed at epoch {epoch + 1}: " + "; ".join(reasons) + ". The "
                "model is not saved or exported. See the README section 'Keeping DM stable'.")
