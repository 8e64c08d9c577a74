"""Readers: where a split's examples come from, in memory or on disk, numbered by example id.

Every split of a :class:`keras_imae.data.Dataset` is a reader. Example ``i`` of a split has
the **global example id** ``i`` (its position in the split), the same id in memory or
streamed and under any sharding; labels are tables indexed by that id
(:mod:`keras_imae.data._pipeline`), so only the pixels differ between readers.

- :class:`ArrayReader`: images (or feature vectors) in a numpy array.
- :class:`FileReader`: random access to image files (``folder:``, ``labels:``); the pipeline
  shuffles the *ids* with the same ``shuffle(N, seed)`` as the array reader, then reads, so
  the same images give bit-identical batches either way.
- :class:`RecordReader`: a fixed record order (TFRecord files, TFDS), numbered as the
  records come; shuffled in a seeded buffer, as any record stream.

:func:`materialize` decodes a file or record reader into an :class:`ArrayReader` (the
in-memory path of those sources: decode once, then train at array speed).

Epochs: ``reader.epochs(ids, shuffle=..., shard=..., shuffle_buffer=...)`` builds what every
epoch shares once (the array slices, the numbered records) and returns ``seed -> one epoch's
(id, record) dataset``, which the pipeline calls with each epoch's own seed inside a
``flat_map`` (the epoch's order is then a function of the run's seed and the epoch alone).
Arrays sliced inside that function would be embedded in it: on CIFAR-sized arrays that took
8 s to build and 12 s an epoch, against 0.03 s and 0.6 s captured (measured).
``epoch_length(ids, shard)`` is the number of examples of one epoch, ``None`` where only
reading tells.

Sharding (several workers): ``epochs(..., shard=(num_shards, index))`` keeps every
``num_shards``-th id after the shuffle (which every worker draws alike) and before reading,
so a worker decodes only its share and ids stay global. TFRecord files, when there are at
least as many as workers, are split by file (per-file id offsets).
"""

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from keras_imae.data import _images

__all__ = ["ArrayReader", "FileReader", "RecordReader", "channel_stats", "image_stats",
           "materialize"]

STATS_CHUNK = 4096  # examples per chunk of an array's mean/std
STATS_BATCH = 256  # decoded images per chunk of a streamed mean/std pass


def _subset_filter(ds, ids, size):
    """Keep only ``ids`` of a numbered ``(id, record)`` stream of ``size`` records."""
    if len(ids) == size:
        return ds
    keep = np.zeros(size, bool)
    keep[ids] = True
    keep = tf.constant(keep)
    return ds.filter(lambda i, _: tf.gather(keep, i))


EPOCH_GRAPH_SEED = 1  # the graph-level seed inside an epoch's tf.data function (_shuffled)


def _shuffled(ds, buffer_size, seed):
    """``ds`` shuffled once with ``seed``, an int64 tensor: the pipeline makes every epoch
    anew, inside a tf.data function, with that epoch's seed.

    tf.data pairs an op seed with the graph-level seed (``tf.random.set_seed``), and a tensor
    op seed fails under a graph-level seed of 0 (it tests ``(0, seed) == (0, 0)`` in Python).
    Inside the epoch's function the graph-level seed is that function's own: it is fixed
    there, so the order is a function of ``seed`` alone, whatever seed the program set.
    """
    if not tf.executing_eagerly():  # always, here (eagerly, it would set the global seed)
        tf.random.set_seed(EPOCH_GRAPH_SEED)
    return ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False)


def _share(num_examples, shard):
    """How many of ``num_examples`` a ``(num_shards, index)`` shard keeps (all: ``None``)."""
    return num_examples if shard is None else len(range(shard[1], num_examples, shard[0]))


@dataclasses.dataclass(repr=False)
class ArrayReader:
    """Example ``i`` is ``x[i]`` (a numpy array: ``(N, H, W, C)`` images or ``(N, F)``
    features, in their original scale and dtype)."""

    x: np.ndarray
    random_access = True

    def __len__(self):
        return len(self.x)

    @property
    def image_shape(self):
        return tuple(self.x.shape[1:])

    def epochs(self, ids, *, shuffle, shard, shuffle_buffer=None):
        """``seed -> (id, x)`` of one epoch: cached, shuffled, then this worker's share."""
        base = tf.data.Dataset.from_tensor_slices((ids, self.x[ids])).cache()

        def epoch(seed):
            ds = _shuffled(base, len(ids), seed) if shuffle else base
            return ds.shard(*shard) if shard is not None else ds

        return epoch

    def epoch_length(self, ids, shard):
        """Examples per epoch of :meth:`epochs` (this worker's share)."""
        return _share(len(ids), shard)

    def decode(self, record):
        return record


@dataclasses.dataclass(repr=False)
class FileReader:
    """Example ``i`` is the image file ``paths[i]``, decoded to ``image_size`` by
    :func:`keras_imae.data._images.decode_image`."""

    paths: np.ndarray
    image_size: tuple
    random_access = True

    def __post_init__(self):
        self.paths = _images.path_array(self.paths)
        self._path_tensor = None  # one string tensor shared by all of this split's pipelines

    def __len__(self):
        return len(self.paths)

    @property
    def image_shape(self):
        return (*self.image_size, _images.CHANNELS)

    def epochs(self, ids, *, shuffle, shard, shuffle_buffer=None):
        """``seed -> (id, path)`` of one epoch: the ids shuffled, sharded, then looked up."""
        base = tf.data.Dataset.from_tensor_slices(ids)
        if self._path_tensor is None:
            self._path_tensor = tf.constant(self.paths)
        paths = self._path_tensor

        def epoch(seed):
            ds = _shuffled(base, len(ids), seed) if shuffle else base  # the array reader's
            if shard is not None:
                ds = ds.shard(*shard)
            return ds.map(lambda i: (i, tf.gather(paths, i)))

        return epoch

    def epoch_length(self, ids, shard):
        """Examples per epoch of :meth:`epochs` (this worker's share)."""
        return _share(len(ids), shard)

    def decode(self, record):
        return _images.decode_image(record, self.image_size)

    def unreadable(self, where, err):
        """The :class:`DataError` of a failed decoding pass, naming the first bad file."""
        return _images.unreadable_error(self.paths, where, err)


@dataclasses.dataclass(repr=False)
class RecordReader:
    """Sequential: ``make()`` gives the split's encoded records in a fixed order (example
    ``i`` is the ``i``-th); ``decode_fn`` turns one into an image of ``image_shape``.

    ``shard_files(num_shards, index)``, when given, yields ``(id, record)`` of this worker's
    share of the *files* (global ids from per-file offsets); ``None`` when the reader cannot
    (then every worker reads all records and keeps its ids).
    """

    make: callable
    decode_fn: callable
    num_examples: int
    image_shape: tuple
    shard_files: callable = None
    random_access = False

    def __len__(self):
        return self.num_examples

    def epochs(self, ids, *, shuffle, shard, shuffle_buffer):
        """``seed -> (id, record)`` of one epoch: numbered in record order, kept to ``ids``,
        this worker's share, shuffled in a buffer of ``shuffle_buffer``."""
        if shard is not None and self.shard_files is not None:
            ds, shard = self.shard_files(*shard), None  # reads only this worker's files
        else:
            ds = self.make().enumerate()  # ids: positions in the fixed record order
        ds = _subset_filter(ds, ids, len(self))
        if shard is not None:
            ds = ds.shard(*shard)
        return lambda seed: _shuffled(ds, shuffle_buffer, seed) if shuffle else ds

    def epoch_length(self, ids, shard):
        """Examples per epoch of :meth:`epochs`, ``None`` when only reading tells (this
        worker's share of the files)."""
        if shard is not None and self.shard_files is not None:
            return None
        return _share(len(ids), shard)

    def decode(self, record):
        image = self.decode_fn(record)
        image.set_shape(self.image_shape)
        return image

    def unreadable(self, where, err):
        return _images.DataError(f"{where!r}: a record's image is missing or not an image "
                                 f"({str(err).splitlines()[0][:200]}).")


def _decoded_chunks(reader, batch):
    """Every example of a file or record reader, decoded, in id order, ``batch`` at a time."""
    ids = np.arange(len(reader), dtype=np.int64)
    records = reader.epochs(ids, shuffle=False, shard=None, shuffle_buffer=None)(None)
    images = records.map(lambda _, record: reader.decode(record),
                         num_parallel_calls=tf.data.AUTOTUNE)
    return images.batch(batch).prefetch(2).as_numpy_iterator()


def materialize(reader, where):
    """``reader``'s examples decoded into one :class:`ArrayReader` (an array reader is
    returned as it is).

    Raises:
        DataError: an image that cannot be decoded, named (files) or described (records).
    """
    if isinstance(reader, ArrayReader):
        return reader
    try:
        chunks = list(_decoded_chunks(reader, STATS_BATCH))
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
        raise reader.unreadable(where, err) from None
    if not chunks:
        return ArrayReader(np.zeros((0, *reader.image_shape), np.uint8))
    return ArrayReader(np.concatenate(chunks))


def channel_stats(chunks, channels):
    """float32 per-channel ``(mean, std)`` of arrays ``(..., channels)`` given in chunks.

    Sums of values and squares accumulate in float64, chunk by chunk; ``std`` is
    ``sqrt(max(E[x^2] - E[x]^2, 0))``. A constant channel or feature (``std < 1e-6 *
    max(1, |mean|)``: a blank column of flattened digits, an all-zero colour channel) gets
    ``std = 1``, so standardising centres it instead of dividing by zero; one warning names
    how many there are. Image pixels are integers, so their float64 sums are
    exact below 2^53 (any dataset under ~10^11 pixel values) in any chunking: an array and a
    streamed pass over the same images give bit-identical statistics.
    """
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for chunk in chunks:
        chunk = np.asarray(chunk).reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
        count += len(chunk)
    count = max(count, 1)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    constant = std < 1e-6 * np.maximum(1.0, np.abs(mean))
    if constant.any():
        ids = np.flatnonzero(constant)
        warnings.warn(
            f"{len(ids)} of {channels} channels (features) are constant in the training data "
            f"(ids {ids[:10].tolist()}{' ...' if len(ids) > 10 else ''}): they are "
            "standardised with std 1 (centred only).", UserWarning, stacklevel=2)
        std = np.where(constant, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def image_stats(reader, where=None):
    """Exact per-channel (per-feature) ``(mean, std)`` of a split: of the array, chunk by
    chunk, or of one streamed pass decoding every image once (a flat memory)."""
    channels = reader.image_shape[-1]
    if isinstance(reader, ArrayReader):
        x = reader.x
        return channel_stats((x[i:i + STATS_CHUNK] for i in range(0, len(x), STATS_CHUNK)),
                             channels)
    try:
        return channel_stats(_decoded_chunks(reader, STATS_BATCH), channels)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
        raise reader.unreadable(where, err) from None
