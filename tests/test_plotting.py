"""Tests for keras_imae.plotting: figures from a run log, without touching pyplot's backend."""

import csv

import matplotlib
import pytest

from keras_imae import plotting


def _write_log(folder, keys):
    with open(folder / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", *keys])
        writer.writeheader()
        for epoch in range(5):
            writer.writerow({"epoch": epoch, **{k: 0.1 * (epoch + 1) for k in keys},
                             **({"train_logit_scale": 10.0 ** epoch}
                                if "train_logit_scale" in keys else {})})


def test_plot_run_draws_fit_logit_and_emphasis_curves(tmp_path):
    keys = ["train_clean_fit", "train_noisy_fit", "train_noisy_correct", "test_accuracy",
            "train_logit_scale", "train_emphasis_low", "train_emphasis_mid",
            "train_emphasis_high"]
    _write_log(tmp_path, keys)
    backend = matplotlib.get_backend()
    path = plotting.plot_run(str(tmp_path))
    assert path == str(tmp_path / "fit_curves.png") and (tmp_path / "fit_curves.png").stat().st_size
    assert matplotlib.get_backend() == backend  # a notebook keeps its backend


def test_plot_run_without_monitor_keys_and_missing_log(tmp_path):
    _write_log(tmp_path, ["test_accuracy"])
    assert plotting.plot_run(str(tmp_path), str(tmp_path / "x.png")).endswith("x.png")
    with pytest.raises(FileNotFoundError, match="log.csv"):
        plotting.plot_run(str(tmp_path / "nothing"))


def test_plot_emphasis_writes_a_png(tmp_path):
    path = plotting.plot_emphasis(str(tmp_path / "sub" / "w.png"))
    assert (tmp_path / "sub" / "w.png").stat().st_size > 1000 and path.endswith("w.png")
