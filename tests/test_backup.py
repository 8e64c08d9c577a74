"""Tests for keras_imae.run_folder._backup: crash-consistent backups that resume from the last
good epoch."""
import json
import os
import warnings

import h5py
import keras
import numpy as np
import pytest

from keras_imae import models
from keras_imae.run_folder._backup import METADATA, WEIGHTS, RunBackup, good_generation

from fit_cases import KillAfter


def _model(seed=0, input_dropout=0.0):
    model = models.build_model("mlp", (4,), 3, seed=seed, input_dropout=input_dropout)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)


def test_generations_are_complete_folders_and_the_last_two_are_kept(tmp_path):
    x, y = _data()
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, verbose=0, callbacks=[RunBackup(tmp_path), KillAfter(3)])
    assert sorted(os.listdir(tmp_path)) == ["epoch-000002", "epoch-000003"]
    for name in os.listdir(tmp_path):
        assert sorted(os.listdir(tmp_path / name)) == [METADATA, WEIGHTS]
    assert good_generation(tmp_path) == (3, str(tmp_path / "epoch-000003" / WEIGHTS))


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_a_truncated_backup_is_skipped_with_a_warning_and_the_run_resumes_before_it(tmp_path):
    x, y = _data()
    first = _model()
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, y, epochs=6, verbose=0, callbacks=[RunBackup(tmp_path), KillAfter(4)])
    _truncate(tmp_path / "epoch-000004" / WEIGHTS)  # a disk that filled up mid-write
    with h5py.File(tmp_path / "epoch-000003" / WEIGHTS, "r") as f:
        assert len(f.keys())  # the older one is whole
    second = _model(seed=1)
    with pytest.warns(RuntimeWarning, match=r"epoch-000004' \(epoch 4\) cannot be read back"):
        history = second.fit(x, y, epochs=6, verbose=0, callbacks=[RunBackup(tmp_path)])
    assert history.epoch == [3, 4, 5]  # resumed after epoch 3, the last good one
    assert not os.path.exists(tmp_path)  # deleted once fit completed (delete_when_done)


def test_a_writer_failing_midway_keeps_the_previous_backup_and_says_so(tmp_path, monkeypatch):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[RunBackup(tmp_path, delete_when_done=False)])
    original = keras.Model.save_weights

    def fails_at_byte_n(self, filepath, *args, **kwargs):  # a full disk: a partial file, then
        original(self, filepath, *args, **kwargs)
        with open(filepath, "r+b") as f:
            f.truncate(200)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", fails_at_byte_n)
    with pytest.raises(OSError, match=r"Could not write the backup of epoch 3 .*No space left "
                                      r"on device.*The backup of epoch 2 is intact"):
        model.fit(x, y, epochs=5, verbose=0,
                  callbacks=[RunBackup(tmp_path, delete_when_done=False)])
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["epoch-000001", "epoch-000002"]  # no partial one
    resumed = _model(seed=1)
    history = resumed.fit(x, y, epochs=5, verbose=0, callbacks=[RunBackup(tmp_path)])
    assert history.epoch == [2, 3, 4]


def test_a_crash_leaves_only_a_temporary_folder_which_the_next_run_removes(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[RunBackup(tmp_path, delete_when_done=False)])
    partial = tmp_path / ".tmp-epoch-000002-999999"
    partial.mkdir()
    (partial / WEIGHTS).write_bytes(b"\x89HDF\r\n")  # killed while writing
    assert good_generation(tmp_path)[0] == 1
    history = _model(seed=1).fit(x, y, epochs=3, verbose=0, callbacks=[RunBackup(tmp_path)])
    assert history.epoch == [1, 2] and not os.path.exists(tmp_path)


def test_keras_backups_of_older_versions_still_resume(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0)
    model.save_weights(tmp_path / "latest.weights.h5")
    (tmp_path / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 0}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _model(seed=1).fit(x, y, epochs=4, verbose=0, callbacks=[RunBackup(tmp_path)])
    assert not [w for w in caught if "cannot be read back" in str(w.message)]  # whole
    assert history.epoch == [2, 3]


def _generator_states(model):
    weights = {id(v) for v in model.weights}
    return [v.numpy().tolist() for v in model.variables if id(v) not in weights]


def test_dropout_generators_resume_where_they_stopped(tmp_path):
    # save_weights leaves the Keras SeedGenerator states out: restored from the weights
    # alone, a resumed run's dropout masks would restart at those of its first step.
    x, y = _data()
    model = _model(input_dropout=0.5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=4, verbose=0,
                  callbacks=[RunBackup(tmp_path), KillAfter(2)])
    stopped = _generator_states(model)
    restored = []

    class Restored(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            restored.append(_generator_states(self.model))

    resumed = _model(seed=1, input_dropout=0.5)  # another seed: other generator states
    assert _generator_states(resumed) != stopped
    resumed.fit(x, y, batch_size=8, epochs=4, verbose=0,
                callbacks=[RunBackup(tmp_path, delete_when_done=False), Restored()])
    assert restored == [stopped]
    # A backup written without them (an earlier version) resumes, and says what differs.
    metadata = tmp_path / "epoch-000004" / METADATA
    metadata.write_text(json.dumps({"epoch": 4}))
    with pytest.warns(RuntimeWarning, match=r"epoch-000004' holds no random generator state "
                                            r"for this model .*dropout masks restart"):
        history = _model(input_dropout=0.5).fit(x, y, epochs=5, verbose=0,
                                                callbacks=[RunBackup(tmp_path)])
    assert history.epoch == [4]
