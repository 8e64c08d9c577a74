"""Tests for keras_imae.models._keras_compat: the canary for every private Keras hook we use.

If one of these fails after a Keras upgrade, read the module docstring of
``keras_imae/models/_keras_compat.py`` before changing anything: each hook works around a
named upstream problem.
"""

import inspect
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import models
from keras_imae.models import _keras_compat as keras_compat
from keras_imae.run import distribute

from fit_cases import SCCE

CPUS = ["/cpu:0", "/cpu:1"]


# -- 1. MultiWorkerMirroredStrategy + fit (keras-team/keras#20585) ------------------------------
def test_private_symbolic_build_hook_still_exists():
    """Fails loudly when Keras changes what the MWMS work-around relies on."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    cls = tf_trainer.TensorFlowTrainer
    hook = cls._maybe_symbolic_build
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]
    hook_src = inspect.getsource(hook)
    assert "self._distribute_strategy is None" in hook_src
    assert "for _, _, it in iterator" in hook_src
    assert "self._maybe_symbolic_build(iterator=epoch_iterator)" in inspect.getsource(cls.fit)
    assert "self._maybe_symbolic_build(iterator=epoch_iterator)" in inspect.getsource(
        cls.evaluate)
    assert "self._maybe_symbolic_build(data_batch=" in inspect.getsource(cls.train_on_batch)
    # Failure 2, which `multi_worker_logs` answers: scalar logs reduced along axis 0.
    assert 'strategy.reduce("MEAN", v, axis=0)' in inspect.getsource(
        tf_trainer.reduce_per_replica)
    with tf.distribute.get_strategy().scope():
        assert "_distribute_strategy" in vars(models.build_model("mlp", (2,), 2))
    assert models.RobustModel._maybe_symbolic_build is keras_compat.KerasHooks._maybe_symbolic_build


def test_symbolic_build_hook_is_used_under_a_strategy(monkeypatch):
    calls = []
    original = keras_compat.KerasHooks._maybe_symbolic_build

    def spy(self, iterator=None, data_batch=None):
        calls.append(iterator is not None)
        return original(self, iterator=iterator, data_batch=data_batch)

    monkeypatch.setattr(keras_compat.KerasHooks, "_maybe_symbolic_build", spy)
    with distribute.get_strategy("mirrored", devices=CPUS).scope():
        model = models.build_model("mlp", (3,), 2, seed=0)
        model.compile("sgd", SCCE)
    x, y = np.ones((4, 3), "float32"), np.array([0, 1, 0, 1])
    model.fit(x, {"label": y, "clean_label": y}, batch_size=4, verbose=0)
    model.train_on_batch(x, {"label": y})
    assert calls == [True, False]


def test_first_local_replica_and_single_worker_logs_pass_through():
    strategy = distribute.get_strategy("mirrored", devices=CPUS)
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([ctx.replica_id_in_sync_group]))
    batch = keras_compat.first_local_replica({"x": values, "n": 3}, strategy)
    assert batch["n"] == 3 and batch["x"].numpy().tolist() == [0]
    logs = {"loss": tf.constant(1.0)}
    assert keras_compat.multi_worker_logs(logs) is logs  # rank-1 only in multi-worker mode


def test_keras_version_outside_tested_range_warns(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_compat.check_keras_version()  # the installed, tested version: silent
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.warns(RuntimeWarning, match="keras.__version__=3.99.0"):
        keras_compat.check_keras_version()


# -- 2. epoch logs without an undefined ratio --------------------------------------------------
def test_private_metrics_result_hook_still_exists():
    from keras.src.trainers import trainer

    hook = trainer.Trainer._get_metrics_result_or_logs
    assert list(inspect.signature(hook).parameters) == ["self", "logs"]
    assert "set(logs.keys()) == set(" in inspect.getsource(hook)  # what we relax
    from keras.src.backend.tensorflow import trainer as tf_trainer

    for method in (tf_trainer.TensorFlowTrainer.fit, tf_trainer.TensorFlowTrainer.evaluate):
        assert "self._get_metrics_result_or_logs(logs)" in inspect.getsource(method)


# -- 3. resuming: fit starts at model._initial_epoch --------------------------------------------
def test_fit_still_reads_the_initial_epoch_a_callback_sets():
    from keras.src.backend.jax import trainer as jax_trainer
    from keras.src.backend.tensorflow import trainer as tf_trainer

    for cls in (tf_trainer.TensorFlowTrainer, jax_trainer.JAXTrainer):
        source = inspect.getsource(cls.fit)
        assert source.index("callbacks.on_train_begin()") < source.index(
            "initial_epoch = self._initial_epoch or initial_epoch"), cls

    class StartAt(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_compat.set_initial_epoch(self.model, 2)

    model = models.build_model("mlp", (3,), 2, seed=0)
    model.compile("sgd", SCCE)
    x, y = np.zeros((8, 3), "float32"), np.zeros(8, "int32")
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[StartAt()])
    assert history.epoch == [2, 3]
