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


# The longest tests (substrings of their ids: seconds of the suite under -n 2 on 2 cores
# shared with other jobs, load 7-12, 2026-12-07): run first, so that none starts late and runs
# alone at the end. Only the order depends on these figures; a stale one costs time, never a
# test.
LONGEST = {
    "test_library_on_the_jax_backend": 810, "docs/training.md:169": 612,
    "docs/label_issues.md:32": 294, "tiny_size[streaming.py]": 218,
    "tiny_size[finetune_study.py]": 188, "docs/results.md:12": 176, "docs/training.md:226": 164,
    "tiny_size[finetune_epoch.py]": 159, "tiny_size[jax_train_step.py]": 157,
    "docs/finetuning.md": 128, "bit_for_bit": 111, "test_script_end_to_end_with_removal": 87,
    "test_comparison_protocol_selects_on_noisy_validation": 84,
    "test_tune_end_to_end_exports_the_chosen_model": 77,
}


def _weight(item):
    """A slow test's expected cost (its LONGEST figure, else 30); fast tests: 0."""
    if item.get_closest_marker("slow") is None:
        return 0
    return next((s for key, s in LONGEST.items() if key in item.nodeid), 30)


def pytest_collection_modifyitems(items):
    """The ``slow`` tests first, the longest first, each file's in its order: under the
    README's ``pytest -n 2`` (``--dist=worksteal``) the long ones then start early and the
    two workers finish together, rather than one long test running alone at the end (a
    worker that runs out of tests steals the tail of the other's queue: the short ones)."""
    items.sort(key=_weight, reverse=True)  # stable: ties keep the collection's order


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
