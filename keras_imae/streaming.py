"""Streamed sources: images read and decoded inside the tf.data graph, never all in memory.

What is held in memory is one integer label per example (and, for files, its path); pixels
are read, decoded and resized batch by batch. Every streamed example carries a **global
example id**: its position in the training (or test) split, the same id under any sharding.
The labels of an example -- given (noisy), clean, and whether it is noisy -- are tables
indexed by that id, looked up inside the graph (``tf.gather`` on a constant), so label noise
is drawn exactly as for in-memory data (:func:`keras_imae.noise.corrupt_labels` on the whole
label vector, same seed, same ``noisy_labels.npz``) and only the pixels stream.

Two kinds of reader:

- **random access** (``folder:``, ``labels:``): example ``i`` is the file ``paths[i]``. The
  pipeline shuffles the *ids* with ``Dataset.shuffle(N, seed)`` exactly as the in-memory
  pipeline shuffles its examples, then reads: same seed, same epochs, bit-identical batches
  to :func:`keras_imae.data.train_dataset` on the same images (tested).
- **sequential** (TFRecord files, ``tfrecord:DIR``; TFDS datasets read with ``tfds.load``
  and undecoded images): records come in a fixed order and are numbered as they come;
  shuffling is a seeded buffer of ``shuffle_buffer`` examples (default 10,000), as with any
  record stream.

Sharding (several workers): pass ``input_context`` (``tf.distribute.InputContext``, e.g.
from ``strategy.distribute_datasets_from_function``): each worker keeps every
``num_input_pipelines``-th id (after the shuffle, which every worker draws alike) *before*
reading, so it reads and decodes only its share, and ids stay global (TFRecord files with
at least as many files as workers are split by file: a worker opens only its files; TFDS
records are numbered in one stream and a worker decodes only its own). Without it the
pipeline carries ``AutoShardPolicy.DATA`` (never ``FILE``: sharding TFDS files before the
records are numbered would make the ids local), so ``tf.distribute`` gives each worker its
share of the examples, which every worker reads.

Sources (:func:`load`): ``folder:PATH`` (as :func:`keras_imae.data.load_dataset`),
``labels:DIR`` (real noisy labels, :mod:`keras_imae.label_file`), ``tfrecord:DIR``
(:mod:`keras_imae.tfrecord_stream`), any TFDS image
classification name, and the human-annotated ``cifar10_n[/aggre|random1|random2|random3|
worse]`` and ``cifar100_n`` (:mod:`keras_imae.tfds_stream`).
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_imae import data, image_files, label_file

SHUFFLE_BUFFER = 10_000  # sequential readers
PREFETCH_BATCHES = 2  # fixed: an autotuned buffer grows with the epoch length (measured)
UNVERIFIED = label_file.UNVERIFIED


@dataclasses.dataclass
class FileReader:
    """Random access: example ``i`` is the image file ``paths[i]``, decoded to ``image_size``
    by :func:`keras_imae.image_files.decode_image`."""

    paths: np.ndarray
    image_size: tuple
    random_access = True

    def __post_init__(self):
        self.paths = image_files.path_array(self.paths)
        self._path_tensor = None  # one string tensor shared by all of this split's pipelines

    def __len__(self):
        return len(self.paths)

    @property
    def image_shape(self):
        return (*self.image_size, image_files.CHANNELS)

    def records(self, ids):
        """Map ``ids`` (a dataset of int64 ids) to ``(id, file path)``."""
        if self._path_tensor is None:
            self._path_tensor = tf.constant(self.paths)
        paths = self._path_tensor
        return ids.map(lambda i: (i, tf.gather(paths, i)))

    def decode(self, record):
        return image_files.decode_image(record, self.image_size)


@dataclasses.dataclass
class RecordReader:
    """Sequential: ``make()`` gives the split's encoded records in a fixed order (example
    ``i`` is the ``i``-th); ``decode`` turns one into an image tensor of ``image_shape``.

    ``shard_files(num_shards, index)``, when given, yields ``(id, record)`` of this worker's
    share of the *files* (global ids from per-file offsets), so a worker reads only its files;
    ``None`` when the reader cannot (then every worker reads all records and keeps its ids).
    """

    make: callable
    decode_fn: callable
    num_examples: int
    image_shape: tuple
    shard_files: callable = None
    random_access = False

    def __len__(self):
        return self.num_examples

    def decode(self, record):
        image = self.decode_fn(record)
        image.set_shape(self.image_shape)
        return image


@dataclasses.dataclass(repr=False)
class StreamingDataset:
    """A classification dataset whose images stay on disk (see the module docstring).

    The same attributes as :class:`keras_imae.data.Dataset` except the image arrays:

    Attributes:
        name: the source string.
        train, test: the readers of the two splits.
        y_train: ``(N,)`` int64 clean labels by example id; ``UNVERIFIED`` (-1) where the
            source has none (label files with a verified subset).
        y_test: ``(N_test,)`` int64 true labels.
        given_labels: ``(N,)`` int64 labels the source itself gives (human or label-file
            labels, possibly wrong), or ``None`` when ``y_train`` is the given label and
            noise, if any, is drawn by :mod:`keras_imae.noise`.
        num_classes, class_names, superclasses, mean, std: as for ``Dataset``.
    """

    name: str
    train: object
    test: object
    y_train: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list
    superclasses: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    given_labels: np.ndarray | None = None

    streaming = True

    @property
    def input_shape(self):
        return tuple(self.train.image_shape)

    @property
    def verified(self):
        """Bool mask of the training examples whose clean label is known."""
        return self.y_train != UNVERIFIED

    def __repr__(self):
        return (f"StreamingDataset(name={self.name!r}, train={len(self.train)} x "
                f"{self.input_shape}, test={len(self.test)}, num_classes={self.num_classes})")


def _id_dataset(reader, ids, *, shuffle, seed, shuffle_buffer, shard):
    """``(id, record)`` elements of one epoch: shuffled, then this worker's share."""
    if reader.random_access:
        ds = tf.data.Dataset.from_tensor_slices(ids)
        if shuffle:  # the in-memory pipeline's shuffle, applied to the ids
            ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
        if shard is not None:
            ds = ds.shard(*shard)
        return reader.records(ds)
    if shard is not None and reader.shard_files is not None:
        ds, shard = reader.shard_files(*shard), None  # reads only this worker's files
    else:
        ds = reader.make().enumerate()  # ids: positions in the fixed record order
    if len(ids) != len(reader):  # a subset (validation split): keep its ids
        keep = np.zeros(len(reader), bool)
        keep[ids] = True
        keep = tf.constant(keep)
        ds = ds.filter(lambda i, _: tf.gather(keep, i))
    if shard is not None:
        ds = ds.shard(*shard)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def _shard_and_batch(input_context, batch_size):
    if input_context is None:
        return None, batch_size
    return ((input_context.num_input_pipelines, input_context.input_pipeline_id),
            input_context.get_per_replica_batch_size(batch_size))


def stream(reader, labels=None, *, ids=None, batch_size, shuffle=False, seed=0, augment=None,
           with_ids=False, input_context=None, shuffle_buffer=SHUFFLE_BUFFER):
    """A batched pipeline over a streamed split; labels are looked up by example id.

    ``ids -> shuffle -> [shard] -> (zip augmentation seeds) -> read, decode, augment,
    cast to float32, look up labels -> batch -> prefetch`` for random-access readers;
    sequential readers number their records first and shuffle in a buffer (module
    docstring). The augmentation (:func:`keras_imae.data.default_augmentation` kinds) uses
    the in-memory pipeline's stateless per-example seeds.

    Args:
        reader: a :class:`FileReader` or :class:`RecordReader`.
        labels: ``None`` (yield images only), or a dict name -> ``(N,)`` integer array indexed
            by example id (``{"label": noisy, "clean_label": clean}``).
        ids: the example ids to read (default all, in order), e.g. a training subset.
        batch_size: global batch size (per worker ``batch_size / replicas`` with
            ``input_context``).
        shuffle, seed: reshuffle every epoch, seeded.
        augment: ``None``, ``"cifar"`` or ``"crop"``.
        with_ids: add ``"id"`` (int64) to the labels dict (or yield ``(x, id)`` without
            labels), for per-example bookkeeping (:class:`keras_imae.callbacks.FitMonitor`).
        input_context: a ``tf.distribute.InputContext``: read this worker's share only.
        shuffle_buffer: buffer size of sequential readers.

    Returns:
        A batched ``tf.data.Dataset`` yielding ``x`` or ``(x, {name: int32 labels[, "id"]})``.
    """
    data.check_batch_size(batch_size)
    ids = np.arange(len(reader), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    shard, batch_size = _shard_and_batch(input_context, batch_size)
    ds = _id_dataset(reader, ids, shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer,
                     shard=shard)
    augment_fn = (data.augmentation(augment, reader.image_shape)
                  if augment is not None else None)
    if augment_fn is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
    tables = {k: tf.constant(np.asarray(v).astype(np.int32)) for k, v in (labels or {}).items()}

    def prepare(element, pair_seed):
        example_id, record = element
        image = reader.decode(record)
        if augment_fn is not None:
            image = augment_fn(image, pair_seed)
        image = tf.cast(image, tf.float32)
        targets = {k: tf.gather(t, example_id) for k, t in tables.items()}
        if not targets:
            return (image, example_id) if with_ids else image
        if with_ids:
            targets["id"] = example_id
        return image, targets

    if augment_fn is None:
        ds = ds.map(lambda i, record: prepare((i, record), None),
                    num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    options = data.pipeline_options(sharded=shard is not None)
    return ds.batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(options)


STATS_BATCH = 256  # images per chunk of the mean/std pass


def image_stats(reader):
    """Exact per-channel ``(mean, std)`` of a split, in one streamed pass (decoding every
    image once), by :func:`keras_imae.data.channel_stats`.

    Chunks of :data:`STATS_BATCH` uint8 images with a small prefetch keep the pass's memory
    flat. The result equals the in-memory statistics bit for bit although the chunks differ:
    the pixels are integers, so their float64 sums (and sums of squares) are exact below
    2^53, i.e. for any dataset under ~10^11 pixel values, in any order.
    """
    ids = tf.data.Dataset.range(len(reader))
    if reader.random_access:
        records = reader.records(ids)
    else:
        records = reader.make().enumerate()
    images = records.map(lambda _, record: reader.decode(record),
                         num_parallel_calls=tf.data.AUTOTUNE)
    chunks = images.batch(STATS_BATCH).prefetch(2).as_numpy_iterator()
    return data.channel_stats(chunks, reader.image_shape[-1])


def _from_files(name, train_paths, test_paths, image_size, *, y_train, y_test, class_names,
                given_labels=None):
    image_size = tuple(image_size or data.FOLDER_IMAGE_SIZE)
    train = FileReader(train_paths, image_size)
    test = FileReader(test_paths, image_size)
    try:
        mean, std = image_stats(train)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
        raise image_files.unreadable_error(train.paths, name, err) from None
    return StreamingDataset(name, train, test, np.asarray(y_train, np.int64),
                            np.asarray(y_test, np.int64), len(class_names), list(class_names),
                            None, mean, std, given_labels)


def _load_folder(name, root, image_size):
    train_paths, y_train, test_paths, y_test, class_names = data.folder_files(name, root)
    return _from_files(name, train_paths, test_paths, image_size, y_train=y_train,
                       y_test=y_test, class_names=class_names)


def _load_label_files(name, root, image_size):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No label-file folder at {root!r} (from dataset name "
                                f"{name!r}).")
    train, test, class_names = label_file.read_label_files(root)
    return _from_files(name, train.paths, test.paths, image_size, y_train=train.clean_labels,
                       y_test=test.labels, class_names=class_names, given_labels=train.labels)


def load(name, *, data_dir=None, image_size=None):
    """Opens a source as a :class:`StreamingDataset` (labels in memory, images on disk).

    Sources:
        - ``"folder:PATH"``: the image folder of :func:`keras_imae.data.load_dataset` (same
          files, order, split and pixels: training example ``i`` is ``x_train[i]`` there).
        - ``"tfrecord:DIR"``: ``tf.train.Example`` records with an encoded ``image`` and an
          integer ``label`` (:mod:`keras_imae.tfrecord_stream`).
        - ``"labels:DIR"``: real noisy labels from ``DIR/train.csv`` and ``DIR/test.csv``
          (format: :mod:`keras_imae.label_file`); ``given_labels`` are the file's labels,
          ``y_train`` its clean labels (-1 where unverified). Images resized as for folders.
        - a TFDS image-classification name, read with ``tfds.load`` (images undecoded until
          the pipeline), and ``cifar10_n[/ANNOTATION]`` / ``cifar100_n``, whose human labels
          are ``given_labels`` (:mod:`keras_imae.tfds_stream`).

    Opening reads every label and computes the exact per-channel mean/std of the training
    images in one streamed pass (each image decoded once); nothing else is kept.

    Args:
        name: the source.
        data_dir: TFDS data directory (TFDS names only).
        image_size: ``(height, width)``; default 32x32 for files, the native size for TFDS.

    Raises:
        FileNotFoundError, DataError, DownloadFailed, ValueError: as
        :func:`keras_imae.data.load_dataset`; label-file errors name the file and line.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid value for argument `name`. Expected {STREAMING_SOURCES}. "
                         f"Received: name={name!r}")
    source, _, path = name.partition(":")
    if source in ("folder", "labels", "tfrecord", "digits", "npz") and data_dir is not None:
        raise ValueError("Invalid value for argument `data_dir`: it only applies to TFDS "
                         f"datasets. Received: data_dir={data_dir!r} with name={name!r}")
    if source == "folder":
        return _load_folder(name, path, image_size)
    if source == "labels":
        return _load_label_files(name, path, image_size)
    if source == "tfrecord":
        from keras_imae import tfrecord_stream

        return tfrecord_stream.load(name, path, image_size)
    if source in ("digits", "npz"):
        raise ValueError(f"Invalid value for argument `name`: {source!r} is an in-memory "
                         f"source and is not streamed. Expected {STREAMING_SOURCES}. "
                         f"Received: name={name!r}")
    from keras_imae import tfds_stream  # TFDS only when needed

    return tfds_stream.load(name, data_dir=data_dir, image_size=image_size)


STREAMING_SOURCES = ("'folder:PATH', 'labels:DIR', 'tfrecord:DIR', a TFDS "
                     "image-classification name, "
                     "'cifar10_n[/aggre|random1|random2|random3|worse]' or 'cifar100_n'")


def train_dataset(dataset, labels, clean_labels=None, *, ids=None, batch_size, augment=None,
                  seed=0, shuffle=True, input_context=None):
    """:func:`keras_imae.data.train_dataset` for a :class:`StreamingDataset`.

    ``labels`` (noisy) and ``clean_labels`` are ``(N,)`` arrays indexed by example id (the
    whole training split, whatever ``ids`` selects); ``clean_labels`` is left out of the
    targets when ``None``. With the same seed, a folder's batches equal the in-memory
    pipeline's on the same images.
    """
    tables = {"label": data.check_label_table(labels, len(dataset.train), "labels")}
    if clean_labels is not None:
        tables["clean_label"] = data.check_label_table(clean_labels, len(dataset.train),
                                                       "clean_labels")
    return stream(dataset.train, tables, ids=ids, batch_size=batch_size, shuffle=shuffle,
                  seed=seed, augment=augment, input_context=input_context)


def eval_dataset(reader, labels=None, clean_labels=None, *, ids=None, batch_size,
                 with_ids=True):
    """Un-augmented, unshuffled pipeline of ``reader`` in id order yielding
    ``(x, {"label"[, "clean_label"], "id"})`` (``(x, id)`` without labels): what
    :class:`keras_imae.callbacks.FitMonitor` accumulates by id."""
    tables = {}
    if labels is not None:
        tables["label"] = data.check_label_table(labels, len(reader), "labels")
    if clean_labels is not None:
        tables["clean_label"] = data.check_label_table(clean_labels, len(reader), "clean_labels",
                                                       allow_unverified=True)
    return stream(reader, tables, ids=ids, batch_size=batch_size, with_ids=with_ids)
