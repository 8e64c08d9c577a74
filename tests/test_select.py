"""Tests for keras_imae.run._select: the exported epoch chosen on the noisy validation
split (issue #21, item 2)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import noise, run_folder, training
from keras_imae.callbacks import TrainingCollapsed
from keras_imae.run import _noise, _select, _tune


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
    scores = [float(r["val_accuracy"]) for r in rows]  # the noisy labels, uncorrected
    exported = results["exported"]
    assert exported["selected_by"] == "val_accuracy"
    assert exported["epoch"] == int(np.argmax(scores)) + 1  # a tie: the earliest
    assert exported["val_accuracy"] == pytest.approx(max(scores), abs=1e-9)
    # the correction by the T estimated from the labels is logged beside it, not chosen by
    assert all(0 < float(r["val_accuracy_corrected"]) for r in rows)
    assert exported["val_accuracy_corrected"] == pytest.approx(
        float(rows[exported["epoch"] - 1]["val_accuracy_corrected"]), abs=1e-9)
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


def test_without_a_usable_estimate_no_corrected_score_is_logged(tmp_path, digits, monkeypatch):
    monkeypatch.setattr(_noise, "estimate_noise_transition",  # a confusion, not the noise
                        lambda *args: np.full((10, 10), 0.1))
    config = _config(tmp_path, noise_type="none", epochs=2, export_dir="")
    results = training.run(config, dataset=digits)
    assert results["exported"]["selected_by"] == "val_accuracy"
    assert "val_accuracy_corrected_final" not in results
    assert "val_accuracy_corrected" not in training.read_log(config.model_dir)[0]


def test_a_transition_corrects_only_when_identifiable_and_well_conditioned():
    pair = noise.transition_matrix(3, "pairflip", 0.3)
    usable, reason = _noise.usable_transition(pair)
    np.testing.assert_array_equal(usable, pair)
    assert reason is None
    confused = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    assert _noise.usable_transition(confused) == (
        None, "not identifiable: in row 1 the diagonal is not the largest entry")
    tied = noise.transition_matrix(2, "pairflip", 0.5)  # diagonal equal to the other entry
    assert _noise.usable_transition(tied)[0] is None
    near_singular = np.array([[0.5002, 0.4998], [0.4998, 0.5002]])  # condition number 2,500
    assert _noise.usable_transition(near_singular) == (None, "condition number 2.5e+03 > 1000")
    assert _noise.usable_transition(None) == (None, "no estimate")


def test_last_checkpoint_reports_the_last_epoch(tmp_path, digits):
    results = training.run(_config(tmp_path, checkpoint="last", epochs=2, export_dir=""),
                           dataset=digits)
    exported = results["exported"]
    assert exported["epoch"] == 2 and exported["selected_by"] is None
    assert exported["test_accuracy"] == results["test_accuracy_final"]
    assert exported["clean_fit"] == pytest.approx(results["clean_fit"])


def test_best_needs_a_validation_split(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint='best' and tune choose on a held-out.*"
                                         r"validation_fraction=0"):
        training.validate(_config(tmp_path, validation_fraction=0.0))
    with pytest.raises(ValueError, match=r"validation_fraction=0"):
        training.validate(_config(tmp_path, checkpoint="last", tune=True,
                                  validation_fraction=0.0))
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


def _fake_point_run(scores, calls):
    """A stand-in for one training run: writes a finished run folder whose exported model
    scores ``scores[i]`` on the noisy validation split (and the opposite T-corrected, which
    must not choose), ``i`` its grid point."""
    def run(config, *, dataset=None, strategy=None):
        index = int(os.path.basename(config.model_dir).split("-")[1])
        calls.append((index, config.lam, config.beta, config.checkpoint,
                      config.validation_fraction, config.export_dir, config.tune))
        os.makedirs(config.model_dir, exist_ok=True)
        model_path = os.path.join(config.model_dir, "model.keras")
        with open(model_path, "w") as f:
            f.write(f"model of point {index}")
        noise.save_noisy_labels(config.model_dir, np.zeros(3, int), np.zeros(3, bool))
        results = {"exported": {"val_accuracy": scores[index],
                                "val_accuracy_corrected": 1 - scores[index],
                                "test_accuracy": 0.5 + index / 100},
                   "model_keras": os.path.abspath(model_path)}
        training.write_json(os.path.join(config.model_dir, "metrics.json"), results)
        return results
    return run


def test_tune_keeps_the_best_point_and_a_tie_goes_to_the_run_default(tmp_path, digits):
    # DM on the MLP: grid (1, 16), (2, 8), (2, 16) = the run default, (2, 32).
    calls = []
    config = _config(tmp_path, tune=True, checkpoint=None, export_dir="")
    results = _tune.tuned_run(config, digits, None, _fake_point_run([0.5, 0.8, 0.8, 0.6], calls))
    assert [c[:3] for c in calls] == [(0, 1.0, 16.0), (1, 2.0, 8.0), (2, 2.0, 16.0),
                                      (3, 2.0, 32.0)]
    # every point: checkpoint "best" on the same 10% split, no export, not tuned itself
    assert {c[3:] for c in calls} == {("best", 0.1, "", False)}
    assert results["tuning"]["chosen"] == {"lam": 2.0, "beta": 16.0}  # tie 0.8: the default
    assert [p["score"] for p in results["tuning"]["points"]] == [0.5, 0.8, 0.8, 0.6]
    assert results["exported"]["test_accuracy"] == 0.52
    with open(tmp_path / "run" / "model.keras") as f:
        assert f.read() == "model of point 2"  # the chosen point's model is the run's
    with open(tmp_path / "run" / "metrics.json") as f:
        assert json.load(f)["tuning"]["chosen"] == {"lam": 2.0, "beta": 16.0}
    # A clear winner wins; finished points are read back, not trained again.
    os.remove(tmp_path / "run" / "metrics.json")
    os.remove(tmp_path / "run" / run_folder.TUNE / "point-3" / "metrics.json")
    calls.clear()
    results = _tune.tuned_run(config, digits, None, _fake_point_run([0.5, 0.8, 0.8, 0.9], calls))
    assert [c[0] for c in calls] == [3] and results["tuning"]["chosen"]["beta"] == 32.0
    # Resuming with other settings is refused, naming them.
    os.remove(tmp_path / "run" / "metrics.json")
    with pytest.raises(ValueError, match="seed 0 -> 1"):
        _tune.tuned_run(_config(tmp_path, tune=True, checkpoint=None, export_dir="", seed=1),
                        digits, None, _fake_point_run([0.5] * 4, calls))


def test_tune_skips_a_collapsed_point_and_fails_only_if_every_point_collapses(tmp_path,
                                                                               digits):
    calls = []
    fake = _fake_point_run([0.9, 0.5, 0.6, 0.7], calls)

    def run(config, *, dataset=None, strategy=None):
        if config.model_dir.endswith("point-0"):  # the best score, but it collapses
            raise TrainingCollapsed("Training collapsed at epoch 1: point 0")
        return fake(config, dataset=dataset, strategy=strategy)

    config = _config(tmp_path, tune=True, checkpoint=None, export_dir="")
    results = _tune.tuned_run(config, digits, None, run)
    points = results["tuning"]["points"]
    assert points[0]["score"] is None and "point 0" in points[0]["collapsed"]
    assert results["tuning"]["chosen"] == {"lam": 2.0, "beta": 32.0}  # 0.7: the best left

    def collapse(config, **_):
        raise TrainingCollapsed("Training collapsed at epoch 1: every point")

    with pytest.raises(TrainingCollapsed, match="every point"):
        _tune.tuned_run(_config(tmp_path / "b", tune=True, checkpoint=None, export_dir=""),
                        digits, None, collapse)


@pytest.mark.slow
def test_tune_end_to_end_exports_the_chosen_model(tmp_path, digits):
    config = _config(tmp_path, tune=True, checkpoint=None, epochs=1, loss="gce",
                     noise_type="pairflip")
    results = training.run(config, dataset=digits)
    points = results["tuning"]["points"]
    assert [p["point"] for p in points] == [{"q": q} for q in (0.3, 0.5, 0.7, 0.9)]
    best = max(points, key=lambda p: p["score"])
    assert results["tuning"]["chosen"] == best["point"]
    assert best["selected_by"] == "val_accuracy"  # the noisy labels, uncorrected
    with open(os.path.join(best["model_dir"], "metrics.json")) as f:
        assert json.load(f)["exported"] == results["exported"]
    model = keras.models.load_model(results["model_keras"])
    loaded = tf.saved_model.load(results["saved_model"])
    np.testing.assert_array_equal(
        loaded.serve(digits.x_test.astype("float32"))["classes"],
        model.predict(digits.x_test, verbose=0).argmax(-1))
    assert np.mean(model.predict(digits.x_test, verbose=0).argmax(-1) == digits.y_test) == \
        pytest.approx(results["exported"]["test_accuracy"], abs=1e-9)
    with pytest.raises(ValueError, match="already holds a finished run"):
        training.run(config, dataset=digits)
