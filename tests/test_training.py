"""Tests for keras_imae.training, export, evaluation, plotting and comparison (in process)."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import comparison, data, evaluation, export, losses, noise, plotting, training


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def _config(tmp_path, **overrides):
    base = dict(epochs=2, verbose=0, model_dir=str(tmp_path / "run"),
                export_dir=str(tmp_path / "export"))
    base.update(overrides)
    return training.RunConfig(**base)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits):
    tmp = tmp_path_factory.mktemp("finished")
    config = _config(tmp, epochs=3)
    return config, training.run(config, dataset=digits)


def test_run_writes_everything(finished_run, digits):
    config, results = finished_run
    files = set(os.listdir(config.model_dir))
    assert {"noisy_labels.npz", "config.json", "log.csv", "model.keras", "metrics.json",
            "tensorboard"} <= files
    assert "backup" not in files  # BackupAndRestore cleans up after a completed fit
    with open(os.path.join(config.model_dir, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(results))
    assert len(results["history"]["test_accuracy"]) == 3
    assert results["test_accuracy_final"] == results["history"]["test_accuracy"][-1]
    assert results["test_accuracy_best"] == max(results["history"]["test_accuracy"])
    assert results["noise_rate_realised"] == pytest.approx(0.4, abs=0.01)
    for key in ("clean_fit", "noisy_fit", "noisy_correct"):
        assert 0.0 <= results[key] <= 1.0
    assert results["loss"]["name"] == "derivative_manipulation"
    assert 0.0 <= results["mislabel_ranking"]["roc_auc"] <= 1.0
    table = training.format_results(results)
    assert "noisy memorisation" in table and "ROC-AUC" in table


def test_noisy_labels_saved_match_a_fresh_corruption(finished_run, digits):
    config, _ = finished_run
    noisy, is_noisy, clean, _ = noise.load_noisy_labels(config.model_dir)
    again, again_mask = noise.corrupt_labels(digits.y_train, 10, "symmetric", 0.4, 0)
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(is_noisy, again_mask)
    np.testing.assert_array_equal(clean, digits.y_train)


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


def test_keras_file_reloads_with_dm_and_trains_on(finished_run, digits):
    _, results = finished_run
    model = keras.models.load_model(results["model_keras"])
    assert isinstance(model.loss, losses.DerivativeManipulation)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(data.train_dataset(digits.x_train, digits.y_train, batch_size=64), epochs=1,
              verbose=0)
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, model.trainable_weights))


def test_evaluation_of_both_formats_agrees(finished_run, digits):
    _, results = finished_run
    a = evaluation.evaluate(evaluation.load_predictor(results["saved_model"]), digits.x_test,
                            digits.y_test, 10)
    b = evaluation.evaluate(evaluation.load_predictor(results["model_keras"]), digits.x_test,
                            digits.y_test, 10)
    assert a["accuracy"] == pytest.approx(results["test_accuracy_final"], abs=1e-9)
    assert a["accuracy"] == b["accuracy"] and len(a["per_class_accuracy"]) == 10
    counts = np.bincount(digits.y_test, minlength=10)
    assert np.dot(a["per_class_accuracy"], counts) / counts.sum() == pytest.approx(a["accuracy"])


def test_load_predictor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model at"):
        evaluation.load_predictor(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="Could not load the Keras model file"):
        evaluation.load_predictor(corrupt)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="Could not load the SavedModel"):
        evaluation.load_predictor(tmp_path / "empty_dir")


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


def test_interrupted_run_resumes_to_the_planned_epochs(tmp_path, digits):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    config = _config(tmp_path, epochs=4, export_dir="")
    original_fit = keras.Model.fit

    def interrupted_fit(self, *args, callbacks=(), **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, Interrupt()], **kwargs)

    keras.Model.fit = interrupted_fit
    try:
        with pytest.raises(KeyboardInterrupt):
            training.run(config, dataset=digits)
    finally:
        keras.Model.fit = original_fit
    assert os.path.isdir(os.path.join(config.model_dir, "backup"))
    saved = noise.load_noisy_labels(config.model_dir)[0]
    results = training.run(config, dataset=digits)
    assert [int(e) for e in np.arange(4)] == list(range(len(results["history"]["loss"])))
    np.testing.assert_array_equal(noise.load_noisy_labels(config.model_dir)[0], saved)


def test_resume_reuses_saved_corruption_even_with_other_noise_flags(tmp_path, digits):
    first = _config(tmp_path, epochs=1, export_dir="")
    training.run(first, dataset=digits)
    saved = noise.load_noisy_labels(first.model_dir)[0]
    second = dataclasses.replace(first, noise_seed=5)
    training.run(second, dataset=digits)
    np.testing.assert_array_equal(noise.load_noisy_labels(first.model_dir)[0], saved)


def test_noisy_labels_argument_shares_a_corruption(tmp_path, digits):
    noisy, is_noisy = noise.corrupt_labels(digits.y_train, 10, "pairflip", 0.3, 11)
    path = noise.save_noisy_labels(tmp_path / "shared", noisy, is_noisy, clean=digits.y_train)
    config = _config(tmp_path, epochs=1, export_dir="", noisy_labels=str(path))
    results = training.run(config, dataset=digits)
    assert results["noise_rate_realised"] == pytest.approx(is_noisy.mean())
    np.testing.assert_array_equal(noise.load_noisy_labels(config.model_dir)[0], noisy)


def test_loss_from_config_uses_only_set_hyper_parameters():
    loss = training.loss_from_config(training.RunConfig(loss="gce", q=0.5, beta=3.0))
    assert isinstance(loss, losses.GeneralizedCrossEntropy) and loss.q == 0.5
    dm = training.loss_from_config(training.RunConfig(loss="dm", beta=3.0, normalize="none"))
    assert dm.beta == 3.0 and dm.lam == 0.5 and dm.normalize is None
    with pytest.raises(ValueError, match="Valid names"):
        training.loss_from_config(training.RunConfig(loss="focal"))


@pytest.mark.parametrize("overrides,match", [
    (dict(noise_type="uniform"), "noise_type"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=-1), "batch_size"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(loss="dm", beta=-1.0), "beta"),
])
def test_bad_config_fails_before_training(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        training.run(_config(tmp_path, **overrides))
    assert not os.path.exists(tmp_path / "run")


def test_plots(tmp_path, finished_run):
    config, _ = finished_run
    emphasis = plotting.plot_emphasis(str(tmp_path / "w.png"))
    run = plotting.plot_run(config.model_dir, str(tmp_path / "run.png"))
    for path in (emphasis, run):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="log.csv"):
        plotting.plot_run(str(tmp_path))


@pytest.mark.slow
def test_comparison_protocol_selects_on_noisy_validation(tmp_path, digits):
    base = training.RunConfig(epochs=1, batch_size=128)
    lines = []
    rows = comparison.compare(base, ["cce", "gce"], num_seeds=2, validation_fraction=0.2,
                              work_dir=str(tmp_path), dataset=digits, log=lines.append)
    assert [r["loss"] for r in rows] == ["cce", "gce"]
    assert sum("noisy validation accuracy" in line for line in lines) == 2 * comparison.GRID_SIZE
    assert rows[1]["chosen"] in comparison.GRIDS["gce"]
    assert "learning_rate" in rows[0]["chosen"]
    for row in rows:
        mean, std = row["test_accuracy_final"]
        assert 0.0 <= mean <= 1.0 and std >= 0.0
    table = comparison.markdown_table(rows, title="t")
    assert table.count("\n| ") == 3 and "± " in table
    with pytest.raises(ValueError, match="num_seeds"):
        comparison.compare(base, ["cce"], num_seeds=0, work_dir=str(tmp_path), dataset=digits)


def test_grids_have_equal_size():
    base = training.RunConfig()
    assert {len(comparison.grid_for(name, base)) for name in losses.LOSSES} == {
        comparison.GRID_SIZE}


def test_tabular_npz_binary_run(tmp_path):
    """A user's own tabular arrays with two classes, end to end (MLP, every label noisy-able)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((240, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    path = tmp_path / "table.npz"
    np.savez(path, x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    config = _config(tmp_path, dataset=f"npz:{path}", noise_rate=0.2, epochs=2,
                     batch_size=32)
    results = training.run(config)
    assert results["model"] == "mlp" and results["noise_rate_realised"] == pytest.approx(0.2)
    loaded = tf.saved_model.load(results["saved_model"])
    assert loaded.serve(x[200:])["probabilities"].shape == (40, 2)
