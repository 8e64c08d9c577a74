"""Tests for keras_imae.tfrecord_stream: the tfrecord:DIR source."""

import numpy as np
import pytest
import tensorflow as tf

from keras_imae import data
from keras_imae.data._tfrecord import write_example


def stream_load(name, **kwargs):
    """The source streamed from disk (``data.load(..., streaming="on")``)."""
    return data.load(name, streaming="on", **kwargs)


def eval_with_ids(*args, **kwargs):
    """``data.eval_dataset`` yielding example ids, as the monitor reads it."""
    return data.eval_dataset(*args, with_ids=True, **kwargs)


def _write(root, split, num_files, per_file, seed, label_of=lambda i: i % 3):
    """PNG records; returns (images, labels) in global id order."""
    rng = np.random.default_rng(seed)
    images, labels, i = [], [], 0
    for f in range(num_files):
        with tf.io.TFRecordWriter(str(root / f"{split}-{f:03d}.tfrecord")) as writer:
            for _ in range(per_file):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                write_example(writer, tf.io.encode_png(img).numpy(), label_of(i))
                images.append(img)
                labels.append(label_of(i))
                i += 1
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    train = _write(root, "train", 3, 5, seed=0)
    test = _write(root, "test", 1, 4, seed=1)
    return root, train, test


def test_images_labels_and_ids_in_file_order(records):
    root, (x, y), (x_test, y_test) = records
    st = stream_load(f"tfrecord:{root}", image_size=(8, 8))
    np.testing.assert_array_equal(st.y_train, y)
    np.testing.assert_array_equal(st.y_test, y_test)
    assert st.num_classes == 3 and st.input_shape == (8, 8, 3) and len(st.train) == 15
    images, ids = zip(*data.stream(st.train, batch_size=4, with_ids=True)
                      .as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(15))
    np.testing.assert_array_equal(np.concatenate(images), x.astype(np.float32))
    np.testing.assert_allclose(st.mean, x.reshape(-1, 3).mean(0), rtol=1e-6)


def test_workers_read_only_their_files_with_global_ids(records):
    root, (_, y), _ = records
    st = stream_load(f"tfrecord:{root}", image_size=(8, 8))
    seen = []
    for w in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=w,
                                         num_replicas_in_sync=2)
        ds = data.stream(st.train, {"label": y}, batch_size=4, shuffle=True, seed=0,
                              with_ids=True, input_context=ctx)
        ids = np.concatenate([b["id"] for _, b in ds.as_numpy_iterator()])
        seen.append(ids)
    # Files 0 and 2 (ids 0-4, 10-14) go to worker 0, file 1 (ids 5-9) to worker 1.
    np.testing.assert_array_equal(np.sort(seen[0]), np.r_[0:5, 10:15])
    np.testing.assert_array_equal(np.sort(seen[1]), np.arange(5, 10))


def test_several_epochs_need_the_length_of_an_epoch(records):
    root, (_, y), _ = records
    st = stream_load(f"tfrecord:{root}", image_size=(8, 8))
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(ValueError, match="needs the length of an epoch, unknown for a record "
                                         "reader split by file"):
        data.stream(st.train, {"label": y}, batch_size=4, shuffle=True, input_context=ctx,
                    epochs=2)
    whole = data.stream(st.train, {"label": y}, batch_size=4, shuffle=True, epochs=2)
    assert whole.cardinality().numpy() == 8  # 15 records, 4 batches an epoch


def test_more_workers_than_files_still_see_every_record_once(records):
    root, _, _ = records
    st = stream_load(f"tfrecord:{root}", image_size=(8, 8))
    seen = []
    for w in range(4):
        ctx = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=w)
        seen.append(np.concatenate([i for _, i in data.stream(
            st.train, batch_size=2, with_ids=True, input_context=ctx).as_numpy_iterator()]))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(15))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TFRecord folder"):
        stream_load(f"tfrecord:{tmp_path / 'nope'}")
    with pytest.raises(data.DataError, match=r"No train\*\.tfrecord\* files"):
        stream_load(f"tfrecord:{tmp_path}")
    _write(tmp_path, "train", 1, 2, seed=0)
    _write(tmp_path, "test", 1, 2, seed=0, label_of=lambda i: 5 * i)
    _write(tmp_path, "train", 1, 2, seed=0, label_of=lambda i: i * 2**40)
    with pytest.raises(data.DataError, match=r"label 1099511627776 implies 1,099,511,627,777 "
                                             r"classes, more than MAX_CLASSES=100,000"):
        stream_load(f"tfrecord:{tmp_path}")  # refused before a class list grows with it
    _write(tmp_path, "train", 1, 2, seed=0)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(data.DataError, match=r"test-000\.tfrecord: record 1 has label 5, "
                                             r"outside the 3 classes"):
        stream_load(f"tfrecord:{tmp_path}")
    with tf.io.TFRecordWriter(str(tmp_path / "train-000.tfrecord")) as writer:
        writer.write(tf.train.Example().SerializeToString())  # no label
    with pytest.raises(data.DataError, match=r"train-000\.tfrecord: not TFRecord files of "
                                             r"tf.train.Example with an int64 `label`"):
        stream_load(f"tfrecord:{tmp_path}")


def test_tfrecord_streams_by_default_and_decodes_into_memory_on_request(records):
    root, (x, y), _ = records
    assert not data.load(f"tfrecord:{root}", image_size=(8, 8)).in_memory
    memory = data.load(f"tfrecord:{root}", image_size=(8, 8), streaming="off")
    assert memory.in_memory
    np.testing.assert_array_equal(memory.x_train, x)  # the same pixels as streamed
    np.testing.assert_array_equal(memory.y_train, y)
    assert data.is_known_source("tfrecord:anything")


def test_training_run_on_records(records, tmp_path):
    from keras_imae import noise, training

    root, (_, y), _ = records
    config = training.RunConfig(dataset=f"tfrecord:{root}", epochs=1, verbose=0, model="mlp",
                                batch_size=4, noise_type="symmetric", noise_rate=0.2,
                                model_dir=str(tmp_path / "run"),
                                export_dir="")
    results = training.run(config)
    noisy, is_noisy, clean, _ = noise.load_noisy_labels(config.model_dir)
    np.testing.assert_array_equal(clean, y)  # noise drawn on the records' labels by id
    expected, _ = noise.corrupt_labels(y, 3, "symmetric", 0.2, seed=0)
    np.testing.assert_array_equal(noisy, expected)
    assert results["noise_rate_realised"] == pytest.approx(np.mean(is_noisy))
