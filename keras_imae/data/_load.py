"""``load(name)``: open a source, decide where its pixels live, compute its statistics."""

import os
import warnings
import zipfile

import numpy as np

from keras_imae._defaults import DEFAULTS
from keras_imae.data import _images, _label_file, _sources, _split
from keras_imae.data._dataset import Dataset, Parts
from keras_imae.data._images import DataError
from keras_imae.data._readers import ArrayReader, FileReader, image_stats, materialize

__all__ = ["STREAMING_MODES", "STREAM_ABOVE_BYTES", "load"]

DIGITS_TEST_SIZE = DEFAULTS["digits_test_size"]  # of 1,797: 1,347 train / 450 test, stratified
STREAMING_MODES = ("auto", "on", "off")
STREAM_ABOVE_BYTES = DEFAULTS["stream_above_bytes"]  # decoded uint8 bytes (train + test)
_WHAT = {"npz": "npz file", "folder": "image folder", "labels": "label-file folder",
         "tfrecord": "TFRecord folder"}


def _features(x, name):
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) grayscale -> NHWC
        x = x[..., None]
    if x.ndim not in (2, 4):
        raise ValueError(f"Invalid value for `{name}`. Expected (N, F) features or (N, H, W[, C]) "
                         f"images. Received: shape {x.shape}")
    return x


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


def _digits():
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    x = digits.images.astype(np.uint8)[..., None]  # (1797, 8, 8, 1), values 0..16
    y = digits.target.astype(np.int64)
    train, test = _split.stratified_split(y, DIGITS_TEST_SIZE, _split.SPLIT_SEED)
    return Parts(ArrayReader(x[train]), ArrayReader(x[test]), y[train], y[test],
                 [str(c) for c in range(10)])


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = sorted({"x_train", "y_train", "x_test", "y_test"} - set(f.files))
            if missing:
                raise DataError(f"{path!r} is missing arrays {missing}. Expected x_train, "
                                "y_train, x_test, y_test (optional class_names). Found: "
                                f"{sorted(f.files)}")
            return {key: f[key] for key in f.files}
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        # an empty or truncated file, another format, or arrays of Python objects
        raise DataError(f"{path!r} is not a readable npz file of numeric arrays (empty, "
                        f"truncated, another format, or object arrays): "
                        f"{type(err).__name__}: {err}") from None


def _npz(path):
    arrays = _read_npz(path)
    x_train = _features(arrays["x_train"], "x_train")
    x_test = _features(arrays["x_test"], "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path!r}: x_train examples have shape {x_train.shape[1:]} but x_test "
                        f"examples have shape {x_test.shape[1:]}.")
    y_train = _split.check_labels(arrays["y_train"], "y_train", len(x_train))
    y_test = _split.check_labels(arrays["y_test"], "y_test", len(x_test))
    if "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"]]
    else:
        num_classes = _split.classes_from_labels([y_train, y_test], "y_train, y_test")
        class_names = [str(c) for c in range(num_classes)]
        empty = np.setdiff1d(np.arange(num_classes), y_train)  # a test-only id counts too
        if len(empty):
            warnings.warn(
                f"{path!r}: the number of classes is taken from the largest label, "
                f"{num_classes}, but {len(empty)} of them have no example in y_train (ids "
                f"{empty[:10].tolist()}{' ...' if len(empty) > 10 else ''}); noise may flip "
                "labels into them. Add `class_names` to the npz to fix the class list.",
                UserWarning, stacklevel=4)
    _split.check_labels(y_train, "y_train", len(x_train), len(class_names))
    _split.check_labels(y_test, "y_test", len(x_test), len(class_names))
    _check_finite(x_train, "x_train")
    _check_finite(x_test, "x_test")
    return Parts(ArrayReader(x_train), ArrayReader(x_test), y_train, y_test, class_names)


def _npz_parts(name, path):
    try:
        return _npz(path)
    except DataError:
        raise
    except ValueError as err:  # labels: the same message, naming the file
        raise DataError(f"{path!r}: {err}") from None


def _folder(name, root, image_size):
    train_paths, y_train, test_paths, y_test, class_names = _images.folder_files(name, root)
    return Parts(FileReader(train_paths, image_size), FileReader(test_paths, image_size),
                 y_train, y_test, class_names)


def _label_files(root, image_size):
    train, test, class_names = _label_file.read_label_files(root)
    return Parts(FileReader(train.paths, image_size), FileReader(test.paths, image_size),
                 train.clean_labels, test.labels, class_names, given_labels=train.labels)


def _open(source, data_dir, image_size):
    """The :class:`Parts` of a parsed source."""
    kind, path = source.kind, source.path
    what = _WHAT.get(kind)
    if what is not None:
        exists = os.path.isfile if kind == "npz" else os.path.isdir
        if not exists(path):
            raise FileNotFoundError(f"No {what} at {path!r} (from dataset name "
                                    f"{source.name!r}).")
    if kind == "digits":
        return _digits()
    if kind == "npz":
        return _npz_parts(source.name, path)
    size = tuple(image_size or _images.FOLDER_IMAGE_SIZE)
    if kind == "folder":
        return _folder(source.name, path, size)
    if kind == "labels":
        return _label_files(path, size)
    if kind == "tfrecord":
        from keras_imae.data import _tfrecord

        return _tfrecord.open_parts(path, size)
    from keras_imae.data import _tfds  # TFDS only when needed

    return _tfds.open_parts(source, data_dir=data_dir, image_size=image_size)


def _check_splits(name, parts):
    """A dataset needs training examples of at least 2 classes and a test split."""
    if len(parts.train) == 0 or len(parts.test) == 0:
        empty = "training" if len(parts.train) == 0 else "test"
        raise DataError(f"{name!r}: the {empty} split is empty. Expected examples in both "
                        "the training and the test split.")
    labels = np.asarray(parts.y_train if parts.given_labels is None else parts.given_labels)
    present = np.unique(labels[labels >= 0])
    if len(parts.class_names) < 2 or len(present) < 2:
        raise DataError(f"{name!r}: the training labels name {len(present)} class "
                        f"({present.tolist()}); a classifier needs at least 2.")


def _streams(source, mode, parts):
    """Whether ``load`` keeps the pixels on disk (see :func:`load`)."""
    if isinstance(parts.train, ArrayReader):
        return False  # digits, npz: arrays already
    if mode != "auto":
        return mode == "on"
    if source.kind in ("labels", "tfrecord") or _sources.gives_own_noise(source):
        return True
    if source.kind != "folder":
        return False
    pixels = int(np.prod(parts.train.image_shape))
    return (len(parts.train) + len(parts.test)) * pixels > STREAM_ABOVE_BYTES


def load(name, *, data_dir=None, image_size=None, streaming="auto"):
    """Opens a dataset: in memory (decoded once, fastest while it fits) or streamed from disk.

    Sources (:mod:`keras_imae.data._sources`):
        - ``"digits"``: scikit-learn's bundled digits (1,797 8x8 images, values 0-16, 10
          classes), split once into 1,347 train / 450 test, stratified with a fixed seed.
        - ``"npz:PATH"``: arrays ``x_train, y_train, x_test, y_test`` and optionally
          ``class_names`` (else ``K = max label + 1``, with a warning for empty classes).
          ``(N, F)`` features are kept as they are (for the MLP); ``(N, H, W)`` images get a
          channel axis.
        - ``"folder:PATH"``: images decoded to RGB and resized (bilinear) to ``image_size``
          (default 32x32), the order of ``keras.utils.image_dataset_from_directory``.
          ``PATH/train`` + ``PATH/test`` are the splits when both exist, else 20% of each
          class (fixed seed) is the test split. Class ids follow the sorted folder names.
        - ``"labels:DIR"``: real noisy labels from ``DIR/train.csv``/``test.csv``
          (:mod:`keras_imae.data._label_file`); ``given_labels`` are the file's labels,
          ``y_train`` the clean ones (-1 where unverified).
        - ``"tfrecord:DIR"``: ``tf.train.Example`` records (:mod:`keras_imae.data._tfrecord`).
        - a TFDS name, downloaded by TFDS into ``data_dir`` the first time; CIFAR-100 gets its
          real ``superclasses``; ``cifar10_n[/ANNOTATION]`` and ``cifar100_n`` give their
          human labels as ``given_labels`` (:mod:`keras_imae.data._tfds`).

    Args:
        name: the source, as above.
        data_dir: TFDS data directory (TFDS sources only).
        image_size: ``(height, width)`` for images read from files or TFDS (resize; required
            for TFDS datasets with images of varying size).
        streaming: ``"auto"`` streams label files, TFRecords, CIFAR-N and image folders
            whose decoded images exceed :data:`STREAM_ABOVE_BYTES` (about 87,000 32x32 RGB
            images) and decodes the rest into memory; ``"on"`` streams every file or record
            source; ``"off"`` decodes every source into memory. Arrays (digits, npz) are
            always in memory.

    Returns:
        A :class:`keras_imae.data.Dataset`; ``mean``/``std`` are per channel over the
        training inputs (exact, computed in one pass, bit-identical in memory or streamed).

    Raises:
        FileNotFoundError: no file or folder at PATH.
        DataError: data that cannot be trained on; the message names the array (with the
            index of its first NaN/Inf), file (and line, for label files) or folder.
        DownloadFailed: a TFDS dataset is not prepared in ``data_dir`` and cannot be
            downloaded.
        ValueError: arguments that do not apply, an unknown source, bad labels.

    Example:
        >>> ds = load("digits")
        >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
        ((1347, 8, 8, 1), (450, 8, 8, 1), 10)
    """
    source = _sources.parse(name)
    _sources.check_data_dir(source, data_dir)
    if streaming not in STREAMING_MODES:
        raise ValueError(f"Invalid value for `streaming`. Expected one of {STREAMING_MODES}. "
                         f"Received: streaming={streaming!r}")
    if image_size is not None and source.kind in ("digits", "npz"):
        raise ValueError(
            "Invalid value for argument `image_size`: it only applies to images read from "
            f"files or TFDS. Received: image_size={image_size!r} with name={name!r}")
    parts = _open(source, data_dir, image_size)
    _check_splits(name, parts)
    train, test = parts.train, parts.test
    if not _streams(source, streaming, parts):
        train, test = materialize(train, name), materialize(test, name)
    mean, std = image_stats(train, name)
    return Dataset(name, train, test, np.asarray(parts.y_train, np.int64),
                   np.asarray(parts.y_test, np.int64), len(parts.class_names),
                   list(parts.class_names), parts.superclasses, mean, std, parts.given_labels,
                   source)
