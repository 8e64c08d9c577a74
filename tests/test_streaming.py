"""Tests for keras_imae.streaming and keras_imae.tfds_stream: streamed sources, example ids,
label tables looked up by id, sharding over workers, equality with the in-memory path."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_imae import data, noise


def stream_load(name, **kwargs):
    """The source streamed from disk (``data.load(..., streaming="on")``)."""
    return data.load(name, streaming="on", **kwargs)


def eval_with_ids(*args, **kwargs):
    """``data.eval_dataset`` yielding example ids, as the monitor reads it."""
    return data.eval_dataset(*args, with_ids=True, **kwargs)


def _write_folder(root, per_class=(7, 5, 6), size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    for c, n in zip(("ant", "bee", "cat"), per_class):
        os.makedirs(root / c, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            keras.utils.save_img(root / c / f"{i:03d}.png", img, scale=False)


def _epoch(ds):
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.concatenate(xs), {k: np.concatenate([y[k] for y in ys]) for k in ys[0]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    _write_folder(root)
    return root


@pytest.fixture(scope="module")
def both(folder):
    """The same image folder, in memory and streamed."""
    return (data.load(f"folder:{folder}", image_size=(8, 8)),
            stream_load(f"folder:{folder}", image_size=(8, 8)))


class TestFolderMatchesInMemory:
    def test_labels_split_and_statistics_are_identical(self, both):
        mem, st = both
        assert isinstance(st, data.Dataset) and st.given_labels is None
        np.testing.assert_array_equal(st.y_train, mem.y_train)
        np.testing.assert_array_equal(st.y_test, mem.y_test)
        np.testing.assert_array_equal(st.mean, mem.mean)  # bit-identical, same chunks
        np.testing.assert_array_equal(st.std, mem.std)
        assert st.input_shape == mem.input_shape == (8, 8, 3)
        assert st.class_names == mem.class_names == ["ant", "bee", "cat"]
        assert len(st.train) == len(mem.x_train) and len(st.test) == len(mem.x_test)

    def test_example_id_is_the_in_memory_index(self, both):
        mem, st = both
        x, ids = zip(*data.stream(st.train, batch_size=4, with_ids=True)
                     .as_numpy_iterator())
        np.testing.assert_array_equal(np.concatenate(ids), np.arange(len(mem.x_train)))
        np.testing.assert_array_equal(np.concatenate(x), mem.x_train.astype(np.float32))

    @pytest.mark.parametrize("augment", [None, "cifar"])
    def test_same_seed_same_noise_same_batches_every_epoch(self, both, augment):
        mem, st = both
        noisy, _ = noise.corrupt_labels(mem.y_train, 3, "symmetric", 0.4, seed=5)
        noisy_streamed, _ = noise.corrupt_labels(st.y_train, 3, "symmetric", 0.4, seed=5)
        np.testing.assert_array_equal(noisy, noisy_streamed)
        kwargs = dict(batch_size=4, augment=augment, seed=11)
        a = data.train_dataset(mem.x_train, noisy, mem.y_train, **kwargs)
        b = data.train_dataset(st, noisy, st.y_train, **kwargs)
        epochs = []
        for _ in range(2):
            (xa, ya), (xb, yb) = _epoch(a), _epoch(b)
            np.testing.assert_array_equal(xa, xb)
            assert set(ya) == set(yb) == {"label", "clean_label"}
            for key in ya:
                np.testing.assert_array_equal(ya[key], yb[key])
            epochs.append(xb)
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled (and re-augmented)

    def test_validation_subset_reads_only_its_ids(self, both):
        mem, st = both
        split = data.split_validation(mem.x_train, mem.y_train, 0.25, seed=0)
        table = np.arange(len(mem.x_train)) % 3
        x, y = _epoch(eval_with_ids(st.train, table, ids=split.val_index,
                                             batch_size=3))
        np.testing.assert_array_equal(y["id"], split.val_index)
        np.testing.assert_array_equal(y["label"], table[split.val_index])
        np.testing.assert_array_equal(x, split.x_val.astype(np.float32))

    def test_unverified_clean_labels_pass_through_eval_only(self, both):
        _, st = both
        clean = st.y_train.copy()
        clean[::2] = -1
        _, y = _epoch(eval_with_ids(st.train, st.y_train, clean, batch_size=8))
        np.testing.assert_array_equal(y["clean_label"], clean)
        with pytest.raises(ValueError, match=r"`clean_labels`. Expected class ids >= 0\. "
                                             r"Received: clean_labels\[0\]=-1"):
            data.train_dataset(st, st.y_train, clean, batch_size=4)


def _worker_epochs(make, workers=2, epochs=2):
    """ids seen by each worker in each epoch, for pipelines made by make(input_context)."""
    seen = np.zeros((epochs, workers), object)
    for w in range(workers):
        ds = make(tf.distribute.InputContext(num_input_pipelines=workers, input_pipeline_id=w,
                                             num_replicas_in_sync=workers))
        for e in range(epochs):
            seen[e, w] = np.concatenate([y["id"] for _, y in ds.as_numpy_iterator()])
    return seen


class TestWorkers:
    def test_two_workers_see_every_example_once_per_epoch(self, both):
        _, st = both
        n = len(st.train)
        noisy = (st.y_train + 1) % 3

        def make(ctx):
            ds = data.stream(st.train, {"label": noisy}, batch_size=4, shuffle=True,
                                  seed=2, with_ids=True, input_context=ctx)
            assert ds.options().experimental_distribute.auto_shard_policy == \
                tf.data.experimental.AutoShardPolicy.OFF  # already sharded: no auto-shard
            first = next(iter(ds))
            assert first[0].shape[0] == 2  # per-worker batch: global 4 over 2 replicas
            np.testing.assert_array_equal(first[1]["label"], noisy[first[1]["id"]])
            return ds

        seen = _worker_epochs(make)
        for epoch in seen:
            everything = np.concatenate(list(epoch))
            np.testing.assert_array_equal(np.sort(everything), np.arange(n))  # once each
            assert 0 < len(epoch[0]) < n
        assert not np.array_equal(seen[0, 0], seen[1, 0])  # a new order every epoch

    def test_without_context_the_pipeline_asks_for_data_sharding(self, both):
        _, st = both
        ds = data.stream(st.train, batch_size=4)
        assert ds.options().experimental_distribute.auto_shard_policy == \
            tf.data.experimental.AutoShardPolicy.DATA  # never FILE: ids stay global

    def test_sequential_tfds_reader_shards_with_global_ids(self):
        with tfds.testing.mock_data(num_examples=23):
            st = stream_load("mnist")

            def make(ctx):
                return data.stream(st.train, {"label": st.y_train}, batch_size=4,
                                        shuffle=True, seed=0, with_ids=True, input_context=ctx,
                                        shuffle_buffer=5)

            seen = _worker_epochs(make)
        for epoch in seen:
            np.testing.assert_array_equal(np.sort(np.concatenate(list(epoch))), np.arange(23))


class TestTfds:
    def test_mnist_streamed_equals_in_memory(self):
        with tfds.testing.mock_data(num_examples=20):
            mem = data.load("mnist")
            st = stream_load("mnist")
            x = np.concatenate(list(data.stream(st.train, batch_size=6)
                                    .as_numpy_iterator()))
            x_test = np.concatenate(list(data.stream(st.test, batch_size=6)
                                         .as_numpy_iterator()))
        np.testing.assert_array_equal(x, mem.x_train.astype(np.float32))
        np.testing.assert_array_equal(x_test, mem.x_test.astype(np.float32))
        np.testing.assert_array_equal(st.y_train, mem.y_train)
        np.testing.assert_array_equal(st.mean, mem.mean)
        assert st.input_shape == (28, 28, 1) and st.num_classes == 10

    def test_resize(self):
        with tfds.testing.mock_data(num_examples=4):
            mem = data.load("cifar10", image_size=(8, 8))
            st = stream_load("cifar10", image_size=(8, 8))
            x = np.concatenate(list(data.stream(st.train, batch_size=4)
                                    .as_numpy_iterator()))
        assert st.input_shape == (8, 8, 3)
        np.testing.assert_array_equal(x, mem.x_train.astype(np.float32))

    @pytest.mark.parametrize("annotation, key", [("", "worse_label"), ("/aggre", "aggre_label"),
                                                 ("/random1", "random_label1"),
                                                 ("/random2", "random_label2"),
                                                 ("/random3", "random_label3"),
                                                 ("/worse", "worse_label")])
    def test_cifar10_n_human_labels_are_the_given_labels(self, annotation, key):
        with tfds.testing.mock_data(num_examples=15):
            st = stream_load("cifar10_n" + annotation)
            raw = list(tfds.load("cifar10_n", split="train", shuffle_files=False)
                       .as_numpy_iterator())
            test = list(tfds.load("cifar10_n", split="test", shuffle_files=False)
                        .as_numpy_iterator())
        np.testing.assert_array_equal(st.given_labels, [r[key] for r in raw])
        np.testing.assert_array_equal(st.y_train, [r["label"] for r in raw])
        np.testing.assert_array_equal(st.y_test, [r["label"] for r in test])
        assert (st.given_labels != st.y_train).any()  # random mock labels: some disagree
        assert st.num_classes == 10 and st.input_shape == (32, 32, 3)

    def test_cifar100_n(self):
        with tfds.testing.mock_data(num_examples=300):
            st = stream_load("cifar100_n")
            raw = list(tfds.load("cifar100_n", split="train", shuffle_files=False)
                       .as_numpy_iterator())
        np.testing.assert_array_equal(st.given_labels, [r["noise_label"] for r in raw])
        np.testing.assert_array_equal(st.y_train, [r["label"] for r in raw])
        assert st.num_classes == 100 and st.superclasses.shape == (100,)
        fine, coarse = raw[0]["label"], raw[0]["coarse_label"]
        assert st.superclasses[fine] >= 0 and st.superclasses.max() < 20 and coarse < 20

    @pytest.mark.parametrize("name", ["cifar10_n/best", "cifar100_n/aggre"])
    def test_unknown_annotation(self, name):
        with pytest.raises(ValueError, match=r"annotations are \[.*Received: name="):
            data.human_label_key(name)

    def test_other_names_pass_through(self):
        assert data.human_label_key("cifar10") == ("cifar10", None)
        assert data.human_label_key("cifar10_n") == ("cifar10_n", "worse_label")
        assert data.human_label_key("cifar100_n") == ("cifar100_n", "noise_label")


class TestErrors:
    def test_arrays_stay_in_memory_and_files_can_be_decoded(self, folder):
        assert stream_load("digits").in_memory  # nothing on disk to stream
        assert data.load(f"folder:{folder}", image_size=(8, 8)).in_memory  # auto: small
        assert not stream_load(f"folder:{folder}", image_size=(8, 8)).in_memory
        with pytest.raises(ValueError, match="Invalid value for `streaming`"):
            data.load("digits", streaming="sometimes")
        with pytest.raises(ValueError, match="streams its images from disk: it has no "
                                             "`x_train` array"):
            stream_load(f"folder:{folder}", image_size=(8, 8)).x_train

    def test_data_dir_only_for_tfds(self, folder):
        with pytest.raises(ValueError, match="`data_dir`: it only applies to TFDS"):
            stream_load(f"folder:{folder}", data_dir="/tmp")

    @pytest.mark.parametrize("name", ["", None, "npz:"])
    def test_bad_name(self, name):
        with pytest.raises(ValueError, match="Invalid value for `dataset`"):
            stream_load(name)

    def test_missing_paths(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="No image folder at"):
            stream_load(f"folder:{tmp_path / 'nope'}")
        with pytest.raises(FileNotFoundError, match="No label-file folder at"):
            stream_load(f"labels:{tmp_path / 'nope'}")
        with pytest.raises(FileNotFoundError, match="No npz file at"):
            data.load(f"npz:{tmp_path / 'nope.npz'}")

    def test_undecodable_image_is_named_when_opening(self, tmp_path):
        _write_folder(tmp_path, per_class=(3, 3, 3))
        (tmp_path / "bee" / "001.png").write_bytes(b"not an image")
        with pytest.raises(data.DataError, match=r"Cannot read the image '/.*bee/001.png'"):
            stream_load(f"folder:{tmp_path}", image_size=(8, 8))

    def test_label_table_length(self, both):
        _, st = both
        with pytest.raises(ValueError, match="Expected 14 labels"):
            data.train_dataset(st, np.zeros(3, int), batch_size=2)

    def test_bad_batch_size(self, both):
        _, st = both
        with pytest.raises(ValueError, match="`batch_size`. Expected a positive integer"):
            data.stream(st.train, batch_size=0)


def test_an_evaluation_batch_is_bounded_by_its_input_bytes_not_a_count():
    assert data.eval_batch_size((8, 8, 1)) == data.eval_batch_size((32, 32, 3)) == 4096
    # a backbone's 224x224x3 float32 images: 64 MiB // 602,112 bytes (was a floor of 1,024)
    assert data.eval_batch_size((224, 224, 3)) == 111
    assert data.eval_batch_size((224, 224, 3), batch_size=128) == 128  # the training batch fits
    assert data.eval_batch_size((2000, 2000, 3)) == 1  # 48 MB an image: one at a time
