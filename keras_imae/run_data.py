"""The data side of a run (:func:`keras_imae.training.run`) for in-memory and streamed data.

**In memory or streamed** (``RunConfig.streaming``, flag ``--streaming``):

- ``"auto"`` (default): stream the sources that need it -- ``labels:DIR``,
  ``tfrecord:DIR``, ``cifar10_n``, ``cifar100_n`` -- and an image folder whose decoded
  training and test images would take more than :data:`STREAM_ABOVE_BYTES` (``N * 32 * 32
  * 3`` bytes at the default image size, counted from the file listing, nothing decoded);
  keep everything else in memory (digits, npz, TFDS, small folders), where decoding once
  and caching is the faster path.
- ``"on"``: stream whatever can be streamed (folders, label files, TFRecords, TFDS); digits
  and npz are refused.
- ``"off"``: in memory; the streamed-only sources are refused.

Streamed and in-memory runs of the same folder use the same example order, statistics, noise
and batches (``tests/test_streaming.py``); only memory and speed differ.

**Noise given by the source** (label files, CIFAR-N): their labels are the training labels
and ``noise_type`` must be ``"none"``; ``is_noisy`` is ``given != clean`` on the verified
examples (False where the clean label is unknown), and ``noisy_labels.npz`` stores the clean
labels with -1 for the unverified ones.
"""

import os

import numpy as np

from keras_imae import data, noise, streaming, tfds_stream
from keras_imae import ranking as mislabel_ranking

STREAMING_MODES = ("auto", "on", "off")
STREAM_ABOVE_BYTES = 256 * 2**20  # decoded uint8 pixels of an image folder, train + test


def wants_streaming(name, mode):
    """Whether :func:`open_dataset` streams ``name`` (see the module docstring).

    Raises:
        ValueError: a source the mode cannot open.
    """
    if mode not in STREAMING_MODES:
        raise ValueError(f"Invalid value for `streaming`. Expected one of {STREAMING_MODES}. "
                         f"Received: streaming={mode!r}")
    source = name.split(":")[0].split("/")[0]
    if source in data.STREAMED_ONLY:
        if mode == "off":
            raise ValueError(f"Invalid value for `streaming`: {name!r} is only streamed. "
                             "Received: streaming='off'")
        return True
    if source in ("digits", "npz"):
        if mode == "on":
            raise ValueError(f"Invalid value for `streaming`: {source!r} is an in-memory "
                             f"source. Received: streaming='on' with dataset={name!r}")
        return False
    if mode != "auto":
        return mode == "on"
    return source == "folder" and _folder_bytes(name) > STREAM_ABOVE_BYTES


def _folder_bytes(name):
    path = name.partition(":")[2]
    count = sum(1 for _, _, files in os.walk(path) for f in files
                if f.lower().endswith(data.IMAGE_EXTENSIONS))
    height, width = data.FOLDER_IMAGE_SIZE
    return count * height * width * 3


def open_dataset(config):
    """The run's dataset: a :class:`keras_imae.data.Dataset` or a
    :class:`keras_imae.streaming.StreamingDataset`."""
    if wants_streaming(config.dataset, config.streaming):
        return streaming.load(config.dataset, data_dir=config.data_dir)
    return data.load_dataset(config.dataset, data_dir=config.data_dir)


def is_streamed(dataset):
    return isinstance(dataset, streaming.StreamingDataset)


def given_noise(dataset):
    """``(noisy, is_noisy)`` of a source that gives its own noisy labels, else ``None``."""
    given = getattr(dataset, "given_labels", None)
    if given is None:
        return None
    verified = dataset.y_train >= 0
    return given.copy(), verified & (given != dataset.y_train)


def split(config, dataset, noisy):
    """A streamed run's training ids and validation pipeline (``training._split``'s dict)."""
    clean = dataset.y_train
    all_verified = bool((clean >= 0).all())
    ids = np.arange(len(clean))
    validation = None
    if config.validation_fraction:
        parts = data.split_validation(np.empty((len(clean), 0)), noisy,
                                      config.validation_fraction, config.seed)
        ids = parts.train_index
        validation = streaming.eval_dataset(
            dataset.train, noisy, clean if all_verified else None, ids=parts.val_index,
            batch_size=config.batch_size, with_ids=False)
    return {"x_train": None, "ids": ids, "noisy": noisy[ids], "clean": clean[ids],
            "validation": validation, "noisy_table": noisy}


def pipelines(config, dataset, split_, augment):
    """``(train, monitor_train, monitor_test)`` of a streamed run: the training pipeline and
    the datasets :class:`keras_imae.callbacks.FitMonitor` measures in one pass each."""
    noisy, clean = split_["noisy_table"], dataset.y_train
    # RobustModel's running clean_fit needs every clean label; FitMonitor copes with -1.
    train = streaming.train_dataset(
        dataset, noisy, clean if (clean >= 0).all() else None, ids=split_["ids"],
        batch_size=config.batch_size, augment=augment, seed=config.seed)
    eval_batch = max(config.batch_size, 256)
    monitor_train = streaming.eval_dataset(dataset.train, noisy, clean, ids=split_["ids"],
                                           batch_size=eval_batch)
    monitor_test = streaming.eval_dataset(dataset.test, dataset.y_test, batch_size=eval_batch,
                                          with_ids=False)
    return train, monitor_train, monitor_test


def ranking(monitor, model, split_):
    """``(indices, scores)`` of the mislabel ranking over the run's training examples (in
    the order of ``split_["noisy"]``), from the monitor's last pass when it has one."""
    if monitor.last_train_logits is not None:  # in memory: the final weights' logits
        return mislabel_ranking.mislabel_scores(monitor.last_train_logits, split_["noisy"])
    if monitor.last_train_scores is None:  # no epoch left to train (a finished fit resumed)
        if split_["x_train"] is not None:
            return mislabel_ranking.rank_mislabelled(model, split_["x_train"], split_["noisy"])
        monitor.measure()
    scores = monitor.last_train_scores  # streamed: by id, the training ids in order
    return np.argsort(-scores, kind="stable"), scores


def realised_rate(noisy, clean):
    """Fraction of wrong labels among the examples whose clean label is known."""
    verified = clean >= 0
    return float(np.mean(noisy[verified] != clean[verified])) if verified.any() else None


def noise_report(dataset, noisy, nominal):
    """The printed noise summary; with partial clean labels, of the verified subset, and
    says so."""
    clean = dataset.y_train
    verified = clean >= 0
    summary = str(noise.noise_summary(clean[verified], noisy[verified], dataset.num_classes,
                                      nominal=nominal))
    if not verified.all():
        summary += (f"\nClean labels are known for {int(verified.sum())} of {len(clean)} "
                    "training examples: the noise above and the clean/noisy fit metrics "
                    "(train_clean_fit, train_noisy_fit, train_noisy_correct) cover that verified "
                    "subset only (train_verified_fraction).")
    return summary


def check_config(config):
    """The run settings a streamed source cannot take, as ``ValueError`` (before any work).

    - an unknown ``streaming`` mode, or a source the mode cannot open, or an unknown
      CIFAR-10N annotation;
    - sources that give their own noisy labels take no drawn noise: ``noise_type`` must be
      ``"none"`` (and no ``noisy_labels`` file);
    """
    source = config.dataset.split(":")[0].split("/")[0]
    wants_streaming(config.dataset, config.streaming)  # raises: unknown mode or source
    if source in tfds_stream.HUMAN_LABELS:
        tfds_stream.human_label_key(config.dataset)  # an unknown annotation, before any work
    if source in data.OWN_NOISE and (config.noise_type != "none" or config.noisy_labels):
        raise ValueError(
            f"Invalid value for `noise_type`: dataset={config.dataset!r} gives its own noisy "
            "labels (human or label-file labels), so no noise is drawn on top. Pass "
            f"noise_type='none' (--noise_type=none) and no noisy_labels. Received: "
            f"noise_type={config.noise_type!r}, noisy_labels={config.noisy_labels!r}")
