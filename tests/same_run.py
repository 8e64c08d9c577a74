"""The bit-for-bit resume checks' harness (test_reliability, test_backbones).

A check is a script run in two processes: ``first`` (runs stopped by a SIGTERM mid-epoch, and
the uninterrupted runs they are compared with), then ``resume`` (the stopped commands again).
TensorFlow's op determinism is process-global, hence the subprocesses. A helper module, not
a test file: the tests import it instead of importing each other.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

# The script's head: argv is (folder, phase, ...); `sigterm_at` holds (epoch, batch) pairs
# after which the process sends itself SIGTERM, as a scheduler would, mid-epoch.
PREAMBLE = textwrap.dedent("""
    import os, signal, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    import keras
    from keras_imae import data, training
    from keras_imae.run import signals

    folder, phase = sys.argv[1:3]
    fit, sigterm_at = keras.Model.fit, []

    class SigtermAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) in sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)  # only recorded (keras_imae's handler)

    keras.Model.fit = lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, SigtermAt()], **k)
""")


def first_then_resume(tmp_path, body, *args, timeout):
    """Runs ``PREAMBLE + body`` as ``script FOLDER first ARGS`` then ``script FOLDER resume
    ARGS`` (FOLDER is ``tmp_path``); returns each process's printed words."""
    script = tmp_path / "same_run.py"
    script.write_text(PREAMBLE + textwrap.dedent(body))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    outputs = []
    for phase in ("first", "resume"):
        done = subprocess.run([sys.executable, str(script), str(tmp_path), phase, *args],
                              env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout.split())
    return outputs


def assert_same_runs(tmp_path, names, reference="uninterrupted", epochs=3):
    """The runs ``names`` (folders under ``tmp_path``) have ``reference``'s ``log.csv``, byte
    for byte, and its final weights, bit for bit."""
    logs = {name: (tmp_path / name / "log.csv").read_text() for name in (reference, *names)}
    assert len(logs[reference].splitlines()) == epochs + 1  # the header and the epochs
    for name in names:
        assert logs[name] == logs[reference], name
    weights = {name: keras.saving.load_model(tmp_path / name / "model.keras",
                                             compile=False).get_weights() for name in logs}
    for name in names:
        for a, b in zip(weights[name], weights[reference], strict=True):
            np.testing.assert_array_equal(a, b)
