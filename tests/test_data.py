"""Tests for keras_imae.data: sources, validation split and tf.data pipelines."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_imae import data, models


def _batches(ds):
    return list(ds.as_numpy_iterator())


def _epoch(ds):
    """(x, labels dict) of one epoch, concatenated."""
    xs, ys = zip(*_batches(ds))
    return np.concatenate(xs), {k: np.concatenate([y[k] for y in ys]) for k in ys[0]}


def _id_images(n, shape=(4, 4, 1)):
    """float32 images whose first pixel is the example id (to track examples)."""
    x = np.zeros((n, *shape), np.float32)
    x[:, 0, 0, 0] = np.arange(n)
    return x


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


class TestDigits:
    def test_shapes_and_split(self, digits):
        assert digits.x_train.shape == (1347, 8, 8, 1) and digits.x_test.shape == (450, 8, 8, 1)
        assert digits.x_train.dtype == np.uint8 and digits.x_train.max() == 16
        assert digits.y_train.dtype == np.int64 and digits.num_classes == 10
        assert digits.class_names == [str(c) for c in range(10)] and digits.superclasses is None
        assert digits.input_shape == (8, 8, 1)
        assert "train=1347 x (8, 8, 1)" in repr(digits) and "in memory" in repr(digits)

    def test_stratified_and_complete(self, digits):
        from sklearn.datasets import load_digits

        full = load_digits()
        totals = np.bincount(full.target)
        test_counts = np.bincount(digits.y_test)
        assert (np.abs(test_counts - totals * 450 / 1797) < 1).all()
        # train + test is exactly the original set (as a multiset of (image, label) rows).
        ours = np.concatenate([
            np.c_[digits.x_train.reshape(-1, 64), digits.y_train],
            np.c_[digits.x_test.reshape(-1, 64), digits.y_test]])
        theirs = np.c_[full.data.astype(np.int64), full.target]
        np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
        assert len(ours) == len(theirs)

    def test_identical_on_two_calls(self, digits):
        again = data.load("digits")
        for key in ("x_train", "y_train", "x_test", "y_test", "mean", "std"):
            np.testing.assert_array_equal(getattr(digits, key), getattr(again, key))

    def test_mean_std_per_channel(self, digits):
        assert digits.mean.shape == digits.std.shape == (1,) and digits.mean.dtype == np.float32
        np.testing.assert_allclose(digits.mean, digits.x_train.mean(), rtol=1e-6)
        np.testing.assert_allclose(digits.std, digits.x_train.std(), rtol=1e-5)


class TestTfds:
    def test_mnist(self):
        with tfds.testing.mock_data(num_examples=30):
            ds = data.load("mnist", data_dir="/nonexistent/tfds")
        assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_train.dtype == np.uint8
        assert ds.y_test.shape == (30,) and ds.y_train.dtype == np.int64
        assert ds.num_classes == 10 and ds.superclasses is None and ds.name == "mnist"
        assert ds.mean.shape == (1,)

    def test_cifar100_superclasses(self):
        with tfds.testing.mock_data(num_examples=1000):
            ds = data.load("cifar100")
        assert ds.x_train.shape == (1000, 32, 32, 3) and ds.num_classes == 100
        assert ds.superclasses.shape == (100,) and ds.superclasses.dtype == np.int64
        assert ds.superclasses.min() >= 0 and ds.superclasses.max() < 20
        assert ds.mean.shape == ds.std.shape == (3,)
        np.testing.assert_allclose(ds.mean, ds.x_train.reshape(-1, 3).mean(0), rtol=1e-5)

    def test_variable_size_images_need_image_size(self):
        with tfds.testing.mock_data(num_examples=5):
            with pytest.raises(ValueError, match="images of varying size .* pass `image_size"):
                data.load("tf_flowers")
            ds = data.load("tf_flowers", image_size=(16, 12))
        assert ds.x_train.shape == (5, 16, 12, 3) and ds.x_train.dtype == np.uint8

    def test_unknown_dataset(self):
        with pytest.raises(ValueError, match="Unknown dataset 'no_such_set'. Expected 'digits', "
                                             "'npz:PATH', 'folder:PATH', 'labels:DIR', "
                                             "'tfrecord:DIR' or a TFDS"):
            data.load("no_such_set")

    def test_offline_download_fails_clearly_through_the_real_builder(self, tmp_path,
                                                                      monkeypatch):
        # The real tfds.load path (no mock_data): builder, download manager, then the network,
        # which refuses at once here (offline machines retry for minutes before failing).
        import requests

        def refuse(self, request, **kwargs):
            raise requests.exceptions.ConnectionError(f"offline: {request.url}")

        monkeypatch.setattr(requests.Session, "send", refuse)
        with pytest.raises(data.DownloadFailed,
                           match=r"'mnist' is not prepared in data_dir=.*download failed "
                                 r"\(ConnectionError.*--data_dir=DIR"):
            data.load("mnist", data_dir=str(tmp_path))

    def test_not_image_classification(self):
        with tfds.testing.mock_data(num_examples=2):
            with pytest.raises(ValueError, match="not an \\(image, class label\\) dataset"):
                data.load("binarized_mnist")


class TestNpz:
    def test_round_trip_images(self, tmp_path):
        rng = np.random.default_rng(0)
        x_train = rng.integers(0, 255, (12, 5, 5), dtype=np.uint8)  # (N, H, W): gets C=1
        x_test = rng.integers(0, 255, (4, 5, 5), dtype=np.uint8)
        y_train, y_test = np.arange(12) % 3, np.array([0, 1, 2, 2])
        np.savez(tmp_path / "d.npz", x_train=x_train, y_train=y_train, x_test=x_test,
                 y_test=y_test, class_names=np.array(["a", "b", "c"]))
        ds = data.load(f"npz:{tmp_path / 'd.npz'}")
        np.testing.assert_array_equal(ds.x_train, x_train[..., None])
        np.testing.assert_array_equal(ds.y_test, y_test)
        assert ds.class_names == ["a", "b", "c"] and ds.num_classes == 3

    def test_tabular_kept_2d(self, tmp_path):
        x = np.random.default_rng(0).normal(size=(10, 7))
        np.savez(tmp_path / "t.npz", x_train=x, y_train=np.arange(10) % 4, x_test=x[:3],
                 y_test=[[0], [1], [1]])
        ds = data.load(f"npz:{tmp_path / 't.npz'}")
        assert ds.x_train.shape == (10, 7) and ds.num_classes == 4
        assert ds.class_names == ["0", "1", "2", "3"] and ds.mean.shape == (7,)
        np.testing.assert_allclose(ds.std, x.std(0), rtol=1e-5)
        np.testing.assert_array_equal(ds.y_test, [0, 1, 1])

    def test_constant_features_and_channels_are_centred_not_refused(self, tmp_path):
        # load_digits flattened has constant (blank) columns; an all-zero colour channel too.
        x = np.random.default_rng(0).normal(size=(10, 4))
        x[:, 1], x[:, 3] = 0.0, 0.1
        np.savez(tmp_path / "t.npz", x_train=x, y_train=np.arange(10) % 2, x_test=x[:3],
                 y_test=[0, 1, 1])
        with pytest.warns(UserWarning, match=r"2 of 4 channels \(features\) are constant "
                                             r"in the training data \(ids \[1, 3\]\)"):
            ds = data.load(f"npz:{tmp_path / 't.npz'}")
        np.testing.assert_array_equal(ds.std[[1, 3]], [1, 1])
        np.testing.assert_allclose(ds.std[[0, 2]], x[:, [0, 2]].std(0), rtol=1e-5)
        model = models.build_model("mlp", ds.input_shape, 2, mean=ds.mean, std=ds.std)
        assert np.isfinite(model.predict(ds.x_test, verbose=0)).all()
        images = np.random.default_rng(1).integers(0, 256, (6, 4, 4, 3)).astype(np.uint8)
        images[..., 2] = 0
        with pytest.warns(UserWarning, match=r"1 of 3 channels .* \(ids \[2\]\)"):
            mean, std = data.channel_stats([images], 3)
        assert std[2] == 1 and mean[2] == 0 and 0 < std[0] != 1

    def test_labels_implying_too_many_classes_are_refused_before_anything_grows(self, tmp_path):
        y = np.arange(10) % 2
        np.savez(tmp_path / "big.npz", x_train=np.zeros((10, 3)), y_train=y + 2**40,
                 x_test=np.zeros((2, 3)), y_test=[0, 1])
        with pytest.raises(data.DataError, match=r"`y_train, y_test`: label 1099511627777 "
                                                 r"implies 1,099,511,627,778 classes, more "
                                                 r"than MAX_CLASSES=100,000"):
            data.load(f"npz:{tmp_path / 'big.npz'}")
        assert data.MAX_CLASSES == 100_000

    @pytest.mark.parametrize("arrays,match", [
        ({"x_train": np.zeros((2, 3)), "y_train": [0, 1]},
         r"missing arrays \['x_test', 'y_test'\]"),
        ({"x_train": np.zeros((2, 3)), "y_train": [0, 1, 1], "x_test": np.zeros((1, 3)),
          "y_test": [0]}, r"`y_train`. Expected 2 labels \(one per example\). Received: 3"),
        ({"x_train": np.zeros((2, 3)), "y_train": [0, 1], "x_test": np.zeros((1, 4)),
          "y_test": [0]}, r"x_train examples have shape \(3,\) but x_test .* \(4,\)"),
        ({"x_train": np.zeros((2,)), "y_train": [0, 1], "x_test": np.zeros((1,)),
          "y_test": [0]}, r"`x_train`. Expected \(N, F\) features"),
        ({"x_train": np.zeros((2, 3)), "y_train": [0.0, 1.0], "x_test": np.zeros((1, 3)),
          "y_test": [0]}, "`y_train`. Expected a 1-D array of integer class ids"),
        ({"x_train": np.zeros((2, 3)), "y_train": [0, 2], "x_test": np.zeros((1, 3)),
          "y_test": [0], "class_names": np.array(["a", "b"])},
         r"`y_train`. Expected class ids in \[0, 2\). Received: y_train\[\d+\]=2"),
    ])
    def test_errors(self, tmp_path, arrays, match):
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(data.DataError, match=match):  # train.py: one line, no traceback
            data.load(f"npz:{tmp_path / 'bad.npz'}")

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="No npz file at"):
            data.load(f"npz:{tmp_path / 'none.npz'}")

    @pytest.mark.parametrize("array", ["x_train", "x_test"])
    def test_non_finite_inputs_are_refused_naming_the_first(self, tmp_path, array):
        arrays = {"x_train": np.zeros((4, 3)), "y_train": [0, 1, 0, 1],
                  "x_test": np.zeros((2, 3)), "y_test": [0, 1]}
        arrays[array][1, 2] = np.inf
        arrays[array][1, 0] = np.nan
        np.savez(tmp_path / "nan.npz", **arrays)
        with pytest.raises(ValueError, match=rf"inputs must be finite. Received: {array}\[1, 0\]"
                                             r"=nan \(2 non-finite values in all\)"):
            data.load(f"npz:{tmp_path / 'nan.npz'}")

    def test_labels_with_empty_classes_warn(self, tmp_path):
        np.savez(tmp_path / "gap.npz", x_train=np.zeros((4, 3)), y_train=[0, 1, 7, 0],
                 x_test=np.zeros((2, 3)), y_test=[1, 0])
        with pytest.warns(UserWarning, match=r"largest label, 8, but 5 of them have no example"):
            ds = data.load(f"npz:{tmp_path / 'gap.npz'}")
        assert ds.num_classes == 8
        # A test label beyond the training labels adds a class that cannot be learned.
        np.savez(tmp_path / "beyond.npz", x_train=np.zeros((4, 3)), y_train=[0, 1, 0, 1],
                 x_test=np.zeros((2, 3)), y_test=[1, 2])
        with pytest.warns(UserWarning, match=r"largest label, 3, but 1 of them have no example "
                                             r"in y_train \(ids \[2\]\)"):
            assert data.load(f"npz:{tmp_path / 'beyond.npz'}").num_classes == 3


def _write_images(root, per_class, rng, size=(6, 5)):
    images = {}
    for name in ("cat", "dog"):
        os.makedirs(root / name)
        for i in range(per_class):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            keras.utils.save_img(root / name / f"{i:02d}.png", img, scale=False)
            images[(name, i)] = img
    return images


class TestFolder:
    def test_single_folder_split(self, tmp_path):
        images = _write_images(tmp_path, 10, np.random.default_rng(0))
        ds = data.load(f"folder:{tmp_path}", image_size=(6, 5))
        assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
        assert ds.x_train.shape == (16, 6, 5, 3) and ds.x_train.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(ds.y_test), [2, 2])  # 20% of each class
        # Pixels survive exactly (PNG is lossless, same size): every loaded image is a file's.
        originals = {img.tobytes(): name for (name, _), img in images.items()}
        for x, y in zip(np.concatenate([ds.x_train, ds.x_test]),
                        np.concatenate([ds.y_train, ds.y_test])):
            assert originals[x.tobytes()] == ds.class_names[y]
        again = data.load(f"folder:{tmp_path}", image_size=(6, 5))
        np.testing.assert_array_equal(again.x_test, ds.x_test)

    def test_train_test_layout_and_default_size(self, tmp_path):
        rng = np.random.default_rng(1)
        _write_images(tmp_path / "train", 3, rng, size=(40, 40))
        _write_images(tmp_path / "test", 2, rng, size=(40, 40))
        ds = data.load(f"folder:{tmp_path}")
        assert ds.x_train.shape == (6, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(ds.y_train, [0, 0, 0, 1, 1, 1])
        np.testing.assert_array_equal(ds.y_test, [0, 0, 1, 1])

    def test_missing_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="No image folder at"):
            data.load(f"folder:{tmp_path / 'nothing'}")

    def test_empty_class_folder_is_refused_by_name(self, tmp_path):
        _write_images(tmp_path, 5, np.random.default_rng(0))
        os.makedirs(tmp_path / "zebra")
        (tmp_path / "zebra" / "notes.txt").write_text("no image here")
        with pytest.raises(ValueError, match=r"Class folder .*zebra' holds no image"):
            data.load(f"folder:{tmp_path}", image_size=(6, 5))

    def test_folder_without_class_folders_is_refused(self, tmp_path):
        keras.utils.save_img(tmp_path / "loose.png", np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(data.DataError, match="No class sub-folders in the image folder"):
            data.load(f"folder:{tmp_path}")

    def test_corrupt_image_is_named(self, tmp_path):
        _write_images(tmp_path, 5, np.random.default_rng(0))
        (tmp_path / "dog" / "03.png").write_bytes(b"not a png at all")
        with pytest.raises(ValueError, match=r"Cannot read the image .*dog/03.png"):
            data.load(f"folder:{tmp_path}", image_size=(6, 5))


class TestLoadDatasetErrors:
    @pytest.mark.parametrize("name", ["", None, 3])
    def test_bad_name(self, name):
        with pytest.raises(ValueError, match="Invalid value for `dataset`. Expected "
                                             "'digits', 'npz:PATH'"):
            data.load(name)

    def test_data_dir_only_for_tfds(self):
        with pytest.raises(ValueError, match="`data_dir`: it only applies to TFDS"):
            data.load("digits", data_dir="/tmp")

    def test_image_size_not_for_digits(self):
        with pytest.raises(ValueError, match="`image_size`: it only applies to images read"):
            data.load("digits", image_size=(8, 8))


class TestSplitValidation:
    def test_stratified_disjoint_deterministic(self):
        y = np.repeat(np.arange(4), [40, 30, 20, 10])
        x = _id_images(len(y))
        split = data.split_validation(x, y, 0.1, seed=3)
        np.testing.assert_array_equal(np.bincount(split.y_val), [4, 3, 2, 1])
        assert len(np.intersect1d(split.train_index, split.val_index)) == 0
        np.testing.assert_array_equal(
            np.sort(np.concatenate([split.train_index, split.val_index])), np.arange(100))
        np.testing.assert_array_equal(split.x_val[:, 0, 0, 0], split.val_index)
        np.testing.assert_array_equal(split.y_train, y[split.train_index])
        again = data.split_validation(x, y, 0.1, seed=3)
        np.testing.assert_array_equal(again.val_index, split.val_index)
        other = data.split_validation(x, y, 0.1, seed=4)
        assert not np.array_equal(other.val_index, split.val_index)

    def test_total_is_rounded_fraction(self):
        y = np.repeat(np.arange(3), [7, 7, 7])
        split = data.split_validation(np.zeros((21, 2)), y, 0.2, seed=0)
        assert len(split.val_index) == 4  # round(4.2); classes get 2/1/1 by remainder

    @pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, "0.1", True, 0.01])
    def test_bad_fraction(self, fraction):
        with pytest.raises(ValueError, match=f"`fraction`. Expected a float in \\(0, 1\\).*"
                                             f"Received: fraction={fraction!r}"):
            data.split_validation(np.zeros((10, 2)), np.arange(10) % 2, fraction, seed=0)

    def test_labels_length(self):
        with pytest.raises(ValueError, match="`y`. Expected 10 labels"):
            data.split_validation(np.zeros((10, 2)), np.arange(9) % 2, 0.2, seed=0)


class TestTrainDataset:
    def test_structure_dtypes_shapes(self, digits):
        ds = data.train_dataset(digits.x_train, digits.y_train, digits.y_train, batch_size=32)
        x, y = next(iter(ds))
        assert x.shape == (32, 8, 8, 1) and x.dtype == tf.float32
        assert set(y) == {"label", "clean_label"} and y["label"].dtype == tf.int32
        assert float(tf.reduce_max(x)) == 16.0  # original pixel scale
        assert (ds.options().experimental_distribute.auto_shard_policy
                == tf.data.experimental.AutoShardPolicy.DATA)
        no_clean = data.train_dataset(digits.x_train, digits.y_train, batch_size=32)
        assert set(no_clean.element_spec[1]) == {"label"}

    def test_epoch_is_a_permutation_of_the_input(self):
        x, labels = _id_images(50), np.arange(50) % 5
        clean = (labels + 1) % 5
        xs, ys = _epoch(data.train_dataset(x, labels, clean, batch_size=8, seed=1))
        ids = xs[:, 0, 0, 0].astype(int)
        assert sorted(ids) == list(range(50)) and list(ids) != list(range(50))
        np.testing.assert_array_equal(ys["label"], labels[ids])
        np.testing.assert_array_equal(ys["clean_label"], clean[ids])
        np.testing.assert_array_equal(xs, x[ids])

    def test_seeded_shuffle_reproducible_and_reshuffled(self):
        x, labels = _id_images(40), np.arange(40) % 4
        a = data.train_dataset(x, labels, batch_size=40, seed=7)
        b = data.train_dataset(x, labels, batch_size=40, seed=7)
        a1, a2 = _epoch(a)[0], _epoch(a)[0]
        b1, b2 = _epoch(b)[0], _epoch(b)[0]
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
        assert not np.array_equal(a1, a2)
        c1 = _epoch(data.train_dataset(x, labels, batch_size=40, seed=8))[0]
        assert not np.array_equal(a1, c1)
        ordered = _epoch(data.train_dataset(x, labels, batch_size=16, shuffle=False))[0]
        np.testing.assert_array_equal(ordered, x)

    def test_epochs_are_functions_of_the_seed_and_the_epoch(self):
        # A run resumed at epoch 2 must see the batches an uninterrupted run sees there:
        # order and augmentation of epoch e depend on (seed, e) only, not on what came before.
        x = np.random.default_rng(0).integers(1, 256, (20, 8, 8, 1), dtype=np.uint8)
        labels = np.arange(20) % 3

        def batches(**kwargs):
            ds = data.train_dataset(x, labels, batch_size=8, augment="crop", seed=5, **kwargs)
            return ds.cardinality().numpy(), [b[0] for b in _batches(ds)]

        (count, full), (tail_count, tail) = batches(epochs=4), batches(epochs=4, initial_epoch=2)
        assert (count, tail_count, len(full), len(tail)) == (12, 6, 12, 6)  # 3 batches each
        for a, b in zip(full[6:], tail, strict=True):
            np.testing.assert_array_equal(a, b)  # epochs 2 and 3, identical
        epochs = [np.concatenate(full[i:i + 3]) for i in range(0, 12, 3)]
        assert all(not np.array_equal(a, b) for a, b in zip(epochs, epochs[1:]))
        again = data.train_dataset(x, labels, batch_size=8, seed=5, epochs=2, shuffle=False)
        assert [b[0].shape[0] for b in _batches(again)] == [8, 8, 4] * 2  # in order, twice
        with pytest.raises(ValueError, match=r"Expected an integer in \[0, 4\]. Received: "
                                             r"initial_epoch=5"):
            data.train_dataset(x, labels, batch_size=8, epochs=4, initial_epoch=5)
        with pytest.raises(ValueError, match=r"`seed`. Expected an integer. Received: "
                                             r"seed=None"):
            data.train_dataset(x, labels, batch_size=8, seed=None)

    @staticmethod
    def _offsets(augmented, image, pad):
        """The (row, column, flipped) crops of the zero-padded image equal to ``augmented``."""
        h, w, _ = image.shape
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        return [(i, j, flip) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
                for flip in (False, True)
                if np.array_equal(augmented, padded[i:i + h, j:j + w][:, ::-1] if flip
                                  else padded[i:i + h, j:j + w])]

    @pytest.mark.parametrize("kind", ["cifar", "crop"])
    def test_augmentation(self, kind):
        rng = np.random.default_rng(0)
        x = rng.integers(1, 256, (16, 16, 16, 3), dtype=np.uint8)  # pad 16 / 8 = 2
        labels = np.arange(16) % 2
        ds = data.train_dataset(x, labels, batch_size=16, augment=kind, shuffle=False, seed=2)
        first, second = _epoch(ds)[0], _epoch(ds)[0]
        assert first.shape == x.shape and first.dtype == np.float32
        assert not np.array_equal(first, x) and not np.array_equal(first, second)
        offsets = [self._offsets(a, o, pad=2)
                   for a, o in zip(np.concatenate([first, second]), np.concatenate([x, x]))]
        assert all(offsets)  # every image is a (flipped) crop of the zero-padded image
        shifts = {max(abs(i - 2), abs(j - 2)) for found in offsets for i, j, _ in found}
        assert 2 in shifts  # the padding is 2 pixels, not less
        flips = sum(all(flip for _, _, flip in found) for found in offsets)
        assert (flips > 0) == (kind == "cifar")
        same_seed = data.train_dataset(x, labels, batch_size=16, augment=kind, shuffle=False,
                                       seed=2)
        np.testing.assert_array_equal(_epoch(same_seed)[0], first)

    def test_augment_pad_is_an_eighth_of_each_side(self):
        assert [data.augment_pad(s) for s in ((32, 32, 3), (28, 28, 1), (8, 8, 1), (64, 48, 3),
                                              (40, 1, 1), (3, 3, 1))] == [
            (4, 4), (4, 4), (1, 1), (8, 6), (5, 0), (0, 0)]

    def test_a_side_of_one_is_not_shifted(self):
        # A 1-D signal stored as an (L, 1, 1) image moves along L only; it never becomes zeros.
        x = np.arange(1, 16 * 40 + 1, dtype=np.float32).reshape(16, 40, 1, 1)
        ds = data.train_dataset(x, np.zeros(16, int), batch_size=16, augment="crop",
                                shuffle=False, seed=0)
        out = _epoch(ds)[0][..., 0, 0]
        for augmented, original in zip(out, x[..., 0, 0]):
            shifts = [k for k in range(-5, 6)
                      if np.array_equal(augmented, np.roll(np.pad(original, 5), k)[5:-5])]
            assert shifts and (augmented != 0).sum() >= 35

    def test_errors(self):
        x, labels = np.zeros((4, 6, 6, 1)), np.zeros(4, int)
        for bad in (0, -1, 2.5, None, True):
            with pytest.raises(ValueError, match=f"`batch_size`. Expected a positive integer. "
                                                 f"Received: batch_size={bad!r}"):
                data.train_dataset(x, labels, batch_size=bad)
        with pytest.raises(ValueError, match="`labels`. Expected 4 labels"):
            data.train_dataset(x, labels[:3], batch_size=2)
        with pytest.raises(ValueError, match="`clean_labels`. Expected 4 labels"):
            data.train_dataset(x, labels, labels[:2], batch_size=2)
        with pytest.raises(ValueError, match=r"`augment`. Expected None or one of \('cifar', "
                                             r"'crop'\). Received: augment='autoaugment'"):
            data.train_dataset(x, labels, batch_size=2, augment="autoaugment")
        with pytest.raises(ValueError, match=r"'cifar' needs \(H, W, C\) images. Received: "
                                             r"examples of shape \(5,\)"):
            data.train_dataset(np.zeros((4, 5)), labels, batch_size=2, augment="cifar")


class TestPlainAndEval:
    def test_plain_dataset(self):
        x, labels = _id_images(10), np.arange(10) % 3
        ds = data.plain_dataset(x, labels, batch_size=4, shuffle=False)
        batches = _batches(ds)
        assert [len(b[1]) for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
        assert isinstance(ds.element_spec, tuple) and ds.element_spec[1].dtype == tf.int32

    def test_eval_dataset_order_and_structure(self):
        x, labels = _id_images(23), np.arange(23) % 3
        xs, ys = _epoch(data.eval_dataset(x, labels, labels + 1, batch_size=5))
        np.testing.assert_array_equal(xs, x)
        np.testing.assert_array_equal(ys["label"], labels)
        np.testing.assert_array_equal(ys["clean_label"], labels + 1)
        only_x = data.eval_dataset(x, batch_size=5)
        assert isinstance(only_x.element_spec, tf.TensorSpec)
        np.testing.assert_array_equal(np.concatenate(_batches(only_x)), x)

    def test_eval_errors(self):
        with pytest.raises(ValueError, match="`clean_labels`: it needs `labels` as well"):
            data.eval_dataset(np.zeros((2, 3)), clean_labels=[0, 1], batch_size=2)


def test_mirrored_strategy_splits_global_batches():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, labels = _id_images(40), np.arange(40) % 4
    # Each iteration of one dataset object is a new (seeded) epoch order, so compare the first
    # epoch of two identically built pipelines.
    expected = _batches(data.train_dataset(x, labels, labels, batch_size=8, seed=5))
    ds = data.train_dataset(x, labels, labels, batch_size=8, seed=5)
    distributed = list(strategy.experimental_distribute_dataset(ds))
    assert len(distributed) == len(expected) == 5
    for (x_replicas, y_replicas), (x_global, y_global) in zip(distributed, expected):
        parts = strategy.experimental_local_results(x_replicas)
        assert len(parts) == 2 and [len(p) for p in parts] == [4, 4]
        np.testing.assert_array_equal(np.concatenate(parts), x_global)
        labels_parts = strategy.experimental_local_results(y_replicas["label"])
        np.testing.assert_array_equal(np.concatenate(labels_parts), y_global["label"])
