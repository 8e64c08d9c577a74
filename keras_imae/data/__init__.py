"""Data: one path from a dataset name to tf.data batches, in memory or streamed.

    name --parse--> source --open--> readers + labels --load--> Dataset --> train_dataset
                                                                        --> eval_dataset

- :func:`load` (``_load``) opens any source (``digits``, ``npz:PATH``, ``folder:PATH``,
  ``labels:DIR``, ``tfrecord:DIR``, a TFDS name, CIFAR-10N/100N; the one name parser is
  ``_sources``) and returns a :class:`Dataset` whose splits are *readers* (``_readers``):
  arrays in memory, or image files and records streamed from disk. ``streaming="auto"``
  decodes what fits into memory and streams the rest; nothing else differs.
- Every example has a global **example id**, its position in its split; labels -- given
  (noisy), clean, the noise mask -- are arrays indexed by that id, so noise drawn once
  (:mod:`keras_imae.noise`) applies to any reader.
- :func:`train_dataset` / :func:`eval_dataset` (``_pipeline``) build the tf.data pipelines
  of any reader: ``(x, {"label": noisy, "clean_label": clean})``, seeded shuffling, optional
  augmentation, sharding under ``tf.distribute``. The same images give bit-identical batches
  in memory and streamed.
- :func:`split_ids` / :func:`split_validation` (``_split``) carve a stratified *noisy*
  validation split.

Images stay in their pixel scale (0-16 for digits, 0-255 for photos); models start with a
``Normalization`` layer built from :attr:`Dataset.mean` / :attr:`Dataset.std`, so an
exported model takes raw pixels.
"""

from keras_imae.data._dataset import UNVERIFIED, Dataset
from keras_imae.data._images import DataError
from keras_imae.data._load import STREAM_ABOVE_BYTES, STREAMING_MODES, load
from keras_imae.data._pipeline import (AUGMENTATIONS, augment_pad, augmentation,
                                       eval_batch_size, eval_dataset, pipeline_options,
                                       plain_dataset, steps_per_epoch, stream, train_dataset)
from keras_imae.data._readers import (ArrayReader, FileReader, RecordReader, channel_stats,
                                      materialize)
from keras_imae.data._sources import (HUMAN_LABEL_DATASETS, SOURCES_HELP, check_data_dir,
                                      gives_own_noise, is_known_source, parse)
from keras_imae.data._split import (MAX_CLASSES, Split, split_ids, split_validation,
                                    stratified_split)
from keras_imae.data._tfds import DownloadFailed, human_label_key

__all__ = ["AUGMENTATIONS", "ArrayReader", "DataError", "Dataset", "DownloadFailed", "FileReader",
           "HUMAN_LABEL_DATASETS", "MAX_CLASSES", "RecordReader", "SOURCES_HELP", "STREAMING_MODES",
           "STREAM_ABOVE_BYTES", "Split", "UNVERIFIED", "augment_pad", "augmentation",
           "channel_stats", "check_data_dir", "eval_batch_size", "eval_dataset", "gives_own_noise",
           "human_label_key", "is_known_source", "load", "materialize", "parse",
           "pipeline_options", "plain_dataset", "split_ids", "split_validation",
           "stratified_split", "steps_per_epoch", "stream", "train_dataset"]
