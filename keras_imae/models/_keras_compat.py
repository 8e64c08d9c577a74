"""Every use of a private Keras hook in keras_imae, in one place.

:class:`KerasHooks` is a mixin of :class:`keras_imae.models.RobustModel`;
:func:`set_initial_epoch` serves the run's backup callback. Nothing else in the package
touches Keras internals. ``tests/test_keras_compat.py`` is the canary: it fails loudly the day
Keras renames a hook or changes its signature, and checks what each work-around is for.
Tested on the Keras versions in :data:`TESTED_KERAS_VERSIONS`; on another version the first
``fit`` warns.

1. MultiWorkerMirroredStrategy + Keras 3 ``fit`` (keras-team/keras#20585, open since 2024).

   - ``TensorFlowTrainer._maybe_symbolic_build`` builds the model from the first batch of a
     ``DistributedDataset``, reduced with ``strategy.reduce("MEAN", batch, axis=None)``; under
     the collective (multi-worker) strategy that reduce fails on a ``PerReplica`` batch. Only
     shapes and dtypes matter for the symbolic build, so :class:`KerasHooks` builds from the
     first local replica's batch instead (:func:`first_local_replica`).
   - ``reduce_per_replica`` reduces every step log with ``strategy.reduce("MEAN", v, axis=0)``
     in multi-worker mode, which fails for scalars. :func:`multi_worker_logs` returns rank-1
     (shape ``[1]``) logs in exactly that mode; the reduction then yields scalars again.
     Epoch-end logs come from ``get_metrics_result`` and are exact cross-worker values.

2. A ratio over an empty subset is omitted from the epoch logs (``noisy_fit`` of an epoch
   without a noisy example is undefined, not 0% memorised). ``Trainer._get_metrics_result_or_logs``
   uses ``get_metrics_result()`` only when its keys *equal* those of the last step's logs, and
   the in-graph step cannot drop a key; :class:`KerasHooks` also accepts a subset.

3. Resuming a run (:class:`keras_imae.run_folder.RunBackup`): ``fit`` starts at
   ``model._initial_epoch`` when a callback set it in ``on_train_begin``, as Keras' own
   ``BackupAndRestore`` does; :func:`set_initial_epoch` is that one assignment.
"""

import warnings

import keras

from keras_imae import _backend

__all__ = ["TESTED_KERAS_VERSIONS", "KerasHooks", "first_local_replica", "multi_worker_logs",
           "set_initial_epoch"]

TESTED_KERAS_VERSIONS = ("3.15",)  # major.minor prefixes the hooks here are tested on.


def check_keras_version():
    """Warns (``RuntimeWarning``) on a Keras version the hooks were not tested on."""
    major_minor = ".".join(keras.__version__.split(".")[:2])
    if major_minor not in TESTED_KERAS_VERSIONS:
        warnings.warn(
            f"keras_imae.models.RobustModel overrides the private Keras hook "
            f"`_maybe_symbolic_build` (work-around for keras-team/keras#20585), tested on "
            f"Keras {', '.join(v + '.x' for v in TESTED_KERAS_VERSIONS)}. Received: "
            f"keras.__version__={keras.__version__}. Multi-worker training may break; run "
            f"tests/test_keras_compat.py.",
            RuntimeWarning,
            stacklevel=3,
        )


def set_initial_epoch(model, epoch):
    """Make the ``fit`` that is starting begin at ``epoch`` (from a callback's
    ``on_train_begin``; Keras 3.15's ``fit`` reads ``model._initial_epoch`` right after it)."""
    model._initial_epoch = int(epoch)


def first_local_replica(batch, strategy):
    """``batch`` with every ``DistributedValues`` replaced by its first local component."""

    tf = _backend.tf()

    def first(v):
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(v)[0]
        return v

    return keras.tree.map_structure(first, batch)


def multi_worker_logs(logs):
    """Rank-1 logs when Keras will reduce them with ``axis=0`` (multi-worker mode)."""
    tf = _backend.tf()
    strategy = tf.distribute.get_strategy()
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )
    if not multi_worker:
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


class KerasHooks:
    """Overrides of private ``keras.Model`` hooks (see the module docstring).

    The model defines ``_symbolic_build_batch(batch)``: the ``(x, y, sample_weight)`` batch the
    compiled loss and metrics are built from.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Overrides ``TensorFlowTrainer._maybe_symbolic_build`` (Keras 3.15, private).

        Same as upstream, except that (1) a distributed first batch is reduced to its first
        local replica instead of ``strategy.reduce("MEAN", ...)`` (fails under
        ``MultiWorkerMirroredStrategy``), and (2) the batch goes through the model's
        ``_symbolic_build_batch``.
        """
        check_keras_version()
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:  # As upstream: take the first batch.
                data_batch = next(it)
                break
            iterator = None
        if data_batch is not None:
            data_batch = first_local_replica(data_batch, self.distribute_strategy)
            data_batch = self._symbolic_build_batch(data_batch)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _get_metrics_result_or_logs(self, logs):
        """Overrides ``Trainer._get_metrics_result_or_logs`` (Keras 3.15, private).

        Upstream returns ``get_metrics_result()`` when its keys equal those of the last
        step's ``logs`` and ``logs`` otherwise; here a subset of the keys suffices, so a
        ratio that ``get_metrics_result`` omits stays omitted.
        """
        metric_logs = self.get_metrics_result()
        if isinstance(logs, dict) and set(metric_logs) <= set(logs):
            return metric_logs
        return logs
