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


def pytest_collection_modifyitems(items):
    """The ``slow`` tests first, each file's in its order: under the README's ``pytest -n 2``
    (``--dist=worksteal``) the long ones then start early and the two workers finish
    together, rather than one long test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
    """``free_ports(n)``: ``n`` localhost ports free right now (for multi-worker clusters).

    Under pytest-xdist each worker takes only ports of its own residue modulo the number of
    workers, so two tests running at the same time never get the same port (a port is
    released before the cluster binds it, and the OS may give it out again meanwhile)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])

    def ports(n):
        socks, found = [], []
        while len(found) < n:  # each socket held until the end: n distinct ports
            socks.append(socket.socket())
            socks[-1].bind(("localhost", 0))
            port = socks[-1].getsockname()[1]
            if port % count == index:
                found.append(port)
        for s in socks:
            s.close()
        return found

    return ports
