"""Tests for keras_imae.label_issues and scripts/find_label_issues.py."""

import contextlib
import csv
import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_imae import data, label_issues, noise, training
from keras_imae.config import recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def centroid_fit_for(num_classes):
    """A fast deterministic stand-in model: logits = -squared distance to the class means."""

    def inputs(x):  # arrays, or a part of a dataset (what the workflow hands over)
        return x.dataset.x_train[x.ids] if isinstance(x, label_issues.Part) else x

    def fit(x, labels, fold):
        x = inputs(x)
        flat = x.reshape(len(x), -1).astype("float64")
        means = np.stack([flat[labels == c].mean(0) if np.any(labels == c) else np.full(
            flat.shape[1], 1e3) for c in range(num_classes)])

        def predict(x_new):
            x_new = inputs(x_new)
            z = x_new.reshape(len(x_new), -1).astype("float64")
            return -((z[:, None, :] - means[None]) ** 2).sum(-1) / (50.0 * z.shape[1])

        return predict

    return fit


centroid_fit = centroid_fit_for(10)


@pytest.fixture(scope="module")
def small_digits():
    """The first 300 digits training images (all 10 classes), test split as is."""
    full = data.load("digits")
    return dataclasses.replace(full, train=data.ArrayReader(full.x_train[:300]),
                               y_train=full.y_train[:300])


def brute_force_rule(labels, probs):
    """The rule as written in the docstring, one example at a time."""
    k = probs.shape[1]
    t = [probs[labels == j, j].mean() if np.any(labels == j) else np.inf for j in range(k)]
    flags, suggested = [], []
    for p, y in zip(probs, labels):
        confident = [j for j in range(k) if p[j] >= t[j]]
        best = max(confident, key=lambda j: (p[j], -j)) if confident else None
        flags.append(best is not None and best != y)
        suggested.append(best if flags[-1] else y)
    return np.array(flags), np.array(suggested), np.array(t)


# -- the rule ---------------------------------------------------------------------------------
def test_rule_on_a_worked_example():
    probs = np.array([[.9, .1], [.8, .2], [.3, .7], [.9, .1]])
    result = label_issues.find_label_issues([0, 0, 1, 1], probs)
    np.testing.assert_allclose(result.thresholds, [0.85, 0.4])
    assert result.is_issue.tolist() == [False, False, False, True]
    assert result.suggested_labels.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(result.scores, [0.1, 0.2, 0.3, 0.9])


@pytest.mark.parametrize("seed", range(4))
def test_flags_equal_the_rules_definition(seed):
    rng = np.random.default_rng(seed)
    k = 5
    labels = rng.integers(0, k - 1, 200)  # class 4 never given: its threshold is inf
    probs = rng.dirichlet(np.full(k, 0.5), 200)
    # ties between classes and with the thresholds: rows of tenths (still distributions)
    probs[:20] = rng.multinomial(10, probs[:20]) / 10
    result = label_issues.find_label_issues(labels, probs)
    flags, suggested, thresholds = brute_force_rule(labels, probs)
    np.testing.assert_allclose(result.thresholds, thresholds)
    assert np.isinf(result.thresholds[4])
    np.testing.assert_array_equal(result.is_issue, flags)
    np.testing.assert_array_equal(result.suggested_labels, suggested)
    np.testing.assert_allclose(result.scores, 1 - probs[np.arange(200), labels])
    assert np.all((result.suggested_labels != labels) == result.is_issue)


@pytest.mark.parametrize("probs,match", [
    (np.array([0.5, 0.5]), "Invalid value for argument `pred_probs`"),
    (np.array([[1.5, -0.5], [0.5, 0.5]]), "Invalid value for argument `pred_probs`"),
    (np.array([[np.nan, 1.0], [0.5, 0.5]]), "Invalid value for argument `pred_probs`"),
    (np.full((3, 2), 0.5), "one label per row"),
    (np.array([[0.5, 0.5], [5.0, 5.0]]), r"Expected each row to be a probability distribution "
                                         r"\(summing to 1 within 0.001; .*Received: "
                                         r"pred_probs\[1\]=\[5. 5.\] summing to 10 \(1 such"),
    (np.array([[0.0, 0.0], [0.5, 0.5]]), r"Received: pred_probs\[0\]=\[0. 0.\] summing to 0"),
    (np.array([[0.5, 0.5], [0.9, 0.102]]), r"pred_probs\[1\]=.* summing to 1.002"),
])
def test_bad_probabilities_raise(probs, match):
    with pytest.raises(ValueError, match=match):
        label_issues.find_label_issues([0, 1], probs)


def test_issue_quality():
    q = label_issues.issue_quality([1, 1, 0, 0, 1], [.9, .8, .1, .7, .6], [1, 0, 0, 1, 1])
    assert q["precision"] == pytest.approx(2 / 3) and q["recall"] == pytest.approx(2 / 3)
    assert q["f1"] == pytest.approx(2 / 3) and q["roc_auc"] == pytest.approx(4 / 6)
    assert (q["flagged"], q["noisy"]) == (3, 3)
    assert label_issues.issue_quality([0, 0, 1], [.1, .2, .3], [1, 0, 0])["f1"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        label_issues.issue_quality([0, 1], [.1, .2], [1, 0, 0])


# -- outputs ----------------------------------------------------------------------------------
def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        return next(reader), list(reader)


def test_csv_contract(tmp_path):
    labels = np.array([0, 0, 1, 1])
    result = label_issues.find_label_issues(labels, np.array(
        [[.9, .1], [.8, .2], [.3, .7], [.9, .1]]))
    header, rows = read_csv(label_issues.write_csv(tmp_path / "out.csv", labels, result))
    assert header == ["index", "given_label", "suggested_label", "score", "is_issue"]
    assert rows == [["0", "0", "0", "0.100000", "0"], ["1", "0", "0", "0.200000", "0"],
                    ["2", "1", "1", "0.300000", "0"], ["3", "1", "0", "0.900000", "1"]]


@pytest.mark.parametrize("shape", [(8, 8, 1), (6, 6, 3), (40,), (40, 1, 1)])
def test_contact_sheet_for_images_and_signals(tmp_path, shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, *shape)).astype("uint8")
    labels = np.arange(10) % 3
    result = label_issues.find_label_issues(labels, rng.dirichlet(np.ones(3), 10))
    path = label_issues.plot_suspects(tmp_path / "s.png", x, labels, result,
                                      class_names=["a", "b", "c"], num=50)
    assert open(path, "rb").read(4) == b"\x89PNG"


# -- the workflow -----------------------------------------------------------------------------
def _files(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def test_run_with_known_noise_writes_everything(small_digits, tmp_path):
    config = training.RunConfig(noise_type="pairflip", noise_rate=0.3, noise_seed=1)
    result = label_issues.run(config, output_dir=tmp_path, method="kfold", folds=3,
                              dataset=small_digits,
                              fit=centroid_fit, log=None)
    assert _files(tmp_path) == ["label_issues.csv", "label_issues.png", "noisy_labels.npz",
                                "summary.json"]
    noisy, is_noisy, clean, meta = noise.load_noisy_labels(tmp_path)
    expected, expected_mask = noise.corrupt_labels(small_digits.y_train, 10, "pairflip", 0.3, 1)
    np.testing.assert_array_equal(noisy, expected)  # the same corruption as train.py's
    np.testing.assert_array_equal(is_noisy, expected_mask)
    assert meta["noise_type"] == "pairflip" and meta["noise_seed"] == 1
    header, rows = read_csv(tmp_path / "label_issues.csv")
    assert len(rows) == 300 and [int(r[1]) for r in rows] == noisy.tolist()
    assert {r[4] for r in rows} <= {"0", "1"}
    q = result["quality"]
    assert q == label_issues.issue_quality(result["issues"].is_issue, result["issues"].scores,
                                           is_noisy)
    assert 0.5 < q["roc_auc"] <= 1 and result["flagged"] == sum(r[4] == "1" for r in rows)
    text = label_issues.format_summary(result)
    assert "precision" in text and "ROC-AUC" in text


def test_user_data_without_truth_gives_csv_and_png_only(small_digits, tmp_path):
    config = training.RunConfig(noise_type="none")
    result = label_issues.run(config, output_dir=tmp_path, method="kfold", folds=2,
                              dataset=small_digits,
                              fit=centroid_fit, log=None)
    assert _files(tmp_path) == ["label_issues.csv", "label_issues.png"]
    assert result["quality"] is None
    assert "precision" not in label_issues.format_summary(result)


@pytest.mark.parametrize("with_clean", [True, False])
def test_run_reuses_a_noisy_labels_file(small_digits, tmp_path, with_clean):
    y = small_digits.y_train
    noisy, is_noisy = noise.corrupt_labels(y, 10, "symmetric", 0.2, 5)
    path = noise.save_noisy_labels(tmp_path / "given.npz", noisy, is_noisy,
                                   clean=y if with_clean else None)
    config = training.RunConfig(noisy_labels=str(path))
    result = label_issues.run(config, output_dir=tmp_path / "out", method="kfold", folds=2,
                              dataset=small_digits, fit=centroid_fit, log=None)
    np.testing.assert_array_equal(
        [int(r[1]) for r in read_csv(tmp_path / "out" / "label_issues.csv")[1]], noisy)
    assert (result["quality"] is not None) == with_clean


def _folder_source(root):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        os.makedirs(root / name)
        for i in range(10):
            keras.utils.save_img(root / name / f"{i}.png", np.full(
                (6, 6, 3), 60 + 120 * c, "uint8") + rng.integers(0, 40, (6, 6, 3), "uint8"),
                scale=False)
    return f"folder:{root}", 2


def _npz_source(root):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    np.savez(root / "d.npz", x_train=rng.normal(y[:, None], 0.3, (40, 5)), y_train=y,
             x_test=rng.normal(size=(8, 5)), y_test=y[:8])
    return f"npz:{root / 'd.npz'}", 4


@pytest.mark.parametrize("source", ["folder", "npz", "tfds"])
@pytest.mark.parametrize("noise_type", ["symmetric", "none"])
def test_every_data_source(tmp_path, source, noise_type):
    """load_dataset's sources through run(config) itself (TFDS: offline mock data)."""
    import tensorflow_datasets as tfds

    if source == "tfds":
        (name, k), offline = ("mnist", 10), tfds.testing.mock_data(num_examples=40)
    else:
        (name, k) = {"folder": _folder_source, "npz": _npz_source}[source](tmp_path)
        offline = contextlib.nullcontext()
    config = training.RunConfig(dataset=name, noise_type=noise_type, noise_rate=0.25)
    with offline:
        result = label_issues.run(config, output_dir=tmp_path / "out", method="kfold", folds=2,
                                  fit=centroid_fit_for(k), log=None)
    rows = read_csv(tmp_path / "out" / "label_issues.csv")[1]
    assert len(rows) == result["examples"] and result["dataset"] == name
    assert (result["quality"] is None) == (noise_type == "none")
    assert os.path.exists(tmp_path / "out" / "noisy_labels.npz") == (noise_type != "none")


@pytest.mark.parametrize("kwargs,match", [
    (dict(retrain="fix"), "argument `retrain`"),
    (dict(folds=1), "argument `folds`"),
    (dict(config=training.RunConfig(noise_type="uniform")), "`noise_type`"),
    (dict(config=training.RunConfig(loss="gce", beta=2.0)), "does not take `beta`"),
    (dict(retrain="remove", retrain_loss="focal"), "Unknown loss 'focal'"),
    # the warm-up applies to training runs only, and to a loss with an emphasis
    (dict(config=training.RunConfig(warmup_epochs=5), method="kfold"), "training runs"),
    (dict(config=training.RunConfig(warmup_epochs=5), retrain="remove", retrain_loss="cce"),
     "no emphasis to warm up"),
    (dict(config=training.RunConfig(warmup_epochs=20, epochs=20), retrain="remove"),
     "Expected < epochs"),
])
def test_validate_rejects_bad_settings(kwargs, match):
    config = kwargs.pop("config", training.RunConfig())
    with pytest.raises(ValueError, match=match):
        label_issues.validate(config, **kwargs)


def test_fold_models_get_their_dm_defaults_only_when_unset():
    loss = label_issues.validate(training.RunConfig(), method="kfold")
    assert (loss.get_config()["lam"], loss.get_config()["beta"]) == (2.0, 8.0)
    loss = label_issues.validate(training.RunConfig(lam=1.0), method="kfold")
    assert (loss.get_config()["lam"], loss.get_config()["beta"]) == (1.0, 8.0)
    assert label_issues.validate(training.RunConfig(loss="gce"),
                                 method="kfold").get_config()["q"] == 0.7
    run_loss = label_issues.validate(training.RunConfig())  # method "run": train.py's own
    assert run_loss.get_config()["beta"] == recipe.DEFAULTS["dm"]["beta"]
    with pytest.raises(ValueError, match="argument `method`"):
        label_issues.validate(training.RunConfig(), method="bootstrap")


def test_same_seed_same_csv_with_the_real_models(small_digits, tmp_path):
    """Two runs with the default K-fold trainer (DM, MLP) give byte-identical outputs."""
    config = training.RunConfig(epochs=2, batch_size=64, seed=3)
    outputs = []
    for name in ("a", "b"):
        result = label_issues.run(config, output_dir=tmp_path / name, method="kfold", folds=2,
                                  dataset=small_digits, log=None)
        outputs.append((tmp_path / name / "label_issues.csv").read_bytes())
        assert np.allclose(result["probs"].sum(1), 1.0)
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_retrain_relabel_reports_the_gain(small_digits, tmp_path):
    config = training.RunConfig(noise_type="pairflip", epochs=1, lam=1.0)
    result = label_issues.run(config, output_dir=tmp_path, method="kfold", folds=2,
                              retrain="relabel",
                              retrain_loss="gce", dataset=small_digits, fit=centroid_fit,
                              log=None)
    retrained = result["retrain"]
    assert retrained["mode"] == "relabel"
    assert retrained["loss"]["name"] == "generalized_cross_entropy"  # lam is DM's: dropped
    assert retrained["given"]["train_examples"] == retrained["cleaned"]["train_examples"] == 300
    assert retrained["gain_test_accuracy_final"] == pytest.approx(
        retrained["cleaned"]["test_accuracy_final"] - retrained["given"]["test_accuracy_final"])
    assert "flagged relabelled" in label_issues.format_summary(result)
    assert {"retrain_given", "retrain_cleaned"} <= set(os.listdir(tmp_path))


def test_retraining_reports_the_loss_its_runs_trained_with(small_digits, tmp_path):
    # A BatchNorm model: the retraining runs use the BatchNorm networks' DM setting; the report
    # is what training.run resolved for the architecture, not a loss built without it.
    config = training.RunConfig(epochs=1, model="mlp_bn")
    result = label_issues.run(config, output_dir=tmp_path, method="kfold", folds=2,
                              retrain="remove",
                              retrain_loss="dm", dataset=small_digits, fit=centroid_fit,
                              log=None)
    expected = recipe.DEFAULTS["dm_batchnorm"]
    assert (result["retrain"]["loss"]["lam"], result["retrain"]["loss"]["beta"]) == (
        expected["lam"], expected["beta"])


# -- the script -------------------------------------------------------------------------------
def _script(*args, expect=0, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "find_label_issues.py"), *args],
        cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == expect, output[-3000:]
    return output


@pytest.mark.slow
def test_script_end_to_end_with_removal(tmp_path):
    out = tmp_path / "issues"
    output = _script("--epochs=1", "--folds=2", "--noise_type=pairflip", "--retrain=remove",
                     f"--output_dir={out}")
    assert "labels flagged as issues" in output and "ROC-AUC" in output
    assert "flagged removed" in output
    header, rows = read_csv(out / "label_issues.csv")
    assert header == list(label_issues.COLUMNS) and len(rows) == 1347
    flagged = sum(r[4] == "1" for r in rows)
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["flagged"] == flagged
    assert summary["retrain"]["cleaned"]["train_examples"] == 1347 - flagged
    assert summary["loss"]["lam"] == 2.0 and summary["noise"]["noise_type"] == "pairflip"


# -- one robust run; streamed sources; any Keras model -----------------------------------------
def test_the_run_method_scores_its_own_training_examples(small_digits, tmp_path):
    config = training.RunConfig(noise_type="pairflip", epochs=3, verbose=0)
    result = label_issues.run(config, output_dir=tmp_path, dataset=small_digits, log=None)
    assert result["method"] == "run" and result["fold_of"] is None
    assert os.path.isfile(tmp_path / "run" / "model.keras")  # the run, kept for inspection
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    logits = model.predict(small_digits.x_train, verbose=0).astype("float64")
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(result["probs"], expected / expected.sum(-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)  # the final model's own probabilities
    assert "one robust training run" in label_issues.format_summary(result)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["run", "kfold"])
def test_streamed_sources_are_checked_without_converting(tmp_path, method):
    """A label file (real noisy labels, a verified subset) read from disk batch by batch."""
    rng = np.random.default_rng(0)
    rows, test_rows = ["path,label,clean_label"], []
    for c in range(3):
        for i in range(14):
            keras.utils.save_img(tmp_path / f"{c}_{i}.png", np.clip(rng.normal(
                80 * c, 30, (8, 8, 3)), 0, 255).astype(np.uint8), scale=False)
            if i >= 12:
                test_rows.append(f"{c}_{i}.png,{c}")
                continue
            given = (c + 1) % 3 if i % 4 == 0 else c
            rows.append(f"{c}_{i}.png,{given},{c if i % 2 == 0 else ''}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(test_rows) + "\n")
    dataset = data.load(f"labels:{tmp_path}", image_size=(8, 8))
    assert not dataset.in_memory  # streamed: no image array is ever built
    config = training.RunConfig(dataset=f"labels:{tmp_path}", epochs=2, verbose=0,
                                batch_size=8, model="mlp")
    result = label_issues.run(config, output_dir=tmp_path / "out", method=method, folds=2,
                              dataset=dataset, log=None)
    assert result["examples"] == 36 and result["quality"] is not None  # the verified subset
    header, csv_rows = read_csv(tmp_path / "out" / "label_issues.csv")
    assert [int(r[1]) for r in csv_rows] == dataset.given_labels.tolist()
    assert os.path.isfile(tmp_path / "out" / "label_issues.png")


def test_any_keras_model_builder_gives_out_of_sample_probabilities():
    x = np.random.default_rng(0).normal(size=(60, 5)).astype("float32")
    labels = (x[:, 0] > 0).astype(int)
    seen = []

    def build(fold):
        seen.append(fold)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    probs, fold_of = label_issues.cross_val_probabilities(
        x, labels, 2, fit=label_issues.keras_fit(build, epochs=2, verbose=0), folds=3)
    assert seen == [0, 1, 2] and probs.shape == (60, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0)  # a softmax model's outputs, not re-softmaxed
    assert sorted(np.bincount(fold_of)) == [20, 20, 20]
