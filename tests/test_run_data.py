"""training.run on every kind of source (folder, label files, CIFAR-N), in memory or
streamed, and the in-memory/streamed choice of data.load."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_imae import data, noise, training
from keras_imae.run import _noise

from image_cases import image_folder as _folder


def _config(tmp_path, name, **overrides):
    base = dict(dataset=name, epochs=2, verbose=0, model="mlp", batch_size=8,
                model_dir=str(tmp_path / name.replace(":", "_").replace("/", "_")),
                export_dir="", noise_rate=0.3)
    base.update(overrides)
    return training.RunConfig(**base)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    _folder(root)
    return root


def test_streamed_run_equals_the_in_memory_run(folder, tmp_path, monkeypatch):
    """Same folder, same flags: the same noise, batches, weights, metrics and ranking."""
    # The tiny folder's noise estimate is not identifiable; correct with it anyway, so
    # that the corrected score's equality is compared too.
    monkeypatch.setattr(_noise, "usable_transition", lambda transition: (transition, None))
    results = {}
    for mode in ("off", "on"):
        config = _config(tmp_path / mode, f"folder:{folder}", streaming=mode,
                         validation_fraction=0.25, noise_type="symmetric")
        results[mode] = training.run(config)
        noisy, _, _, _ = noise.load_noisy_labels(config.model_dir)
        results[mode]["noisy"] = noisy
    off, on = results["off"], results["on"]
    np.testing.assert_array_equal(off["noisy"], on["noisy"])
    for key in ("test_accuracy_final", "clean_fit", "noisy_fit", "noisy_correct",
                "noise_rate_realised", "val_accuracy_final", "val_accuracy_corrected_final"):
        assert on[key] == pytest.approx(off[key], abs=1e-6), key
    assert on["history"]["loss"] == pytest.approx(off["history"]["loss"], rel=1e-5)
    assert on["mislabel_ranking"] == pytest.approx(off["mislabel_ranking"])


@pytest.fixture
def label_dir(folder, tmp_path):
    """A label file over the folder's images: 30% wrong labels, clean labels for half."""
    rows, test_rows = ["path,label,clean_label"], []
    rng = np.random.default_rng(1)
    for c in range(3):
        for i in range(12):
            path = os.path.join(folder, f"c{c}", f"{i:02d}.png")
            if i >= 10:
                test_rows.append(f"{path},c{c}")
                continue
            given = (c + 1) % 3 if rng.random() < 0.3 else c
            rows.append(f"{path},c{given},{f'c{c}' if i % 2 == 0 else ''}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(test_rows) + "\n")
    return tmp_path


def test_label_file_run_reports_the_verified_subset(label_dir, tmp_path, capsys):
    config = _config(tmp_path, f"labels:{label_dir}", noise_type="none", verbose=2)
    results = training.run(config)
    out = capsys.readouterr().out
    assert "Clean labels are known for 15 of 30 training examples" in out
    assert "train_verified_fraction: 0.5000" in out
    with open(os.path.join(config.model_dir, "log.csv")) as f:
        assert "train_verified_fraction" in f.readline()
    noisy, is_noisy, clean, meta = noise.load_noisy_labels(config.model_dir)
    assert (clean == -1).sum() == 15 and not is_noisy[clean == -1].any()
    assert meta["labels"] == "given by the source" and meta["noise_type"] == "none"
    verified = clean >= 0
    assert results["noise_rate_realised"] == pytest.approx(
        np.mean(noisy[verified] != clean[verified]))


def test_own_noise_sources_refuse_drawn_noise(label_dir, tmp_path):
    for name in (f"labels:{label_dir}", "cifar10_n/aggre", "cifar100_n"):
        with pytest.raises(ValueError, match="gives its own noisy labels .* Pass "
                                             r"noise_type='none' \(or leave it at 'auto'\)"):
            training.validate(_config(tmp_path, name, noise_type="symmetric"))
        training.validate(_config(tmp_path, name))  # "auto": the given labels, no noise


def test_cifar10_n_run_uses_the_human_labels(tmp_path):
    with tfds.testing.mock_data(num_examples=24):
        config = _config(tmp_path, "cifar10_n/random2", noise_type="none", epochs=1,
                         batch_size=12)
        results = training.run(config)
        raw = list(tfds.load("cifar10_n", split="train", shuffle_files=False)
                   .as_numpy_iterator())
    noisy, is_noisy, clean, _ = noise.load_noisy_labels(config.model_dir)
    np.testing.assert_array_equal(noisy, [r["random_label2"] for r in raw])
    np.testing.assert_array_equal(clean, [r["label"] for r in raw])
    np.testing.assert_array_equal(is_noisy, noisy != clean)
    assert results["noise_rate_realised"] == pytest.approx(np.mean(noisy != clean))


class TestStreamingChoice:
    def test_auto(self, folder, label_dir):
        assert not data.load(f"labels:{label_dir}").in_memory
        assert data.load("digits").in_memory
        assert data.load(f"folder:{folder}").in_memory  # 36 small images
        with tfds.testing.mock_data(num_examples=8):
            assert not data.load("cifar10_n/worse").in_memory
            assert data.load("cifar10").in_memory

    def test_auto_streams_a_large_folder(self, folder, monkeypatch):
        from keras_imae.data import _load

        monkeypatch.setattr(_load, "STREAM_ABOVE_BYTES", 36 * 32 * 32 * 3 - 1)
        assert not data.load(f"folder:{folder}").in_memory

    def test_on_off(self, folder, label_dir):
        assert not data.load(f"folder:{folder}", streaming="on").in_memory
        assert data.load(f"labels:{label_dir}", streaming="off").in_memory
        assert data.load("digits", streaming="on").in_memory  # arrays: nothing to stream


def test_unknown_streaming_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Expected one of \('auto', 'on', 'off'\)"):
        training.validate(_config(tmp_path, "digits", streaming="maybe"))


def test_unknown_annotation_is_refused_before_any_work(tmp_path):
    config = _config(tmp_path, "cifar10_n/best", noise_type="none")
    with pytest.raises(ValueError, match=r"'cifar10_n' annotations are \['aggre'"):
        training.validate(config)
    assert not os.path.exists(config.model_dir)
