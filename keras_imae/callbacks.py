"""The callbacks of a run: the end-of-epoch fit monitor (clean fit, memorisation and test
accuracy, measured exactly), the collapse guard and the flat-emphasis warm-up.

References:
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
    Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
    Matters." arXiv:1903.12141, 2019 (claim: a robust model fits the clean training examples
    and not the noisy ones).
"""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from keras_imae import checks

__all__ = ["CollapseGuard", "EmphasisWarmup", "FitMonitor", "TrainingCollapsed",
           "fit_statistics", "logit_statistics"]


def label_ids(y):
    """Integer class ids ``[N]`` from ids ``[N]``/``[N, 1]`` or one-hot ``[N, K]``."""
    return checks.label_ids(y, one_hot=True)


PassResult = collections.namedtuple(
    "PassResult", ["ids", "pred", "given", "clean", "max_abs", "log_p", "log_q"])
PassResult.__doc__ = """Per-example results of one prediction pass, sorted by example id.

``pred`` predicted class, ``given``/``clean`` labels (``clean`` is ``None`` without clean
labels; -1 marks an unverified example), ``max_abs`` = ``max_k |z_k|``, ``log_p``/``log_q``
= ``log p_c`` / ``log (1 - p_c)`` of the given class ``c`` (float64): five numbers per
example, never the logits."""


def _targets_of(y, count, position):
    """``(given, clean_or_None, ids)`` of one batch's targets."""
    if isinstance(y, dict):
        clean = label_ids(y["clean_label"]) if "clean_label" in y else None
        ids = np.asarray(y["id"]).reshape(-1) if "id" in y else None
        given = label_ids(y["label"])
    else:
        given, clean, ids = label_ids(y), None, None
    if ids is None:  # no ids: the position in the pass
        ids = np.arange(position, position + count)
    return given, clean, ids


def predict_pass(model, dataset):
    """One prediction pass over ``dataset`` (yielding ``(x, y)``, ``y`` labels or
    ``{"label"[, "clean_label"][, "id"]}``), accumulated by example id.

    Memory is a few numbers per example (:class:`PassResult`), not the logits, so a streamed
    training set (:func:`keras_imae.streaming.eval_dataset`, which yields ids) is measured
    without being materialised. Without ``"id"`` an example's id is its position in the pass.

    Raises:
        ValueError: an empty dataset, or an id seen twice.
    """
    parts, position = [], 0
    for batch in dataset:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        logits = _predict_arrays(model, x, len(x))
        given, clean, ids = _targets_of(y, len(logits), position)
        position += len(logits)
        log_p, log_q = _log_p_given(logits, given)
        parts.append((ids, logits.argmax(-1), given, clean, np.abs(logits).max(-1), log_p, log_q))
    if not parts:
        raise ValueError("FitMonitor received an empty dataset.")
    columns = [None if col[0] is None else np.concatenate(col) for col in zip(*parts)]
    order = np.argsort(columns[0], kind="stable")
    if len(np.unique(columns[0])) != len(order):
        raise ValueError("FitMonitor: the dataset yields some example id more than once; "
                         "measure an unshuffled, unrepeated pass (e.g. streaming.eval_dataset).")
    return PassResult(*(None if col is None else col[order] for col in columns))


def _pass_from_logits(logits, given, clean):
    logits = np.asarray(logits)
    log_p, log_q = _log_p_given(logits, given)
    return PassResult(np.arange(len(logits)), logits.argmax(-1), given, clean,
                      np.abs(logits).max(-1), log_p, log_q)


def _replicated(model):
    """Whether ``model`` runs under a strategy with several replicas: then
    ``predict_on_batch`` returns only this worker's share of a batch
    (``MultiWorkerMirroredStrategy``) or every local replica's prediction of the whole batch
    (``MirroredStrategy``), and ``predict``, which splits and gathers, is used instead."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    return strategy is not None and strategy.num_replicas_in_sync > 1


def _predict_arrays(model, x, batch_size):
    """Logits of ``x`` by ``predict_on_batch`` over slices: Keras' compiled predict step
    without ``predict``'s per-call set-up (data adapter, iterator, callbacks), which cost
    2-5x the prediction itself for a few thousand examples."""
    x = np.asarray(x)
    if _replicated(model):
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
    return pass_logit_statistics(_pass_from_logits(logits, given, None), loss)


def pass_logit_statistics(result, loss=None):
    """:func:`logit_statistics` from a :class:`PassResult` (no logits needed)."""
    out = {
        "logit_scale": float(np.median(result.max_abs)),
        "top_class_fraction": float(np.bincount(result.pred).max() / len(result.pred)),
    }
    log_emphasis = getattr(loss, "log_emphasis", None)
    if log_emphasis is not None and len(result.given):
        log_p, log_q = result.log_p, result.log_q
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

    A clean label of -1 marks an unverified example (a label file whose clean labels cover
    a subset, as in Clothing1M): ``clean_fit``, ``noisy_fit`` and ``noisy_correct`` then
    cover the verified examples only, and ``verified_fraction`` (their share) is added so the
    output says so; ``accuracy`` covers every example.

    Returns:
        dict of floats.
    """
    pred, given = np.asarray(pred), np.asarray(given)
    out = {"accuracy": float(np.mean(pred == given))}
    if clean is not None:
        clean = np.asarray(clean)
        verified = clean >= 0
        if not verified.all():
            out["verified_fraction"] = float(np.mean(verified))
        noisy = (given != clean) & verified
        kept = ~noisy & verified
        if kept.any():
            out["clean_fit"] = float(np.mean(pred[kept] == given[kept]))
        if noisy.any():
            out["noisy_fit"] = float(np.mean(pred[noisy] == given[noisy]))
            out["noisy_correct"] = float(np.mean(pred[noisy] == clean[noisy]))
    return out


class FitMonitor(keras.callbacks.Callback):
    """Measures claim-4 metrics on the un-augmented training set and test accuracy per epoch.

    At the end of every epoch it predicts (in batches, ``training=False``) on

    - ``train``: ``(x, noisy_labels, clean_labels)`` arrays, or a dataset yielding
      ``(x, {"label": noisy, "clean_label": clean[, "id": example_id]})`` (e.g.
      ``keras_imae.data.eval_dataset``, or ``keras_imae.streaming.eval_dataset`` for a
      streamed training set); the same without clean labels gives only ``train_accuracy``.
      A dataset is measured in one pass accumulated by example id (:func:`predict_pass`:
      a few numbers per example, never the logits or the images); a clean label of -1 marks
      an unverified example and adds ``train_verified_fraction`` (see
      :func:`fit_statistics`);
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
        latest measured values); ``last_train_ids`` and ``last_train_scores`` (the
        mislabel score ``1 - p(given label)`` of each training example, in id order: what
        :func:`keras_imae.ranking.mislabel_scores` ranks), and ``last_train_logits`` for
        array data only.
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
        self.last_train_ids = self.last_train_scores = None
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
        if joint is not False:  # train and test arrays: one prediction pass
            logits = _predict_arrays(self.model, joint, self.batch_size)
            n = len(self.train[0])
            self.last_train_logits = logits[:n]
            train = _pass_from_logits(logits[:n], label_ids(self.train[1]),
                                      label_ids(self.train[2]) if len(self.train) == 3 else None)
            test = (logits[n:].argmax(-1), label_ids(self.test[1]))
        else:
            train = self._train_pass()
            test = None
            if isinstance(self.test, tf.data.Dataset):
                result = predict_pass(self.model, self.test)
                test = (result.pred, result.given)
            elif self.test is not None:
                test = (_predict_arrays(self.model, self.test[0], self.batch_size).argmax(-1),
                        label_ids(self.test[1]))
        if train is not None:
            stats = fit_statistics(train.pred, train.given, train.clean)
            stats.update(pass_logit_statistics(train, getattr(self.model, "loss", None)))
            values.update({f"train_{k}": v for k, v in stats.items()})
            self.last_train_ids, self.last_train_scores = train.ids, -np.expm1(train.log_p)
        if test is not None:
            pred, given = test
            values["test_accuracy"] = float(np.mean(pred == given))
        return values

    def _train_pass(self):
        """The training set's :class:`PassResult`; keeps the logits of array data only."""
        if self.train is None:
            return None
        if isinstance(self.train, tf.data.Dataset):  # streamed: accumulated by id
            self.last_train_logits = None
            return predict_pass(self.model, self.train)
        train = self.train
        self.last_train_logits = _predict_arrays(self.model, train[0], self.batch_size)
        return _pass_from_logits(self.last_train_logits, label_ids(train[1]),
                                 label_ids(train[2]) if len(train) == 3 else None)

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
    """

    def __init__(self, *, max_logit_scale=1000.0, max_top_class_fraction=0.98, patience=5):
        super().__init__()
        for name, value in (("max_logit_scale", max_logit_scale),
                            ("max_top_class_fraction", max_top_class_fraction)):
            if value is not None:  # None: that check is off
                checks.number(name, value, low_open=True)
        self.max_logit_scale = max_logit_scale
        self.max_top_class_fraction = max_top_class_fraction
        self.patience = checks.integer("patience", patience, low=1)
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

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        reasons = self.update(logs, last_epoch=last)
        if reasons:
            self.model.stop_training = True
            raise TrainingCollapsed(
                f"Training collapsed at epoch {epoch + 1}: " + "; ".join(reasons) + ". The "
                "model is not saved or exported. See the README section 'Keeping DM stable'.")


class EmphasisWarmup(keras.callbacks.Callback):
    """Trains the first ``epochs`` epochs with DM's (or IMAE's) emphasis flat, then with the
    loss as configured.

    During the warm-up the compiled loss runs with its emphasis strength at 0 (DM ``beta=0``,
    IMAE ``temperature=0``: ``w = 1``, every example pushed along ``(p - y)`` with the same
    unit force, normalisation and ``max_margin`` unchanged); from epoch ``epochs`` on, with
    its own value. This project's schedule, not the papers'; why (README, "Keeping DM
    stable", part 7): with ``lam > 1`` DM's emphasis is asymmetric around ``p = 1/2``, and
    under class-dependent noise a region the network first assigns to the class its wrong
    labels name is *held* there, its wrong labels near the mode and its clean ones at low
    ``p`` (a second stable state; the majority wins everywhere only when
    ``(1 - r) w(p) > r w(1 - p)`` for every ``p``). With a flat emphasis the majority wins
    everywhere, so the first epochs sort the regions by their majority label before the
    emphasis starts rejecting the wrong labels.

    Switches in ``on_epoch_begin`` (a resumed run restarts in the right phase) by setting
    ``model.loss.flat_emphasis`` and rebuilding the step function
    (``model.make_train_function(force=True)``, read by ``fit`` at every step on the
    TensorFlow and JAX backends). The loss is left as configured when ``fit`` returns. Keras
    skips ``on_train_end`` when an exception escapes ``fit``: a fit interrupted during the
    warm-up leaves the loss flat until the next ``fit`` with an ``EmphasisWarmup`` (of any
    length, 0 included) or ``model.loss.flat_emphasis = False``.

    Args:
        epochs: number of warm-up epochs, ``>= 0`` (0: no warm-up).
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = checks.integer("epochs", epochs, low=0)

    def on_train_begin(self, logs=None):
        if self.epochs and getattr(type(self.model.loss), "EMPHASIS_STRENGTH", None) is None:
            raise ValueError(
                "EmphasisWarmup needs a model compiled with one loss that has an emphasis "
                "strength (keras_imae.losses.DerivativeManipulation or IMAE). Received: "
                f"loss={self.model.loss!r}")

    def on_epoch_begin(self, epoch, logs=None):
        self._set_flat(epoch < self.epochs)

    def on_train_end(self, logs=None):
        self._set_flat(False)  # a fit stopped early by a callback, during the warm-up

    def _set_flat(self, flat):
        # getattr: with epochs=0 any loss is accepted, and a loss left flat by an earlier
        # fit that raised is reset here too.
        if getattr(self.model.loss, "flat_emphasis", False) != flat:
            self.model.loss.flat_emphasis = flat
            self.model.make_train_function(force=True)
