"""TFRecord files: the ``tfrecord:DIR`` source.

Layout, decided here once: ``DIR`` holds the training files ``train*.tfrecord*`` and the test
files ``test*.tfrecord*`` (uncompressed), and optionally ``classes.txt`` (one class name per
line). Each record is a ``tf.train.Example`` with

- ``image``: the encoded image (PNG, JPEG, GIF or BMP bytes), decoded and resized as image
  folders are (:func:`keras_imae.data._images.decode_bytes`, default 32x32);
- ``label``: the int64 class id (the clean label; noise is drawn by :mod:`keras_imae.noise`).

Example ids are global positions: files in sorted name order, records in file order. Opening
reads every record once for its label only (and counts each file's records, so a worker can
read just its files with the right id offsets); then one pass decodes the images for the
exact mean/std. Classes: ``classes.txt`` if present, else ``K = max label + 1`` over both
splits. A record without ``image``/``label`` or a label outside ``[0, K)`` is a
:class:`keras_imae.data.DataError` naming the file and the record's index in it.
"""

import glob
import os

import numpy as np
import tensorflow as tf

from keras_imae.data import _images, _label_file, _split
from keras_imae.data._dataset import Parts
from keras_imae.data._images import DataError
from keras_imae.data._readers import RecordReader

__all__ = ["open_parts", "write_example"]

FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}


def split_files(root, split):
    files = sorted(glob.glob(os.path.join(root, f"{split}*.tfrecord*")))
    if not files:
        raise DataError(f"No {split}*.tfrecord* files in {root!r}.")
    return files


def _file_labels(path):
    """The int64 labels of one file's records, in order."""
    ds = tf.data.TFRecordDataset(path).map(
        lambda r: tf.io.parse_single_example(r, {"label": FEATURES["label"]})["label"])
    try:
        parts = list(ds.batch(8192).as_numpy_iterator())
    except tf.errors.InvalidArgumentError as err:
        raise DataError(f"{path}: not TFRecord files of tf.train.Example with an int64 "
                             f"`label` ({str(err).splitlines()[0][:200]}).") from None
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _check_range(labels, files, num_classes):
    for path, y in zip(files, labels):
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if len(bad):
            raise DataError(f"{path}: record {bad[0]} has label {y[bad[0]]}, outside the "
                                 f"{num_classes} classes [0, {num_classes}).")


def _decode(image_size):
    def decode(record):
        image = tf.io.parse_single_example(record, {"image": FEATURES["image"]})["image"]
        return _images.decode_bytes(image, image_size)

    return decode


def _reader(files, counts, image_size):
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def shard_files(num_shards, index):
        if len(files) < num_shards:  # too few files: every worker numbers all records
            return tf.data.TFRecordDataset(files).enumerate().shard(num_shards, index)
        mine = tf.data.Dataset.from_tensor_slices((files, offsets)).shard(num_shards, index)
        return mine.flat_map(lambda f, start: tf.data.TFRecordDataset(f).enumerate(start))

    return RecordReader(lambda: tf.data.TFRecordDataset(files), _decode(image_size),
                        int(sum(counts)), (*image_size, _images.CHANNELS), shard_files)


def open_parts(root, image_size):
    """``tfrecord:DIR``'s :class:`keras_imae.data._dataset.Parts` (labels read, no image)."""
    train_files, test_files = split_files(root, "train"), split_files(root, "test")
    train_labels = [_file_labels(f) for f in train_files]
    test_labels = [_file_labels(f) for f in test_files]
    class_names = _label_file.read_classes(root)
    if class_names is None:
        try:
            num_classes = _split.classes_from_labels(train_labels + test_labels, "label")
        except ValueError as err:
            raise DataError(f"{root}: {err}") from None
        class_names = [str(c) for c in range(max(num_classes, 2))]
    _check_range(train_labels + test_labels, train_files + test_files, len(class_names))
    train = _reader(train_files, [len(y) for y in train_labels], image_size)
    test = _reader(test_files, [len(y) for y in test_labels], image_size)
    return Parts(train, test, np.concatenate(train_labels), np.concatenate(test_labels),
                 class_names)


def write_example(writer, encoded_image, label):
    """Writes one record in this format (for converting data, and for tests)."""
    example = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded_image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}))
    writer.write(example.SerializeToString())
