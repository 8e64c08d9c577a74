"""Tests for keras_imae.distribute and RobustModel under tf.distribute strategies.

conftest.py splits the CPU into two logical devices, so MirroredStrategy(["/cpu:0", "/cpu:1"])
stands in for two GPUs. Multi-worker training runs two real worker processes on localhost.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import losses, models
from keras_imae.config import optimizers
from keras_imae.run import distribute

from fit_cases import CLEAN, EXPECTED, GIVEN, LOGITS  # hand-made batches

CPUS = ["/cpu:0", "/cpu:1"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCCE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


# -- strategy selection ------------------------------------------------------------------------
def test_default_one_device_and_auto_on_cpu():
    assert distribute.get_strategy() is tf.distribute.get_strategy()
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    one = distribute.get_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert one.extended.worker_devices[0].endswith("CPU:0")
    if not tf.config.list_logical_devices("GPU"):  # this machine and CI
        assert distribute.get_strategy("auto") is tf.distribute.get_strategy()


def test_mirrored_on_explicit_devices():
    strategy = distribute.get_strategy("mirrored", devices=CPUS)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="needs a GPU-less host")
def test_mirrored_without_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="'mirrored' requested but no GPU"):
        distribute.get_strategy("mirrored")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(name="horovod"), ValueError, r"Expected one of \['default'"),
        (dict(name="mirrored", devices=["/gpu:7"]), ValueError, "'/gpu:7'.*not available"),
        (dict(name="mirrored", devices=["not a device"]), ValueError, "not available"),
        (dict(name="mirrored", devices=[]), ValueError, "must not be empty"),
        (dict(name="default", devices=CPUS), ValueError, "`devices` is only used"),
        (dict(name="mirrored", devices=CPUS, tpu="x"), ValueError, "`tpu` is only used"),
    ],
)
def test_strategy_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        distribute.get_strategy(**kwargs)


@pytest.mark.parametrize(
    "tf_config,match",
    [
        (None, "TF_CONFIG environment variable"),
        ("{not json", "Invalid TF_CONFIG"),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), "Invalid TF_CONFIG"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}),
         "worker:1 is not in the cluster"),
    ],
)
def test_multi_worker_needs_valid_tf_config(monkeypatch, tf_config, match):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(RuntimeError, match=match):
        distribute.get_strategy("multi_worker")


def test_tpu_not_found_is_an_error():
    with pytest.raises(RuntimeError, match="no TPU was found at tpu=None"):
        distribute.get_strategy("tpu")


def test_tpu_path_with_mocked_resolver(monkeypatch):
    calls = []

    class FakeResolver:
        def __init__(self, tpu=None):
            calls.append(("resolver", tpu))

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                        lambda r: calls.append(("connect", type(r))))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        lambda r: calls.append(("init", type(r))))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("TPUStrategy", type(r)))
    assert distribute.get_strategy("tpu", tpu="grpc://10.0.0.2:8470") == (
        "TPUStrategy", FakeResolver)
    assert calls == [("resolver", "grpc://10.0.0.2:8470"), ("connect", FakeResolver),
                     ("init", FakeResolver)]
    calls.clear()
    assert distribute.get_strategy("auto", tpu="my-tpu")[0] == "TPUStrategy"
    monkeypatch.setenv("TPU_NAME", "env-tpu")
    assert distribute.get_strategy("auto")[0] == "TPUStrategy"
    assert calls[0] == ("resolver", "my-tpu") and calls[3] == ("resolver", None)


def test_set_precision():
    try:
        for policy in distribute.PRECISIONS:
            assert distribute.set_precision(policy).name == policy
            assert keras.mixed_precision.dtype_policy().name == policy
        with pytest.raises(ValueError, match=r"policy='float16'"):
            distribute.set_precision("float16")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


# -- RobustModel under MirroredStrategy --------------------------------------------------------
def one_step_weights(strategy, loss, x, y, **state):
    with strategy.scope():
        model = models.build_model("mlp", (x.shape[1],), 4, seed=7)
        model.compile(keras.optimizers.SGD(0.5), loss)
    if state:  # the loss's phase, written as the callbacks write it
        model.loss.state.assign(**state)
    ds = tf.data.Dataset.from_tensor_slices((x, {"label": y, "clean_label": y})).batch(len(x))
    model.fit(ds, epochs=1, verbose=0)
    kept = len(getattr(getattr(model.loss, "state", None), "names", ()))  # the loss's state
    return model.get_weights()[:-kept or None]  # the network's weights


@pytest.mark.parametrize("loss_name", ["scce", "dm", "dm_flat", "dm_pairs"])
def test_mirrored_step_equals_single_device(loss_name):
    # dm_flat and dm_pairs: the loss's state (mirrored variables, RobustModel.compile builds
    # it in the scope) read by every replica: the warm-up's flat emphasis, pair margins.
    state = {}
    if loss_name == "dm":
        loss = lambda: losses.DerivativeManipulation(beta=8.0, lam=1.0)  # noqa: E731
    elif loss_name.startswith("dm_"):
        loss = lambda: losses.DerivativeManipulation(beta=8.0, lam=1.0,  # noqa: E731
                                                     reject_margin=1.0)
        state = dict(flat_emphasis=loss_name == "dm_flat",
                     noise_transition=np.full((4, 4), 0.1) + 0.6 * np.eye(4))
    else:
        loss = lambda: SCCE  # noqa: E731
    rng = np.random.default_rng(0)
    x = (3.0 * rng.normal(size=(32, 6))).astype("float32")
    y = rng.integers(0, 4, 32)
    single = one_step_weights(tf.distribute.get_strategy(), loss(), x, y, **state)
    mirrored = one_step_weights(distribute.get_strategy("mirrored", devices=CPUS), loss(), x,
                                y, **state)
    initial = models.build_model("mlp", (6,), 4, seed=7).get_weights()
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(single, initial))  # it trained
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if loss_name == "dm_flat":  # the state acted: the step of beta=0 without a cap
        flat = one_step_weights(tf.distribute.get_strategy(),
                                losses.DerivativeManipulation(beta=0.0, lam=1.0), x, y)
        for a, b in zip(flat, mirrored):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_fit_metrics_are_exact():
    with distribute.get_strategy("mirrored", devices=CPUS).scope():
        inputs = keras.Input((3,))
        out = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")(inputs)
        model = models.RobustModel(inputs, out)
        model.compile(keras.optimizers.SGD(0.0), SCCE)
    ds = tf.data.Dataset.from_tensor_slices((LOGITS, {"label": GIVEN, "clean_label": CLEAN}))
    ds = ds.batch(6)  # global batches of 6 and 4, 3+3 and 2+2 per replica
    logs = {k: v[-1] for k, v in model.fit(ds, verbose=0).history.items()}
    for name, value in EXPECTED.items():
        assert logs[name] == pytest.approx(value, abs=1e-7), name
    logs = model.evaluate(ds.map(lambda x, y: (x, y["label"])), verbose=0, return_dict=True)
    assert sorted(logs) == ["accuracy", "loss"] and logs["accuracy"] == pytest.approx(0.7)


# -- resume ------------------------------------------------------------------------------------
def resume_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int32")


def resume_model(seed):
    model = models.build_model("mlp", (5,), 2, seed=seed)
    opt = optimizers.make_optimizer(learning_rate=0.05, schedule="step", epochs=6,
                                    steps_per_epoch=4)
    model.compile(opt, SCCE)
    return model


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt("simulated preemption")


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()


def test_backup_and_restore_finishes_exactly_the_planned_epochs(tmp_path):
    x, y = resume_data()
    fit = dict(batch_size=16, epochs=6, shuffle=False, verbose=0)
    first = resume_model(seed=0)
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, callbacks=[distribute.backup_and_restore(tmp_path), _Interrupt()], **fit)
    assert os.path.isdir(tmp_path / "backup")
    second, start = resume_model(seed=1), _WeightsAtStart()  # a fresh process's new model
    history = second.fit(x, y, callbacks=[distribute.backup_and_restore(tmp_path), start], **fit)
    assert history.epoch == [3, 4, 5]  # epochs 1-3 done before; 6 in all
    for a, b in zip(start.weights, first.get_weights()):
        np.testing.assert_array_equal(a, b)  # continued from the interrupted weights
    reference = resume_model(seed=0)
    reference.fit(x, y, **fit)
    assert int(second.optimizer.iterations) == int(reference.optimizer.iterations) == 24
    for a, b in zip(second.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not os.path.exists(tmp_path / "backup")  # deleted once the run completed


# -- multi-worker: two local processes ---------------------------------------------------------
COMMON = textwrap.dedent(
    """
    import numpy as np
    import keras
    import tensorflow as tf
    from keras_imae import callbacks, models

    def data():
        rng = np.random.default_rng(3)
        x = rng.normal(size=(64, 6)).astype("float32")
        clean = (x[:, 0] > 0).astype("int32") + 2 * (x[:, 1] > 0).astype("int32")
        noisy = np.where(rng.uniform(size=64) < 0.25, (clean + 1) % 4, clean)
        ds = tf.data.Dataset.from_tensor_slices((x, {"label": noisy, "clean_label": clean}))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return ds.batch(16).with_options(options)  # global batch 16, 4 steps per epoch

    def train(strategy):
        with strategy.scope():
            model = models.build_model("mlp", (6,), 4, seed=5)
            model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = next(iter(data().unbatch().batch(64)))
        monitor = callbacks.FitMonitor((x.numpy(), y["label"].numpy(), y["clean_label"].numpy()),
                                       batch_size=16)
        history = model.fit(data(), epochs=2, verbose=0, callbacks=[monitor]).history
        return model.get_weights(), history
    """
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    from keras_imae.run import distribute
    strategy = distribute.get_strategy("multi_worker")  # first: before any other TF op
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mw_common import train
    import numpy as np
    weights, history = train(strategy)
    np.savez(sys.argv[1], *weights)
    with open(sys.argv[1] + ".json", "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.items()}, f)
    """
)


@pytest.mark.slow
def test_multi_worker_fit_two_local_workers(tmp_path, free_ports):
    (tmp_path / "mw_common.py").write_text(COMMON)
    (tmp_path / "worker.py").write_text(WORKER)
    workers = [f"localhost:{p}" for p in free_ports(2)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    procs = []
    for i in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [sys.executable, str(tmp_path / "worker.py"), str(tmp_path / f"w{i}.npz")],
            env=dict(env, TF_CONFIG=json.dumps(config)), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    deadline, outputs = time.monotonic() + 150, []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("multi-worker training timed out:\n" + "\n".join(
            (p.communicate()[0] or "")[-3000:] for p in procs))
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-5000:]

    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    w0, w1 = ([w[f"arr_{j}"] for j in range(len(w.files))] for w in (w0, w1))
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)  # the workers agree exactly
    # ... and equal single-device training on the same global batches.
    namespace = {}
    exec(COMMON, namespace)
    reference, ref_history = namespace["train"](tf.distribute.get_strategy())
    for a, b in zip(w0, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Epoch metrics are exact global values on every worker.
    for i in range(2):
        history = json.loads((tmp_path / f"w{i}.npz.json").read_text())
        assert sorted(history) == sorted(ref_history)
        assert {"noisy_fit", "train_noisy_fit"} <= set(history)  # RobustModel + FitMonitor
        for key, values in ref_history.items():
            np.testing.assert_allclose(history[key], values, rtol=1e-5, err_msg=key)
