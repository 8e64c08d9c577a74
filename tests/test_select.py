"""Tests for keras_imae.training._select: the exported epoch chosen on the noisy validation
split (issue #21, item 2)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import noise, training
from keras_imae.training import _select


def _config(tmp_path, **overrides):
    base = dict(epochs=4, verbose=0, model_dir=str(tmp_path / "run"),
                export_dir=str(tmp_path / "export"), checkpoint="best")
    base.update(overrides)
    return training.RunConfig(**base)


@pytest.mark.slow
def test_the_best_validation_epoch_is_exported_and_measured(tmp_path, digits):
    config = _config(tmp_path, noise_type="pairflip")
    results = training.run(config, dataset=digits)
    rows = training.read_log(config.model_dir)
    scores = [float(r["val_accuracy_corrected"]) for r in rows]  # the run drew the noise: T
    exported = results["exported"]
    assert exported["selected_by"] == "val_accuracy_corrected"
    assert exported["epoch"] == int(np.argmax(scores)) + 1
    assert exported["val_accuracy_corrected"] == pytest.approx(max(scores), abs=1e-9)
    # What it reports is what the exported model does, on the test split and the training set.
    model = keras.models.load_model(results["model_keras"])
    predict = lambda x: model.predict(x, batch_size=512, verbose=0).argmax(-1)  # noqa: E731
    assert exported["test_accuracy"] == pytest.approx(
        np.mean(predict(digits.x_test) == digits.y_test), abs=1e-9)
    assert exported["test_accuracy"] == pytest.approx(
        float(rows[exported["epoch"] - 1]["test_accuracy"]), abs=1e-9)
    loaded = tf.saved_model.load(results["saved_model"])
    np.testing.assert_array_equal(loaded.serve(digits.x_test.astype("float32"))["classes"],
                                  predict(digits.x_test))
    # metrics.json keeps the last epoch under its usual keys.
    assert results["test_accuracy_final"] == pytest.approx(float(rows[-1]["test_accuracy"]))
    assert results["clean_fit"] == pytest.approx(float(rows[-1]["train_clean_fit"]))
    with open(os.path.join(config.model_dir, "config.json")) as f:
        resolved = json.load(f)["resolved"]
    assert (resolved["checkpoint"], resolved["validation_fraction"]) == ("best", 0.1)
    assert not os.path.exists(os.path.join(config.model_dir, _select.CHECKPOINTS))  # cleaned
    noisy, is_noisy, _, _ = noise.load_noisy_labels(config.model_dir)
    assert len(noisy) == len(digits.y_train)  # the whole split's labels are recorded


def test_real_noise_is_chosen_by_plain_noisy_accuracy(tmp_path, digits):
    config = _config(tmp_path, noise_type="none", epochs=2, export_dir="")
    results = training.run(config, dataset=digits)
    assert results["exported"]["selected_by"] == "val_accuracy"  # T unknown
    assert "val_accuracy_corrected_final" not in results


def test_last_checkpoint_reports_the_last_epoch(tmp_path, digits):
    results = training.run(_config(tmp_path, checkpoint="last", epochs=2, export_dir=""),
                           dataset=digits)
    exported = results["exported"]
    assert exported["epoch"] == 2 and exported["selected_by"] is None
    assert exported["test_accuracy"] == results["test_accuracy_final"]
    assert exported["clean_fit"] == pytest.approx(results["clean_fit"])


def test_best_needs_a_validation_split(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint='best' chooses the exported epoch.*"
                                         r"validation_fraction=0"):
        training.validate(_config(tmp_path, validation_fraction=0.0))
    with pytest.raises(ValueError, match="Expected one of \\['last', 'best'\\]"):
        training.validate(_config(tmp_path, checkpoint="first"))


def test_a_resumed_run_keeps_the_best_epoch_so_far(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    rows = [{"epoch": "0", "val_accuracy": "0.7"}, {"epoch": "1", "val_accuracy": "0.9"},
            {"epoch": "2", "val_accuracy": "0.8"}]
    callback = _select.checkpoint_callback(str(tmp_path), "val_accuracy", rows)
    assert callback.best == 0.9  # an epoch after the resume must beat 0.9 to be kept
    os.makedirs(tmp_path / _select.CHECKPOINTS)
    model.save_weights(tmp_path / _select.CHECKPOINTS / "epoch-0001.weights.h5")
    (tmp_path / _select.CHECKPOINTS / "epoch-0002.weights.h5").write_bytes(b"truncated")
    with pytest.raises(FileNotFoundError):
        _select.restore_best(model, str(tmp_path), rows[2:], "val_accuracy")
    assert _select.restore_best(model, str(tmp_path), rows, "val_accuracy") == 1  # 2 unreadable
