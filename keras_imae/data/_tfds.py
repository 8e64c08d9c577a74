"""TFDS datasets: ``tfds.load`` records with undecoded images, and CIFAR-10N/100N.

A TFDS split is read with ``shuffle_files=False`` and ``SkipDecoding`` on the image, so its
records come in one fixed order (example id ``i`` is the ``i``-th record, in memory or
streamed) and an image is decoded (by the feature's own ``decode_example``, then resized)
only once the pipeline has kept it for this worker -- or once for all, when
:func:`keras_imae.data.load` decodes the dataset into memory. Opening a split reads its label
columns once (no image is decoded for that).

**Real human noisy labels** (Wei et al. 2022, "Learning with Noisy Labels Revisited: A Study
Using Real-World Human Annotations", ICLR 2022), TFDS names ``cifar10_n`` and ``cifar100_n``
(manual download: the CIFAR archive and the ``CIFAR-10_human_annotations.csv`` /
``CIFAR-100_human_annotations.csv`` in TFDS's manual folder):

- ``cifar10_n[/ANNOTATION]``: ANNOTATION is one of :data:`CIFAR10N_ANNOTATIONS` -- ``aggre``
  (majority vote of three annotators, 9.0% wrong), ``random1``/``random2``/``random3`` (one
  annotator each, ~17%), ``worse`` (a wrong one whenever any annotator was wrong, 40.2%).
  Default ``worse``, the hardest and most reported setting.
- ``cifar100_n`` (or ``cifar100_n/noisy``): the one human ``noise_label`` (40.2% wrong);
  ``superclasses`` from ``coarse_label`` as for CIFAR-100.

The human label is the given (noisy) label, TFDS's original ``label`` the clean one; test
labels are the original ones. These sources define their noise themselves, so no noise is
drawn on top of them.
"""

import numpy as np
import tensorflow as tf

from keras_imae.data._dataset import Parts
from keras_imae.data._readers import RecordReader
from keras_imae.data._sources import SOURCES_HELP

__all__ = ["CIFAR10N_ANNOTATIONS", "DownloadFailed", "HUMAN_LABELS", "human_label_key",
           "open_parts", "superclass_map", "tfds_image_label_keys", "tfds_load"]


CIFAR10N_ANNOTATIONS = {"aggre": "aggre_label", "random1": "random_label1",
                        "random2": "random_label2", "random3": "random_label3",
                        "worse": "worse_label"}
CIFAR100N_ANNOTATIONS = {"noisy": "noise_label"}
HUMAN_LABELS = {"cifar10_n": (CIFAR10N_ANNOTATIONS, "worse"),
                "cifar100_n": (CIFAR100N_ANNOTATIONS, "noisy")}
LABEL_PASS_BATCH = 8192


class DownloadFailed(RuntimeError):
    """A TFDS dataset is not prepared in ``data_dir`` and could not be downloaded."""


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
        raise ValueError(f"Unknown dataset {name!r}. {SOURCES_HELP} (TFDS names: "
                         "`tfds.list_builders()`).") from None


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


def human_label_key(name):
    """``(tfds_name, human label feature or None)`` of a source name.

    ``"cifar10_n/aggre"`` -> ``("cifar10_n", "aggre_label")``; a name that is not CIFAR-N is
    returned as it is with ``None``.
    """
    base, _, variant = name.partition("/")
    if base.split(":")[0] not in HUMAN_LABELS:
        return name, None
    annotations, default = HUMAN_LABELS[base.split(":")[0]]
    if (variant or default) not in annotations:
        raise ValueError(
            f"Invalid value for argument `name`. {base!r} annotations are "
            f"{sorted(annotations)} ({base}/ANNOTATION). Received: name={name!r}")
    return base, annotations[variant or default]


def _columns(ds, keys):
    """The integer columns ``keys`` of every record, as int64 arrays (images untouched)."""
    parts = list(ds.map(lambda e: tuple(e[k] for k in keys)).batch(LABEL_PASS_BATCH)
                 .as_numpy_iterator())
    if not parts:
        return [np.zeros(0, np.int64) for _ in keys]
    return [np.concatenate(col).astype(np.int64) for col in zip(*parts)]


def _reader(ds, feature, image_size, num_examples, x_key):
    shape = feature.shape
    dtype = feature.dtype

    def decode(record):
        image = feature.decode_example(record)
        if image_size is not None:
            image = tf.image.resize(image, image_size)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), dtype)
        return image

    image_shape = (*image_size, shape[-1]) if image_size is not None else tuple(shape)
    return RecordReader(lambda: ds.map(lambda e: e[x_key]), decode, num_examples, image_shape)


def open_parts(source, *, data_dir=None, image_size=None):
    """A TFDS dataset's (or CIFAR-N's) :class:`keras_imae.data._dataset.Parts`."""
    import tensorflow_datasets as tfds

    name = source.name
    tfds_name, human_key = human_label_key(name)
    _, info = tfds_load(tfds_name, data_dir, split="train", with_info=True)
    if human_key is None:
        x_key, y_key = tfds_image_label_keys(name, info)
    else:
        x_key, y_key = "image", "label"
    feature = info.features[x_key]
    if image_size is None and None in tuple(feature.shape[:2]):
        raise ValueError(f"TFDS dataset {name!r} has images of varying size {feature.shape}: "
                         "pass `image_size=(height, width)` to resize them.")
    image_size = tuple(image_size) if image_size is not None else None
    train, test = tfds_load(tfds_name, data_dir, split=["train", "test"],
                                 shuffle_files=False,
                                 decoders={x_key: tfds.decode.SkipDecoding()})
    has_coarse = "coarse_label" in info.features
    keys = [y_key] + ([human_key] if human_key else []) + (["coarse_label"] if has_coarse
                                                           else [])
    train_columns = dict(zip(keys, _columns(train, keys)))
    test_columns = dict(zip([y_key] + (["coarse_label"] if has_coarse else []),
                            _columns(test, [y_key] + (["coarse_label"] if has_coarse else []))))
    label = info.features[y_key]
    superclasses = None
    if has_coarse:
        superclasses = superclass_map(
            np.concatenate([train_columns[y_key], test_columns[y_key]]),
            np.concatenate([train_columns["coarse_label"], test_columns["coarse_label"]]),
            label.num_classes, info.features["coarse_label"].num_classes)
    y_train = train_columns[y_key]
    train_reader = _reader(train, feature, image_size, len(y_train), x_key)
    test_reader = _reader(test, feature, image_size, len(test_columns[y_key]), x_key)
    return Parts(train_reader, test_reader, y_train, test_columns[y_key], list(label.names),
                 superclasses, train_columns[human_key] if human_key else None)
