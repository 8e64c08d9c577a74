"""The end-of-epoch fit monitor: clean fit, memorisation and test accuracy, measured exactly.

References:
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
    Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
    Matters." arXiv:1903.12141, 2019 (claim: a robust model fits the clean training examples
    and not the noisy ones).
"""

import math

import keras
import numpy as np

from keras_imae import noise
from keras_imae.callbacks._passes import (_check_arrays, _pass_from_logits, _predict_arrays,
                                          fit_statistics, is_tf_dataset, label_ids,
                                          pass_logit_statistics, predict_pass)

__all__ = ["FitMonitor"]


class FitMonitor(keras.callbacks.Callback):
    """Measures claim-4 metrics on the un-augmented training set and test accuracy per epoch.

    At the end of every epoch it predicts (in batches, ``training=False``) on

    - ``train``: ``(x, noisy_labels, clean_labels)`` arrays, or a dataset yielding
      ``(x, {"label": noisy, "clean_label": clean[, "id": example_id]})`` (e.g.
      ``keras_imae.data.eval_dataset(..., with_ids=True)``, in memory or for a
      streamed training set); the same without clean labels gives only ``train_accuracy``.
      A dataset is measured in one pass accumulated by example id (:func:`predict_pass`:
      a few numbers per example, never the logits or the images); a clean label of -1 marks
      an unverified example and adds ``train_verified_fraction`` (see
      :func:`fit_statistics`);
    - ``test``: ``(x, y)`` arrays or a dataset yielding ``(x, y)`` / ``(x, {"label": y})``;
    - ``validation``: a held-out split with its *noisy* labels, as ``test``: gives
      ``val_accuracy`` (accuracy on the noisy labels) and, with ``transition`` (the noise's
      ``T``, ``T[i, j] = P(noisy = j | clean = i)``), ``val_accuracy_corrected``, the unbiased
      estimate of clean accuracy of :func:`keras_imae.noise.corrected_accuracy` -- what a
      run picks its exported epoch by, with no clean label,

    and writes into the epoch ``logs`` ``train_accuracy``, ``train_clean_fit``,
    ``train_noisy_fit``, ``train_noisy_correct`` (see :func:`fit_statistics`),
    ``train_logit_scale``, ``train_top_class_fraction``, for losses with an emphasis
    density ``train_emphasis_low|mid|high`` and, for DM and IMAE, ``train_rejected`` and
    ``train_rejected_wrong`` (the rejection cap's reach; see :func:`logit_statistics`),
    ``test_accuracy`` and ``best_test_accuracy``. When train and test are arrays of the same
    shape, one prediction pass per epoch covers both. Place it **before** ``CSVLogger``,
    ``TensorBoard``, ``EarlyStopping`` and ``ModelCheckpoint`` in the callbacks list so they see
    these keys (``History`` and the progress bar come last automatically).

    It also keeps the best test accuracy and its epoch, and the final one (CCE's final
    collapses under label noise; a robust loss's does not): :meth:`summary`.

    Args:
        train: Training data without augmentation, or ``None``.
        test: Test data, or ``None``.
        validation: Noisy validation data, or ``None``.
        transition: ``(K, K)`` noise transition matrix of the validation labels, or ``None``.
        batch_size: Prediction batch size for array data.
        previous_test_accuracy: test accuracies of epochs trained before a resume (from the
            run's log), so ``best_test_accuracy`` and ``best_epoch`` cover the whole run.

    Attributes:
        best_test_accuracy, best_epoch (1-based), final_test_accuracy, last (dict of the
        latest measured values); ``last_train_ids`` and ``last_train_scores`` (the
        mislabel score ``1 - p(given label)`` of each training example, in id order: what
        :func:`keras_imae.label_issues.find_label_issues` scores), and ``last_train_logits`` for
        array data only.
    """

    def __init__(self, train=None, test=None, *, validation=None, transition=None,
                 batch_size=1024, previous_test_accuracy=()):
        super().__init__()
        if train is None and test is None:
            raise ValueError("FitMonitor needs `train` or `test` data. Received neither.")
        if transition is not None and validation is None:
            raise ValueError("FitMonitor's `transition` corrects the validation accuracy: it "
                             "needs `validation` data. Received: validation=None")
        self.train, self.test, self.batch_size = train, test, batch_size
        self.validation, self.transition = validation, transition
        for data in (train, test, validation):
            if data is not None and not is_tf_dataset(data):
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
            if is_tf_dataset(self.test):
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
        if self.validation is not None:
            values.update(self._validation_accuracy())
        return values

    def _validation_accuracy(self):
        if is_tf_dataset(self.validation):
            result = predict_pass(self.model, self.validation)
            pred, noisy = result.pred, result.given
        else:
            pred = _predict_arrays(self.model, self.validation[0], self.batch_size).argmax(-1)
            noisy = label_ids(self.validation[1])
        values = {"val_accuracy": float(np.mean(pred == noisy))}
        if self.transition is not None:
            values["val_accuracy_corrected"] = noise.corrected_accuracy(noisy, pred,
                                                                        self.transition)
        return values

    def _train_pass(self):
        """The training set's :class:`PassResult`; keeps the logits of array data only."""
        if self.train is None:
            return None
        if is_tf_dataset(self.train):  # streamed: accumulated by id
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
