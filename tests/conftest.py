"""Test-session set-up and the fixtures shared by several test files.

The CPU is split into two logical devices before TensorFlow initialises its runtime, so
``tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])`` can stand in for two GPUs. This must
happen before any TensorFlow op runs, hence at conftest import.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import socket  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset (scikit-learn), loaded once per session."""
    from keras_imae import data

    return data.load("digits")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, digits):
    """``(config, results)`` of one finished 3-epoch default run on digits, with its export."""
    from keras_imae import training

    tmp = tmp_path_factory.mktemp("finished")
    config = training.RunConfig(epochs=3, verbose=0, model_dir=str(tmp / "run"),
                                export_dir=str(tmp / "export"))
    return config, training.run(config, dataset=digits)


@pytest.fixture
def free_ports():
    """``free_ports(n)``: ``n`` localhost ports free right now (for multi-worker clusters)."""

    def ports(n):
        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("localhost", 0))
        found = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        return found

    return ports
