"""Tests for keras_imae.evaluation: loading either export format and scoring a test split."""

import shutil

import keras
import numpy as np
import pytest

from keras_imae.run_folder import evaluation


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


def test_truncated_model_files_are_named_not_reported_missing(tmp_path, finished_run):
    _, results = finished_run
    data_bytes = open(results["model_keras"], "rb").read()
    half = tmp_path / "half.keras"
    half.write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(ValueError, match=r"half.keras.*not a valid .keras \(zip\) file"):
        evaluation.load_predictor(half)
    legacy = tmp_path / "legacy.h5"  # not a zip, but a format Keras still reads
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(legacy)
    assert evaluation.load_keras_model(legacy).output_shape == (None, 3)
    export_copy = tmp_path / "sm"
    shutil.copytree(results["saved_model"], export_copy)
    variables = export_copy / "variables" / "variables.data-00000-of-00001"
    variables.write_bytes(variables.read_bytes()[:100])  # raised a raw IndexError before
    with pytest.raises(ValueError, match=r"Could not load the SavedModel .*truncated"):
        evaluation.load_predictor(export_copy)


def test_evaluating_on_the_wrong_dataset_is_a_clear_error(finished_run):
    _, results = finished_run
    predict = evaluation.load_predictor(results["saved_model"])
    with pytest.raises(ValueError, match="wrong dataset"):
        evaluation.evaluate(predict, np.zeros((4, 32, 32, 3), np.float32), np.zeros(4), 10)
    with pytest.raises(ValueError, match="predicts 10 classes but the dataset has 100"):
        evaluation.evaluate(predict, np.zeros((4, 8, 8, 1), np.float32), np.zeros(4), 100)
