"""In-memory dataset sources: digits, TFDS, npz and image folders, as numpy arrays.

Sources, loaded into memory as numpy arrays (the fastest path when the decoded images fit:
CIFAR scale, ~200 MB of uint8):

- ``"digits"``: scikit-learn's bundled 8x8 digits (no download), the embedded default.
- any TFDS image-classification dataset name (``"mnist"``, ``"cifar100"``, ...).
- ``"npz:PATH"``: arrays ``x_train, y_train, x_test, y_test`` (optional ``class_names``).
- ``"folder:PATH"``: one sub-folder of images per class.

Larger data streams from disk with the same ids, labels and batches
(:mod:`keras_imae.streaming`; ``--streaming``, :mod:`keras_imae.run_data`), which also
opens the sources that bring their own noisy labels (``labels:DIR``, ``cifar10_n``,
``cifar100_n``). The tf.data pipelines live in :mod:`keras_imae.pipelines` and are
re-exported here (``data.train_dataset``, ``data.eval_dataset``, ...).

Images are NHWC in their original pixel scale (0-16 for digits, 0-255 for photos); pipelines
emit them as float32 without rescaling, because models start with a ``Normalization`` layer
built from :attr:`Dataset.mean` / :attr:`Dataset.std`, so an exported model takes raw pixels.
"""

import dataclasses
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_imae import image_files, pipelines
from keras_imae.pipelines import (  # noqa: F401  (re-exported: the public pipeline API)
    AUGMENTATIONS, Split, augment_pad, augmentation, check_batch_size, check_label_table,
    default_augmentation, eval_dataset, pipeline_options, plain_dataset, split_validation,
    train_dataset)

__all__ = ["AUGMENTATIONS", "DataError", "Dataset", "DownloadFailed", "Split", "augment_pad",
           "augmentation", "channel_stats", "check_batch_size", "check_label_table",
           "default_augmentation", "eval_dataset", "folder_files", "is_known_source", "load_dataset",
           "pipeline_options", "plain_dataset", "split_validation", "superclass_map",
           "tfds_image_label_keys", "tfds_load", "train_dataset"]

DIGITS_TEST_SIZE = 450  # of 1,797: 1,347 train / 450 test, stratified
FOLDER_TEST_FRACTION = 0.2  # single image folder without train/ and test/ sub-folders
FOLDER_IMAGE_SIZE = (32, 32)
SPLIT_SEED = 0  # fixed seed of the built-in train/test splits
_SOURCES = "'digits', 'npz:PATH', 'folder:PATH' or a TFDS image-classification dataset name"
_TFDS_EXAMPLES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")


@dataclasses.dataclass(repr=False)
class Dataset:
    """An in-memory classification dataset.

    Attributes:
        name: the source string given to :func:`load_dataset`.
        x_train, x_test: ``(N, H, W, C)`` images (or ``(N, F)`` tabular features from npz) in
            their original scale and dtype (uint8 for images).
        y_train, y_test: ``(N,)`` int64 clean class ids.
        num_classes: ``K``.
        class_names: list of ``K`` strings.
        superclasses: ``(K,)`` int64 fine -> coarse map (CIFAR-100's ``coarse_label``), or
            ``None``.
        mean, std: float32 per-channel (per-feature for tabular data) mean and standard
            deviation of ``x_train``, for a ``keras.layers.Normalization`` first layer.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: list
    superclasses: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape} {self.x_train.dtype}, "
            f"x_test={self.x_test.shape}, num_classes={self.num_classes})"
        )


def channel_stats(chunks, channels):
    """float32 per-channel ``(mean, std)`` of arrays ``(..., channels)`` given in chunks.

    Sums of values and squares accumulate in float64, chunk by chunk; ``std`` is
    ``sqrt(max(E[x^2] - E[x]^2, 0))``. The in-memory and the streamed sources feed the same
    chunks (4,096 examples each, in example order), so both get bit-identical statistics.
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
    return mean.astype(np.float32), std.astype(np.float32)


STATS_CHUNK = 4096


def _channel_stats(x):
    """float32 mean and std over all axes but the last (see :func:`channel_stats`)."""
    return channel_stats((x[i:i + STATS_CHUNK] for i in range(0, len(x), STATS_CHUNK)),
                         x.shape[-1])


def _features(x, name):
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) grayscale -> NHWC
        x = x[..., None]
    if x.ndim not in (2, 4):
        raise ValueError(
            f"Invalid value for `{name}`. Expected (N, F) features or (N, H, W[, C]) images. "
            f"Received: shape {x.shape}"
        )
    return x


class DownloadFailed(RuntimeError):
    """A TFDS dataset is not prepared in ``data_dir`` and could not be downloaded."""


DataError = image_files.DataError  # defined there, raised by every source


def _check_finite(x, name):
    """Inputs must be finite: a NaN or Inf pixel would silently wreck training."""
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                f"Invalid value in `{name}`: inputs must be finite. Received: {name}"
                f"[{', '.join(map(str, index))}]={x[index]} ({int(bad.sum())} non-finite "
                "values in all)")


def _make_dataset(name, x_train, y_train, x_test, y_test, class_names, superclasses=None):
    _check_finite(x_train, "x_train")
    _check_finite(x_test, "x_test")
    mean, std = _channel_stats(x_train)
    return Dataset(
        name, x_train, y_train, x_test, y_test, len(class_names), list(class_names),
        superclasses, mean, std,
    )


def _load_digits():
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    x = digits.images.astype(np.uint8)[..., None]  # (1797, 8, 8, 1), values 0..16
    y = digits.target.astype(np.int64)
    train, test = pipelines.stratified_split(y, DIGITS_TEST_SIZE, SPLIT_SEED)
    return _make_dataset("digits", x[train], y[train], x[test], y[test],
                         [str(c) for c in range(10)])


def _load_npz(name, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No npz file at {path!r} (from dataset name {name!r}).")
    with np.load(path, allow_pickle=False) as f:
        missing = sorted({"x_train", "y_train", "x_test", "y_test"} - set(f.files))
        if missing:
            raise DataError(
                f"{path!r} is missing arrays {missing}. Expected x_train, y_train, x_test, "
                f"y_test (optional class_names). Found: {sorted(f.files)}"
            )
        arrays = {key: f[key] for key in f.files}
    try:
        return _npz_dataset(name, path, arrays)
    except DataError:
        raise
    except ValueError as err:  # shapes, labels: the same message, naming the file
        raise DataError(f"{path!r}: {err}") from None


def _npz_dataset(name, path, arrays):
    x_train = _features(arrays["x_train"], "x_train")
    x_test = _features(arrays["x_test"], "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path!r}: x_train examples have shape {x_train.shape[1:]} but x_test examples "
            f"have shape {x_test.shape[1:]}."
        )
    y_train = pipelines.check_labels(arrays["y_train"], "y_train", len(x_train))
    y_test = pipelines.check_labels(arrays["y_test"], "y_test", len(x_test))
    if "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"]]
    else:
        num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
        class_names = [str(c) for c in range(num_classes)]
        empty = np.setdiff1d(np.arange(num_classes), y_train)  # a test-only id counts too
        if len(empty):
            warnings.warn(
                f"{path!r}: the number of classes is taken from the largest label, "
                f"{num_classes}, but {len(empty)} of them have no example in y_train (ids "
                f"{empty[:10].tolist()}{' ...' if len(empty) > 10 else ''}); noise may flip "
                "labels into them. Add `class_names` to the npz to fix the class list.",
                UserWarning, stacklevel=3)
    pipelines.check_labels(y_train, "y_train", len(x_train), len(class_names))
    pipelines.check_labels(y_test, "y_test", len(x_test), len(class_names))
    return _make_dataset(name, x_train, y_train, x_test, y_test, class_names)


IMAGE_EXTENSIONS = image_files.IMAGE_EXTENSIONS


def folder_files(name, root):
    """The files of an image folder, split: ``(train_paths, y_train, test_paths, y_test,
    class_names)``, without reading any image (labels come from the folder names).

    ``root/train`` + ``root/test`` are the splits when both exist; otherwise ``root`` holds the
    class folders and :data:`FOLDER_TEST_FRACTION` of each class (seed :data:`SPLIT_SEED`,
    stratified) is the test split. Training example ``i`` is ``train_paths[i]`` in the
    in-memory and the streamed source alike.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No image folder at {root!r} (from dataset name {name!r}).")
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        train_paths, y_train, class_names = image_files.list_class_folders(train_dir)
        test_paths, y_test, _ = image_files.list_class_folders(test_dir, class_names)
        return train_paths, y_train, test_paths, y_test, class_names
    paths, y, class_names = image_files.list_class_folders(root)
    train, test = pipelines.stratified_split(y, round(FOLDER_TEST_FRACTION * len(y)), SPLIT_SEED)
    return paths[train], y[train], paths[test], y[test], class_names


def _load_folder(name, root, image_size):
    image_size = tuple(image_size or FOLDER_IMAGE_SIZE)
    train_paths, y_train, test_paths, y_test, class_names = folder_files(name, root)
    x_train = image_files.read_images(train_paths, image_size, root)
    x_test = image_files.read_images(test_paths, image_size, root)
    return _make_dataset(name, x_train, y_train, x_test, y_test, class_names)


def tfds_load(name, data_dir, **kwargs):
    """``tfds.load(name, data_dir=data_dir, **kwargs)`` with its failures explained:
    :class:`DownloadFailed` (not prepared, no network) or ``ValueError`` (unknown name)."""
    import tensorflow_datasets as tfds

    import requests

    try:
        return tfds.load(name, data_dir=data_dir, **kwargs)
    except (requests.exceptions.RequestException, ConnectionError) as err:
        raise DownloadFailed(
            f"The TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} and its "
            f"download failed ({type(err).__name__}: {str(err)[:200]}). Without a network, "
            f"prepare it on a machine that has one (`tfds build {name} --data_dir=DIR`, or "
            "tfds.load once), copy DIR here and pass --data_dir=DIR.") from None
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"Unknown dataset {name!r}. Expected {_SOURCES} (e.g. {', '.join(_TFDS_EXAMPLES)}; "
            "see `tfds.list_builders()`)."
        ) from None


def tfds_image_label_keys(name, info):
    """``(image_key, label_key)`` of a TFDS image-classification dataset (its supervised
    keys), or ``ValueError``."""
    import tensorflow_datasets as tfds

    keys = info.supervised_keys
    if not (
        isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
        and isinstance(info.features[keys[0]], tfds.features.Image)
        and isinstance(info.features[keys[1]], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"TFDS dataset {name!r} is not an (image, class label) dataset: its supervised "
            f"keys are {keys!r}."
        )
    return keys


def superclass_map(fine, coarse, num_fine, num_coarse):
    """``(num_fine,)`` int64: the majority coarse label of each fine class (unique in real
    CIFAR-100), -1 for a fine class without examples."""
    pairs = np.zeros((num_fine, num_coarse), int)
    np.add.at(pairs, (fine, coarse), 1)
    return np.where(pairs.sum(1) > 0, pairs.argmax(1), -1).astype(np.int64)


def _load_tfds(name, data_dir, image_size):
    (train, test), info = tfds_load(name, data_dir, split=["train", "test"],
                                    as_supervised=False, with_info=True)
    keys = tfds_image_label_keys(name, info)
    x_key, y_key = keys
    has_coarse = "coarse_label" in info.features
    image_spec = train.element_spec[x_key]
    if image_size is None and not image_spec.shape.is_fully_defined():
        raise ValueError(
            f"TFDS dataset {name!r} has images of varying size {image_spec.shape}: pass "
            "`image_size=(height, width)` to resize them."
        )

    def select(example):
        image = example[x_key]
        if image_size is not None:
            image = tf.image.resize(image, image_size)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), image_spec.dtype)
        coarse = example["coarse_label"] if has_coarse else tf.constant(-1, tf.int64)
        return image, example[y_key], coarse

    def to_numpy(ds):
        parts = list(ds.map(select).batch(8192).as_numpy_iterator())
        return [np.concatenate(column) for column in zip(*parts)]

    x_train, y_train, coarse_train = to_numpy(train)
    x_test, y_test, coarse_test = to_numpy(test)
    label = info.features[y_key]
    superclasses = None
    if has_coarse:
        superclasses = superclass_map(
            np.concatenate([y_train, y_test]), np.concatenate([coarse_train, coarse_test]),
            label.num_classes, info.features["coarse_label"].num_classes)
    return _make_dataset(
        name, _features(x_train, "x_train"), y_train.astype(np.int64),
        _features(x_test, "x_test"), y_test.astype(np.int64), label.names, superclasses,
    )


def load_dataset(name, *, data_dir=None, image_size=None):
    """Loads a dataset into memory.

    Sources:
        - ``"digits"``: scikit-learn's bundled digits (1,797 8x8 images, values 0-16,
          10 classes), split once into 1,347 train / 450 test examples, stratified by class
          with a fixed seed (identical on every call and machine). No network.
        - a TFDS name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``,
          ``"svhn_cropped"``, ...): its ``train`` and ``test`` splits via ``tfds.load`` (TFDS
          downloads and prepares it into ``data_dir`` the first time). For CIFAR-100,
          ``superclasses`` is the fine -> coarse map read from ``coarse_label`` (-1 for a fine
          class with no examples, which cannot happen with the real data).
        - ``"npz:PATH"``: arrays ``x_train, y_train, x_test, y_test`` and optionally
          ``class_names`` (else ``K = max label + 1``). ``(N, F)`` tabular features are kept
          as they are (for the MLP); ``(N, H, W)`` images get a channel axis.
        - ``"folder:PATH"``: images listed and decoded by :mod:`keras_imae.image_files`
          (RGB, bilinear resize to ``image_size``, default 32x32, stored as uint8; the
          order and pixels of ``keras.utils.image_dataset_from_directory``). If PATH holds
          ``train/`` and ``test/``, each with one sub-folder per class, those are the splits;
          otherwise PATH itself holds the class sub-folders and 20% of each class (fixed seed)
          becomes the test split. Class ids follow the sorted sub-folder names.

    Args:
        name: the source, as above.
        data_dir: TFDS data directory (TFDS sources only).
        image_size: ``(height, width)``: for folders (default 32x32) and TFDS (resize;
            required for TFDS datasets with images of varying size).

    Returns:
        A :class:`Dataset`; ``mean``/``std`` are per channel over ``x_train``.

    Raises:
        FileNotFoundError: no npz file or image folder at PATH.
        DataError: the data cannot be trained on; the message names the array (with the
            index of its first NaN/Inf), file or folder.
        DownloadFailed: a TFDS dataset is not prepared in ``data_dir`` and cannot be
            downloaded.
        ValueError: arguments that do not apply, an unknown source, bad labels.

    An npz without ``class_names`` warns when some of its ``max label + 1`` class ids have no
    training example (they still count as classes).

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
        ((1347, 8, 8, 1), (450, 8, 8, 1), 10)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid value for argument `name`. Expected {_SOURCES}. "
                         f"Received: name={name!r}")
    source, path = name, ""
    if name.startswith(("npz:", "folder:")):
        source, _, path = name.partition(":")
    if data_dir is not None and source in ("digits", "npz", "folder"):
        raise ValueError(
            "Invalid value for argument `data_dir`: it only applies to TFDS datasets. "
            f"Received: data_dir={data_dir!r} with name={name!r}"
        )
    if image_size is not None and source in ("digits", "npz"):
        raise ValueError(
            "Invalid value for argument `image_size`: it only applies to image folders and "
            f"TFDS datasets. Received: image_size={image_size!r} with name={name!r}"
        )
    if name.split(":")[0].split("/")[0] in STREAMED_ONLY:
        raise ValueError(
            f"Invalid value for argument `name`: {name!r} is only streamed; open it with "
            "keras_imae.streaming.load(name).")
    if source == "digits":
        return _load_digits()
    if source == "npz":
        return _load_npz(name, path)
    if source == "folder":
        return _load_folder(name, path, image_size)
    return _load_tfds(name, data_dir, image_size)


SOURCES_HELP = (f"Expected {_SOURCES} (e.g. {', '.join(_TFDS_EXAMPLES)}), or the streamed "
                "'labels:DIR', 'tfrecord:DIR', 'cifar10_n[/ANNOTATION]', 'cifar100_n'.")
STREAMED_ONLY = ("labels", "tfrecord", "cifar10_n", "cifar100_n")  # streaming.load only
OWN_NOISE = ("labels", "cifar10_n", "cifar100_n")  # sources whose labels are already noisy


def is_known_source(name):
    """Whether ``name`` names a source :func:`load_dataset` knows, without loading it.

    ``digits``, ``npz:PATH``, ``folder:PATH``, ``labels:DIR``, ``tfrecord:DIR`` (paths are
    checked when loading) or a dataset registered with TFDS (``tfds.list_builders()``; a
    ``name:version`` suffix and a ``name/variant`` are allowed, e.g. ``cifar10_n/aggre``).
    For flag validation: a typo fails at start-up, not after minutes of work. The
    streamed-only ones (:data:`STREAMED_ONLY`) open with :func:`keras_imae.streaming.load`.
    """
    if not isinstance(name, str) or not name:
        return False
    if name == "digits" or name.startswith(("npz:", "folder:", "labels:", "tfrecord:")):
        return True
    import tensorflow_datasets as tfds

    return name.split(":")[0].split("/")[0] in tfds.list_builders()


