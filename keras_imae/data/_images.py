"""Image files on disk: listing a class-folder tree and decoding one file inside tf.data.

One definition for every reader of files (:mod:`keras_imae.data._readers`), so the in-memory
and the streamed path see the same files in the same order with the same pixels: example
``i`` of a folder is the same image whichever path reads it.

Listing order: class sub-folders sorted by name (class id = position), and inside each class
the files of every (sorted) sub-directory, names sorted -- the order
``keras.utils.image_dataset_from_directory(shuffle=False)`` uses.

Decoding (:func:`decode_image`): ``tf.io.decode_image`` to RGB (3 channels; grayscale is
repeated), bilinear ``tf.image.resize`` to ``image_size`` (no antialiasing, aspect ratio not
kept), rounded and clipped to ``[0, 255]``, uint8.
"""

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_imae._defaults import DEFAULTS
from keras_imae.data import _split

# What tf.io.decode_image decodes (Keras' reader lists the first five; TF 2.21 adds WebP
# and JPEG XL), and image formats it does not, which are named when a folder holds them.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp", ".jxl")
UNDECODABLE_IMAGES = (".tif", ".tiff", ".heic", ".heif", ".avif", ".svg", ".ico", ".psd")
CHANNELS = 3
FOLDER_IMAGE_SIZE = DEFAULTS["folder_image_size"]  # (height, width) of images read from files
FOLDER_TEST_FRACTION = DEFAULTS["folder_test_fraction"]  # one folder, no train/ and test/


class DataError(ValueError):
    """The data of a source cannot be trained on (a non-finite input, an empty class folder,
    an unreadable image, a bad label-file row, an npz without the needed arrays); the
    message names what (file, and line for label files)."""


def is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _class_files(class_dir, skipped):
    """The decodable images of a class folder, in listing order; ``skipped`` counts the
    undecodable image files by extension."""
    files = []
    for root, _, names in sorted(os.walk(class_dir), key=lambda entry: entry[0]):
        files.extend(os.path.join(root, n) for n in sorted(names) if is_image_name(n))
        for n in names:
            extension = os.path.splitext(n)[1].lower()
            if extension in UNDECODABLE_IMAGES:
                skipped[extension] = skipped.get(extension, 0) + 1
    return files


def list_class_folders(directory, class_names=None):
    """``(paths, labels, class_names)`` of an image-folder tree, in listing order.

    Args:
        directory: a folder holding one sub-folder of images per class.
        class_names: the class list to use (e.g. the training split's for a test split);
            default: the sorted sub-folder names.

    Returns:
        ``paths`` (:func:`path_array`: UTF-8 bytes), ``labels`` (int64 class ids),
        ``class_names`` (list).

    Raises:
        DataError: no class sub-folder, a class sub-folder without images (it would be a
            class without examples, into which symmetric noise flips labels), or a
            sub-folder that is not in ``class_names``; the message names the folder.
    """
    found = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not found:
        raise DataError(f"No class sub-folders in the image folder {directory!r}.")
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise DataError(
            f"Class folder {os.path.join(directory, unknown[0])!r} is not a class of the "
            f"training split (classes: {list(class_names)[:10]}...).")
    paths, labels, skipped = [], [], {}
    for label, name in enumerate(class_names):
        files = _class_files(os.path.join(directory, name), skipped) if name in found else []
        if not files and name in found:
            raise DataError(
                f"Class folder {os.path.join(directory, name)!r} holds no image "
                f"({', '.join(IMAGE_EXTENSIONS)}). Remove it or add its images.")
        paths.extend(files)
        labels.extend([label] * len(files))
    if skipped:
        warnings.warn(
            f"{directory!r}: skipped {sum(skipped.values())} image files TensorFlow cannot "
            f"decode ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))}); convert "
            f"them to one of {', '.join(IMAGE_EXTENSIONS)} to use them.", UserWarning,
            stacklevel=3)
    return path_array(paths), np.asarray(labels, np.int64), list(class_names)


def path_array(paths):
    """File paths as a numpy array of UTF-8 bytes (``dtype S``): a quarter of the memory of
    numpy's 4-bytes-per-character strings, and what ``tf.constant`` and ``tf.io.read_file``
    take as they are. ``os.fsdecode`` turns one back into a ``str``."""
    return np.array([os.fsencode(p) for p in paths] or [b""][:0], dtype=bytes)


def decode_image(path, image_size):
    """Graph function: the image file ``path`` as a ``(H, W, 3)`` uint8 tensor.

    ``image_size`` is ``(height, width)``; see the module docstring for the exact steps.
    """
    return decode_bytes(tf.io.read_file(path), image_size)


def decode_bytes(contents, image_size):
    """Graph function: encoded image bytes (PNG, JPEG, GIF, BMP) as ``(H, W, 3)`` uint8."""
    image = tf.io.decode_image(contents, channels=CHANNELS, expand_animations=False)
    image = tf.image.resize(image, image_size, method="bilinear")
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    image.set_shape((*image_size, CHANNELS))
    return image


def first_unreadable(paths):
    """The first of ``paths`` that TensorFlow cannot decode as an image, or ``None``.

    Run after a decoding pipeline failed, to name the file (tf.data's error does not).
    """
    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            return os.fsdecode(path)
    return None


def unreadable_error(paths, where, err):
    """The :class:`DataError` for a failed decoding pass over ``paths``."""
    bad = first_unreadable(paths)
    if bad:
        return DataError(
            f"Cannot read the image {bad!r}: not an image TensorFlow can decode (corrupt, or "
            "another format under an image extension). Fix or remove it.")
    return DataError(f"Cannot read the images in {where!r}: {err}")


def folder_files(name, root):
    """The files of an image folder, split: ``(train_paths, y_train, test_paths, y_test,
    class_names)``, without reading any image (labels come from the folder names).

    ``root/train`` + ``root/test`` are the splits when both exist; otherwise ``root`` holds the
    class folders and :data:`FOLDER_TEST_FRACTION` of each class (seed
    :data:`keras_imae.data._split.SPLIT_SEED`, stratified) is the test split.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No image folder at {root!r} (from dataset name {name!r}).")
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        train_paths, y_train, class_names = list_class_folders(train_dir)
        test_paths, y_test, _ = list_class_folders(test_dir, class_names)
        return train_paths, y_train, test_paths, y_test, class_names
    paths, y, class_names = list_class_folders(root)
    train, test = _split.stratified_split(y, round(FOLDER_TEST_FRACTION * len(y)),
                                          _split.SPLIT_SEED)
    return paths[train], y[train], paths[test], y[test], class_names
