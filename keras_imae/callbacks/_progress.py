"""Keras' progress bar, showing only the figures a person watches."""

import keras

__all__ = ["PROGRESS_METRICS", "ProgressBar"]

# loss, accuracy on the (noisy) labels, clean fit, memorisation and test accuracy
PROGRESS_METRICS = ("loss", "accuracy", "clean_fit", "noisy_fit", "test_accuracy")


class ProgressBar(keras.callbacks.ProgbarLogger):
    """``verbose=1``'s progress bar with only the ``metrics`` named (those that exist).

    ``fit`` uses a ``ProgbarLogger`` found among its callbacks instead of its own, where it
    stands in the list: put this one after the callbacks that add values at the epoch end
    (:class:`FitMonitor`'s ``test_accuracy``). The bar gets a filtered copy of the logs, so
    every value still reaches the callbacks that record them (``CSVLogger``, ``TensorBoard``)
    and ``verbose=2`` prints them all.

    Args:
        metrics: the names shown, in the logs' order.
    """

    def __init__(self, metrics=PROGRESS_METRICS):
        super().__init__()
        self.metrics = tuple(metrics)

    def _shown(self, logs):
        return {key: value for key, value in (logs or {}).items() if key in self.metrics}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._shown(logs))
