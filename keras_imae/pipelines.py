"""tf.data pipelines over in-memory arrays, augmentation, and the validation split.

``keras_imae.data`` re-exports everything public here (``data.train_dataset`` etc.); the
streamed pipelines (:mod:`keras_imae.streaming`) reuse the same augmentation, options and
label checks, so both paths produce the same batches.
"""

import collections

import numpy as np
import tensorflow as tf

from keras_imae import checks, noise

AUGMENT_PAD_FRACTION = 8  # zero padding = side / 8 along each axis (CIFAR: 4 pixels at 32x32)
AUGMENTATIONS = ("cifar", "crop")
_DEFAULT_AUGMENTATION = {"cifar10": "cifar", "cifar100": "cifar", "cifar10_n": "cifar",
                         "cifar100_n": "cifar", "svhn_cropped": "crop"}


Split = collections.namedtuple(
    "Split", ["x_train", "y_train", "x_val", "y_val", "train_index", "val_index"]
)


def stratified_split(y, num_holdout, seed):
    """Sorted ``(keep, holdout)`` indices; each class holds out its share of ``num_holdout``.

    Per-class counts are ``n_c * num_holdout / N`` rounded by largest remainder (ties: lower
    class id first), so they sum to ``num_holdout``; members are drawn by a seeded permutation.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    classes, class_counts = np.unique(y, return_counts=True)
    counts = noise.largest_remainder(class_counts * num_holdout / len(y))
    holdout = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, counts)]
    holdout = np.sort(np.concatenate(holdout))
    keep = np.setdiff1d(np.arange(len(y)), holdout)
    return keep, holdout


def check_labels(y, name, num_examples, num_classes=None):
    """``y`` as ``(num_examples,)`` int64 class ids (in ``[0, num_classes)`` if given)."""
    y = noise.check_labels(y, num_classes, name)
    if len(y) != num_examples:
        raise ValueError(
            f"Invalid value for `{name}`. Expected {num_examples} labels (one per example). "
            f"Received: {len(y)} labels"
        )
    return y.astype(np.int64)


def split_validation(x, y, fraction, seed):
    """Carves a stratified validation split out of (noisy) training data.

    Each class contributes ``fraction`` of its examples (largest-remainder rounding so the
    total is ``round(fraction * N)``), drawn with ``numpy.random.Generator(PCG64(seed))``.
    Stratify by the *noisy* labels you train on: hyper-parameters can then be chosen on noisy
    validation accuracy, with no clean labels. Index clean labels or the noise mask with the
    returned indices to split them consistently.

    Args:
        x: ``(N, ...)`` inputs.
        y: ``(N,)`` integer labels to stratify by.
        fraction: validation fraction in (0, 1).
        seed: integer seed.

    Returns:
        ``Split(x_train, y_train, x_val, y_val, train_index, val_index)``, indices sorted.

    Example:
        >>> s = split_validation(np.zeros((10, 2)), np.repeat([0, 1], 5), 0.2, seed=0)
        >>> s.y_val, len(s.train_index)
        (array([0, 1]), 8)
    """
    x = np.asarray(x)
    y = check_labels(y, "y", len(x))
    fraction = checks.number("fraction", fraction, low_open=True, high=1.0, high_open=True)
    if not 1 <= round(fraction * len(y)) < len(y):  # both sides keep an example
        raise ValueError(
            "Invalid value for argument `fraction`. Expected a float in (0, 1) leaving at "
            f"least one example on each side of {len(y)}. Received: fraction={fraction!r}"
        )
    train, val = stratified_split(y, round(fraction * len(y)), seed)
    return Split(x[train], y[train], x[val], y[val], train, val)


def default_augmentation(dataset_name):
    """The training augmentation the papers use for a dataset.

    ``"cifar"`` (pad, random crop, random horizontal flip) for CIFAR-10/100 and their human
    relabellings CIFAR-10N/100N, ``"crop"`` (pad, random crop, no flip: mirrored digits
    change meaning) for SVHN; ``None`` for any other name. A run's ``augment="auto"`` also
    crops other images when its model is convolutional (:func:`keras_imae.recipe.augmentation`).
    """
    return _DEFAULT_AUGMENTATION.get(dataset_name.split(":")[0].split("/")[0])


def pipeline_options(*, sharded=False):
    """``tf.data.Options`` of every pipeline: ``AutoShardPolicy.DATA`` (in-memory tensors have
    no files to shard, and streamed ids must stay global: every worker reads all examples and
    keeps its own share under ``MultiWorkerMirroredStrategy``), or ``OFF`` when the pipeline
    already reads only this worker's share (``sharded=True``)."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.OFF if sharded else policy.DATA
    return options


def check_batch_size(batch_size):
    return checks.integer("batch_size", batch_size, low=1)


def check_label_table(labels, num_examples, name, *, allow_unverified=False):
    """``labels`` as an ``(num_examples,)`` int32 table indexed by example id (streamed
    pipelines look labels up in it); ``-1`` (unverified clean label) only where allowed."""
    labels = check_labels(labels, name, num_examples)
    if (labels < (-1 if allow_unverified else 0)).any():
        first = int(np.argmax(labels < 0))
        raise ValueError(f"Invalid value for argument `{name}`. Expected class ids >= 0"
                         f"{' (or -1: unverified)' if allow_unverified else ''}. Received: "
                         f"{name}[{first}]={labels[first]}")
    return labels.astype(np.int32)


def _targets(x, labels, clean_labels):
    targets = {"label": check_labels(labels, "labels", len(x)).astype(np.int32)}
    if clean_labels is not None:
        targets["clean_label"] = check_labels(clean_labels, "clean_labels", len(x)).astype(np.int32)
    return targets


def augmentation(kind, image_shape):
    """``augment(image, seed)``: the stateless ``"cifar"`` or ``"crop"`` augmentation of one
    ``image_shape`` image with a ``[2]`` seed (see :func:`train_dataset`)."""
    if kind not in AUGMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `augment`. Expected None or one of {AUGMENTATIONS}. "
            f"Received: augment={kind!r}"
        )
    if len(image_shape) != 3:
        raise ValueError(
            f"Invalid value for argument `augment`: {kind!r} needs (H, W, C) images. "
            f"Received: examples of shape {image_shape}"
        )
    height, width, _ = image_shape
    pad_h, pad_w = augment_pad(image_shape)

    def augment(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.pad_to_bounding_box(  # zero padding, as in the papers
            image, pad_h, pad_w, height + 2 * pad_h, width + 2 * pad_w
        )
        image = tf.image.stateless_random_crop(image, image_shape, seed=crop_seed)
        if kind == "cifar":
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image

    return augment


def augment_pad(image_shape):
    """``(rows, columns)`` of zero padding before the random crop: an eighth of each side,
    rounded (the papers' 4 pixels at CIFAR's 32x32; 4 at 28x28, 1 at digits' 8x8, 0 along a
    side of 1, such as a 1-D signal stored as an ``(L, 1, 1)`` image)."""
    return tuple(round(side / AUGMENT_PAD_FRACTION) for side in image_shape[:2])


def _pipeline(x, targets, *, batch_size, augment, seed, shuffle):
    check_batch_size(batch_size)
    x = np.asarray(x)
    augment_fn = augmentation(augment, x.shape[1:]) if augment is not None else None
    example = {"x": x} if targets is None else {"x": x, "y": targets}
    ds = tf.data.Dataset.from_tensor_slices(example).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment_fn is not None:
        # Stateless ops with one seed pair per example: reproducible for a given `seed`,
        # different every epoch (rerandomize_each_iteration).
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)

    def prepare(example, pair_seed=None):
        image = example["x"]
        if augment_fn is not None:
            image = augment_fn(image, pair_seed)
        image = tf.cast(image, tf.float32)
        return (image, example["y"]) if "y" in example else image

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def train_dataset(x, labels, clean_labels=None, *, batch_size, augment=None, seed=0,
                  shuffle=True):
    """Training pipeline for ``RobustModel``: ``(x, {"label": noisy, "clean_label": clean})``.

    ``from_tensor_slices -> cache -> shuffle(N, seed, reshuffle each epoch) -> map(augment,
    cast to float32) -> batch -> prefetch``. Images keep their pixel scale. Augmentation uses
    stateless ops seeded per example from ``seed``: two pipelines with the same arguments
    yield identical epochs, and each epoch differs from the previous. Labels are an input
    array, never re-drawn. Shardable under ``tf.distribute`` (``AutoShardPolicy.DATA``).

    Args:
        x: ``(N, ...)`` numpy inputs.
        labels: ``(N,)`` integer (noisy) training labels.
        clean_labels: optional ``(N,)`` clean labels; omitted from the dict when ``None``.
        batch_size: global batch size (> 0).
        augment: ``None``, ``"cifar"`` (zero-pad 4, random crop back to HxW, random
            horizontal flip) or ``"crop"`` (the same without the flip); see
            :func:`default_augmentation`.
        seed: integer seed of shuffling and augmentation.
        shuffle: shuffle the whole set each epoch.

    Returns:
        A batched ``tf.data.Dataset``; labels are int32.
    """
    return _pipeline(x, _targets(x, labels, clean_labels), batch_size=batch_size,
                     augment=augment, seed=seed, shuffle=shuffle)


def plain_dataset(x, labels, *, batch_size, augment=None, seed=0, shuffle=True):
    """Like :func:`train_dataset` but yields ``(x, labels)`` for plain Keras models.

    Pass ``shuffle=False`` to evaluate in order.
    """
    return _pipeline(x, check_labels(labels, "labels", len(x)).astype(np.int32),
                     batch_size=batch_size, augment=augment, seed=seed, shuffle=shuffle)


def eval_dataset(x, labels=None, clean_labels=None, *, batch_size):
    """Un-augmented, unshuffled pipeline in input order, for evaluation and prediction.

    Yields ``x`` alone when ``labels`` is ``None`` (for ``predict``), else
    ``(x, {"label": labels[, "clean_label": clean_labels]})`` like :func:`train_dataset`, so
    the exact fit of the (noisy) training set can be measured at the end of each epoch.
    """
    if labels is None and clean_labels is not None:
        raise ValueError(
            "Invalid value for argument `clean_labels`: it needs `labels` as well. "
            "Received: labels=None"
        )
    targets = None if labels is None else _targets(x, labels, clean_labels)
    return _pipeline(x, targets, batch_size=batch_size, augment=None, seed=0, shuffle=False)
