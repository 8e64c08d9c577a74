"""Tests for keras_imae.export: the serving SavedModel and its atomic replacement."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae.run_folder import export


def test_export_matches_in_memory_model(finished_run, digits):
    config, results = finished_run
    model = keras.models.load_model(results["model_keras"])
    x = digits.x_test[:64].astype(np.float32)
    want = tf.nn.softmax(model(x, training=False)).numpy()
    loaded = tf.saved_model.load(results["saved_model"])
    np.testing.assert_allclose(loaded.serve(x)["probabilities"].numpy(), want, atol=1e-6)
    signature = loaded.signatures["serving_default"]
    np.testing.assert_allclose(signature(images=tf.constant(x))["probabilities"].numpy(), want,
                               atol=1e-6)
    layer = keras.layers.TFSMLayer(results["saved_model"], call_endpoint="serve")
    out = layer(x)
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), want.argmax(-1))


def test_export_refuses_existing_target_and_replaces_atomically(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    target = tmp_path / "sm"
    export.export_saved_model(model, target)
    with pytest.raises(FileExistsError, match="overwrite"):
        export.export_saved_model(model, target)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    export.export_saved_model(other, target, overwrite=True)
    x = np.ones((1, 3), np.float32)
    loaded = tf.saved_model.load(str(target))
    got = loaded.serve(x)["probabilities"].numpy()
    np.testing.assert_allclose(got, tf.nn.softmax(other(x)).numpy(), atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["sm"]  # no temporary folders left behind
    with pytest.raises(ValueError, match="no defined input"):
        export.export_saved_model(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "x")


def test_failed_export_replacement_keeps_the_previous_export(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    target = tmp_path / "sm"
    export.export_saved_model(model, target)
    before = sorted(os.listdir(target))
    real_rename = os.rename

    def failing_rename(src, dst):
        if os.path.basename(str(dst)) == "sm" and ".tmp-" in str(src):
            raise OSError("disk full")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        export.export_saved_model(model, target, overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(target)) == before
    assert sorted(os.listdir(tmp_path)) == ["sm"]


def test_a_full_disk_during_a_runs_export_says_the_training_is_kept(tmp_path, monkeypatch):
    class FullDisk:  # TF's SavedModel writer raises ResourceExhaustedError, not OSError
        def write_out(self, path, **kwargs):
            os.makedirs(os.path.join(path, "variables"))
            raise tf.errors.ResourceExhaustedError(None, None, "out of disk")

    monkeypatch.setattr(export, "_serving_archive", lambda model: FullDisk())
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(export.ExportFailed, match=r"Training finished and is saved in 'run/"
                                                  r"model.keras', but the export to .* failed: "
                                                  r"\[Errno 28\] No space left on device .*"
                                                  r"\(out of disk\); "
                                                  r"nothing was replaced\. .*run the same "
                                                  r"command again"):
        export.export_finished_run(model, str(tmp_path / "sm"), overwrite=False,
                                   model_dir="run", model_path="run/model.keras")
    assert os.listdir(tmp_path) == []


def test_an_export_that_loses_the_race_for_a_new_target_is_refused(tmp_path, monkeypatch):
    # Another export claims the target while this one is writing (issue #32): without
    # --overwrite this one is refused and the winner's export stays whole.
    first = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    second = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    target = tmp_path / "sm"
    marker = export.run_folder.write_export_marker

    def racing_marker(folder, source):
        monkeypatch.setattr(export.run_folder, "write_export_marker", marker)
        export.export_saved_model(second, target)  # the other export finishes first
        marker(folder, source)

    monkeypatch.setattr(export.run_folder, "write_export_marker", racing_marker)
    with pytest.raises(FileExistsError, match="was written by another process meanwhile"):
        export.export_saved_model(first, target)
    x = np.ones((1, 3), np.float32)
    loaded = tf.saved_model.load(str(target))
    np.testing.assert_allclose(loaded.serve(x)["probabilities"].numpy(),
                               tf.nn.softmax(second(x)).numpy(), atol=1e-6)
    assert os.listdir(tmp_path) == ["sm"]
