"""tf.data pipelines over any reader: one :func:`train_dataset`, one :func:`eval_dataset`.

``ids -> examples (cache, shuffle, shard: the reader's) -> decode, augment, cast to float32,
look labels up by id -> batch``, made anew for every epoch from that epoch's key (a function
of the seed and the epoch's number: :func:`stream`'s ``epochs``), ``-> prefetch``.

Labels are ``(N,)`` tables indexed by example id (``tf.gather`` on a constant: 4 bytes per
example and table), so noise drawn once on the whole label vector applies to any reader.
Images keep their pixel scale: models start with a ``Normalization`` layer.
"""

import numpy as np
import tensorflow as tf

from keras_imae import _checks as checks
from keras_imae._defaults import DEFAULTS
from keras_imae.data._readers import ArrayReader
from keras_imae.data._split import check_labels

__all__ = ["AUGMENTATIONS", "EVAL_BATCH_BYTES", "SHUFFLE_BUFFER", "augment_pad", "augmentation",
           "check_batch_size", "check_label_table", "eval_batch_size", "eval_dataset",
           "pipeline_options", "plain_dataset", "steps_per_epoch", "stream", "train_dataset"]

AUGMENT_PAD = DEFAULTS["augment_pad"]  # zero padding: this share of each side (CIFAR: 4 of 32)
AUGMENTATIONS = ("cifar", "crop")
SHUFFLE_BUFFER = DEFAULTS["shuffle_buffer"]  # record readers (TFRecord, TFDS)
PREFETCH_BATCHES = 2  # fixed: an autotuned buffer grows with the epoch length (measured)
EVAL_BATCH_BYTES = 64 * 2**20  # float32 input of one evaluation batch (eval_batch_size)


def check_batch_size(batch_size):
    return checks.integer("batch_size", batch_size, low=1)


def check_label_table(labels, num_examples, name, *, allow_unverified=False):
    """``labels`` as an ``(num_examples,)`` int32 table indexed by example id; ``-1``
    (unverified clean label) only where allowed."""
    labels = check_labels(labels, name, num_examples)
    if (labels < (-1 if allow_unverified else 0)).any():
        first = int(np.argmax(labels < 0))
        raise ValueError(f"Invalid value for argument `{name}`. Expected class ids >= 0"
                         f"{' (or -1: unverified)' if allow_unverified else ''}. Received: "
                         f"{name}[{first}]={labels[first]}")
    return labels.astype(np.int32)


def augmentation(kind, image_shape):
    """``augment(image, seed)``: the stateless ``"cifar"`` (zero-pad an eighth of each side,
    random crop back, random horizontal flip) or ``"crop"`` (the same without the flip)
    augmentation of one ``image_shape`` image with a ``[2]`` seed."""
    if kind not in AUGMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `augment`. Expected None or one of {AUGMENTATIONS}. "
            f"Received: augment={kind!r}")
    if len(image_shape) != 3:
        raise ValueError(
            f"Invalid value for argument `augment`: {kind!r} needs (H, W, C) images. "
            f"Received: examples of shape {image_shape}")
    height, width, _ = image_shape
    pad_h, pad_w = augment_pad(image_shape)

    def augment(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.pad_to_bounding_box(  # zero padding, as in the papers
            image, pad_h, pad_w, height + 2 * pad_h, width + 2 * pad_w)
        image = tf.image.stateless_random_crop(image, image_shape, seed=crop_seed)
        if kind == "cifar":
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image

    return augment


def augment_pad(image_shape):
    """``(rows, columns)`` of zero padding before the random crop: an eighth of each side,
    rounded (the papers' 4 pixels at CIFAR's 32x32; 4 at 28x28, 1 at digits' 8x8, 0 along a
    side of 1, such as a 1-D signal stored as an ``(L, 1, 1)`` image)."""
    return tuple(round(side * AUGMENT_PAD) for side in image_shape[:2])


def pipeline_options(*, sharded=False):
    """``tf.data.Options`` of every pipeline: ``AutoShardPolicy.DATA`` (ids must stay global:
    every worker reads all examples and keeps its share under ``MultiWorkerMirroredStrategy``),
    or ``OFF`` when the pipeline already reads only this worker's share (``sharded=True``)."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.OFF if sharded else policy.DATA
    return options


def _reader(data):
    """The training reader of ``data``: a :class:`keras_imae.data.Dataset`, a reader, or a
    numpy array (wrapped in an :class:`ArrayReader`)."""
    if hasattr(data, "train") and hasattr(data, "test"):  # a Dataset
        return data.train
    if hasattr(data, "epochs") and hasattr(data, "decode"):
        return data
    return ArrayReader(np.asarray(data))


def steps_per_epoch(num_examples, batch_size):
    """Batches in one epoch of ``num_examples`` (the last one may be smaller)."""
    return -(-int(num_examples) // check_batch_size(batch_size))


def _epoch_key(seed, epoch):
    """The ``[2]`` int64 key of epoch ``epoch`` of a pipeline seeded ``seed``: its order
    (element 0, the shuffle's seed) and augmentation (element 1) are drawn from it alone."""
    return tf.random.stateless_uniform([2], seed=tf.stack([tf.cast(seed, tf.int64), epoch]),
                                       minval=None, maxval=None, dtype=tf.int64)


def _example_seed(key, example_id):
    """The ``[2]`` augmentation seed of one example in the epoch of ``key``: a function of
    the epoch and the example's id, not of its position in the epoch or its worker."""
    return tf.random.stateless_uniform([2], seed=tf.stack([key[1], example_id]),
                                       minval=None, maxval=None, dtype=tf.int64)


def _epoch_source(seed, epochs, initial_epoch):
    """The epochs' numbers ``initial_epoch, ..., epochs - 1``, or (``epochs=None``) one
    number drawn anew at every iteration over the dataset."""
    if epochs is None:
        return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return tf.data.Dataset.range(initial_epoch, epochs)


def _check_epochs(epochs, initial_epoch, length):
    """``(epochs, initial_epoch)`` of :func:`stream`, checked."""
    if epochs is None:
        return None, initial_epoch
    epochs = checks.integer("epochs", epochs, low=0)
    initial_epoch = checks.integer("initial_epoch", initial_epoch, low=0, high=epochs)
    if length is None:
        raise ValueError(
            "Invalid value for argument `epochs`: a dataset of several epochs needs the "
            "length of an epoch, unknown for a record reader split by file under "
            f"`input_context`. Received: epochs={epochs}; pass epochs=None.")
    return epochs, initial_epoch


def _finisher(labels, *, plain, with_ids):
    """``finish(image, example_id)``: float32 images and their labels looked up by id (one
    example or a whole batch alike), in :func:`stream`'s output structure."""
    tables = {k: tf.constant(np.asarray(v).astype(np.int32)) for k, v in (labels or {}).items()}

    def finish(image, example_id):
        image = tf.cast(image, tf.float32)
        targets = {k: tf.gather(t, example_id) for k, t in tables.items()}
        if plain:
            return image, targets["label"]
        if not targets:
            return (image, example_id) if with_ids else image
        if with_ids:
            targets["id"] = example_id
        return image, targets

    return finish


def stream(reader, labels=None, *, ids=None, batch_size, shuffle=False, seed=0, augment=None,
           with_ids=False, input_context=None, shuffle_buffer=SHUFFLE_BUFFER, plain=False,
           epochs=None, initial_epoch=0):
    """A batched pipeline over one reader; labels are looked up by example id.

    Args:
        reader: an :class:`ArrayReader`, ``FileReader`` or ``RecordReader``.
        labels: ``None`` (yield images only), or a dict name -> ``(N,)`` int array indexed by
            example id (``{"label": noisy, "clean_label": clean}``).
        ids: the example ids to read (default all, in order), e.g. a training subset.
        batch_size: global batch size (per worker ``batch_size / replicas`` with
            ``input_context``).
        shuffle, seed: shuffle every epoch, seeded (an integer).
        augment: ``None``, ``"cifar"`` or ``"crop"``: stateless, one seed pair per example
            (a function of the epoch and the example's id).
        with_ids: add ``"id"`` (int64) to the labels dict (or yield ``(x, id)`` without
            labels), for per-example bookkeeping (:class:`keras_imae.callbacks.FitMonitor`).
        input_context: a ``tf.distribute.InputContext``: read this worker's share only.
        shuffle_buffer: buffer size of record readers.
        plain: yield ``(x, labels["label"])`` for plain Keras models.
        epochs, initial_epoch: ``None``: one epoch, drawn anew (order, augmentation) at each
            iteration. An integer: epochs ``initial_epoch .. epochs - 1`` in sequence, epoch
            ``e`` a function of ``(seed, e)`` alone (a resumed run sees the batches of an
            uninterrupted one); give ``fit`` the same and ``steps_per_epoch``.

    Returns:
        A batched ``tf.data.Dataset`` (of known length, except for a record reader split
        by file under ``input_context``, where ``epochs`` is refused).
    """
    check_batch_size(batch_size)
    seed = checks.integer("seed", seed)
    ids = np.arange(len(reader), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    shard = None
    if input_context is not None:
        shard = (input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    length = reader.epoch_length(ids, shard)
    epochs, initial_epoch = _check_epochs(epochs, initial_epoch, length)
    augment_fn = augmentation(augment, reader.image_shape) if augment is not None else None
    finish = _finisher(labels, plain=plain, with_ids=with_ids)
    random = shuffle or augment_fn is not None
    if not random and isinstance(reader, ArrayReader) and shard is None:
        # In order, unsharded (evaluation): slices of the array, no per-example work.
        starts = tf.data.Dataset.range(0, len(ids), batch_size)
        x, id_tensor = tf.constant(reader.x[ids]), tf.constant(ids)
        ds = starts.map(lambda s: finish(x[s:s + batch_size], id_tensor[s:s + batch_size]),
                        num_parallel_calls=tf.data.AUTOTUNE)
    else:
        make_epoch = reader.epochs(ids, shuffle=shuffle, shard=shard,
                                   shuffle_buffer=shuffle_buffer)

        def one_epoch(key):  # key: the epoch's _epoch_key, or None (nothing random)
            ds = make_epoch(None if key is None else key[0])  # the shuffle's seed
            if isinstance(reader, ArrayReader) and augment_fn is None:
                # Nothing to decode per example: batch first, then cast and look labels up
                # per batch (a per-example map costs tens of microseconds an example).
                return ds.batch(batch_size).map(lambda i, x: finish(x, i),
                                                num_parallel_calls=tf.data.AUTOTUNE)
            if augment_fn is None:
                ds = ds.map(lambda i, record: finish(reader.decode(record), i),
                            num_parallel_calls=tf.data.AUTOTUNE)
            else:
                ds = ds.map(lambda i, record: finish(
                    augment_fn(reader.decode(record), _example_seed(key, i)), i),
                    num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(batch_size)

        if random:
            keys = _epoch_source(seed, epochs, initial_epoch).map(lambda e: _epoch_key(seed, e))
            ds = keys.flat_map(one_epoch)
        else:
            ds = one_epoch(None)
    count = 1 if epochs is None else epochs - initial_epoch
    if epochs is not None and not random:
        ds = ds.repeat(count)
    if length is not None:  # flat_map and filters hide it; progress bars and fit need it
        ds = ds.apply(tf.data.experimental.assert_cardinality(
            count * steps_per_epoch(length, batch_size)))
    options = pipeline_options(sharded=shard is not None)
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def _tables(num_examples, labels, clean_labels, *, allow_unverified):
    tables = {"label": check_label_table(labels, num_examples, "labels")}
    if clean_labels is not None:
        tables["clean_label"] = check_label_table(clean_labels, num_examples, "clean_labels",
                                                  allow_unverified=allow_unverified)
    return tables


def train_dataset(data, labels, clean_labels=None, *, ids=None, batch_size, augment=None,
                  seed=0, shuffle=True, input_context=None, epochs=None, initial_epoch=0,
                  with_ids=False):
    """Training pipeline for ``RobustModel``: ``(x, {"label": noisy, "clean_label": clean})``.

    Args:
        data: a :class:`keras_imae.data.Dataset` (its training split), a reader, or an
            ``(N, ...)`` numpy array of inputs.
        labels: ``(N,)`` integer (noisy) training labels, indexed by example id (the whole
            split, whatever ``ids`` selects).
        clean_labels: optional ``(N,)`` clean labels; omitted from the targets when ``None``.
        ids: the example ids to train on (default: all).
        batch_size: global batch size.
        augment: ``None``, ``"cifar"`` or ``"crop"`` (see :func:`augmentation`).
        seed: seed of the shuffling and augmentation: two pipelines with the same arguments
            yield identical epochs, and each epoch differs from the previous.
        shuffle: reshuffle every epoch.
        input_context: a ``tf.distribute.InputContext`` (several workers).
        epochs, initial_epoch: ``None``: one epoch, drawn anew at every iteration; else
            epochs ``initial_epoch, ..., epochs - 1`` in sequence, each a function of
            ``(seed, epoch)`` alone, to ``fit`` with ``steps_per_epoch`` (see :func:`stream`:
            what a resumable run trains on).
        with_ids: add each example's id (``"id"``, int64) to the targets: what
            :class:`keras_imae.models.EarlyLearning` indexes its targets by.

    Returns:
        A batched ``tf.data.Dataset``; labels are int32.
    """
    reader = _reader(data)
    return stream(reader, _tables(len(reader), labels, clean_labels, allow_unverified=False),
                  ids=ids, batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment,
                  input_context=input_context, epochs=epochs, initial_epoch=initial_epoch,
                  with_ids=with_ids)


def plain_dataset(data, labels, *, ids=None, batch_size, augment=None, seed=0, shuffle=True):
    """Like :func:`train_dataset`, yielding ``(x, labels)`` for plain Keras models (pass
    ``shuffle=False`` to evaluate in order)."""
    reader = _reader(data)
    return stream(reader, _tables(len(reader), labels, None, allow_unverified=False), ids=ids,
                  batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment, plain=True)


def eval_batch_size(input_shape, batch_size=1):
    """The batch of an evaluation pass (prediction or a pass over the inputs, no gradient):
    the largest one whose float32 inputs fit in :data:`EVAL_BATCH_BYTES` (64 MiB), at most
    4,096 examples, at least ``batch_size`` (the training batch, which fits already).

    Large batches predict several times faster per example on small inputs (8x8 digits,
    32x32 images: 4,096). On a backbone's 224x224x3 images the bound gives 111: a floor of
    1,024 examples there held 616 MB of input plus the network's activations for them, and a
    streamed MobileNetV3Small run's peak memory grew by 5 GB from 400 to 3,200 training
    images (``benchmarks/streaming.py --model=MobileNetV3Small --image_size=224``).
    """
    per_example = 4 * max(1, int(np.prod(input_shape)))
    return int(max(batch_size, min(4096, EVAL_BATCH_BYTES // per_example)))


def eval_dataset(data, labels=None, clean_labels=None, *, ids=None, batch_size,
                 with_ids=False):
    """Un-augmented, unshuffled pipeline in id order, for evaluation and prediction.

    Yields ``x`` (``(x, id)`` with ``with_ids``) when ``labels`` is ``None``, else
    ``(x, {"label": labels[, "clean_label": clean_labels][, "id"]})``: what
    :class:`keras_imae.callbacks.FitMonitor` measures. ``data`` as for
    :func:`train_dataset`, or a split's reader (``dataset.test``); a clean label of -1 marks an
    unverified example.
    """
    if labels is None and clean_labels is not None:
        raise ValueError("Invalid value for argument `clean_labels`: it needs `labels` as "
                         "well. Received: labels=None")
    reader = _reader(data)
    tables = None if labels is None else _tables(len(reader), labels, clean_labels,
                                                 allow_unverified=True)
    return stream(reader, tables, ids=ids, batch_size=batch_size, with_ids=with_ids)
