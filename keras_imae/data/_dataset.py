"""The one dataset type: two readers (train, test), labels by example id, input statistics."""

import collections
import dataclasses

import numpy as np

from keras_imae.data._readers import ArrayReader

__all__ = ["Dataset", "Parts", "UNVERIFIED"]

UNVERIFIED = -1  # clean label of an example no one checked (label files with a verified subset)

Parts = collections.namedtuple(
    "Parts", ["train", "test", "y_train", "y_test", "class_names", "superclasses",
              "given_labels"], defaults=(None, None))
Parts.__doc__ = """What a source opens, before :func:`keras_imae.data.load` decides where the
pixels live: the two readers, the labels, the class names and, optionally, the fine -> coarse
``superclasses`` map and the source's own noisy ``given_labels``."""


@dataclasses.dataclass(repr=False)
class Dataset:
    """A classification dataset: in memory or streamed, the same type.

    Attributes:
        name: the source string given to :func:`keras_imae.data.load`.
        train, test: the readers of the two splits: an :class:`ArrayReader` when the data is
            in memory, a ``FileReader`` or ``RecordReader`` when it streams from disk.
        y_train: ``(N,)`` int64 clean labels by example id; :data:`UNVERIFIED` (-1) where the
            source has none (label files with a verified subset).
        y_test: ``(N_test,)`` int64 true labels.
        num_classes: ``K``.
        class_names: list of ``K`` strings.
        superclasses: ``(K,)`` int64 fine -> coarse map (CIFAR-100's ``coarse_label``), or
            ``None``.
        mean, std: float32 per-channel (per-feature for tabular data) statistics of the
            training inputs, for a ``keras.layers.Normalization`` first layer.
        given_labels: ``(N,)`` int64 labels the source itself gives (human or label-file
            labels, possibly wrong), or ``None`` when ``y_train`` is the given label and
            noise, if any, is drawn by :mod:`keras_imae.noise`.
        source: ``name`` parsed (:func:`keras_imae.data.parse`), as :func:`load` read it.
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
    source: object = None

    @property
    def input_shape(self):
        return tuple(self.train.image_shape)

    @property
    def in_memory(self):
        """Whether both splits are arrays (else the images stream from disk)."""
        return isinstance(self.train, ArrayReader) and isinstance(self.test, ArrayReader)

    @property
    def x_train(self):
        """The training inputs as an array (in-memory datasets only)."""
        return self._array(self.train, "x_train")

    @property
    def x_test(self):
        """The test inputs as an array (in-memory datasets only)."""
        return self._array(self.test, "x_test")

    def _array(self, reader, name):
        if not isinstance(reader, ArrayReader):
            raise ValueError(
                f"{self.name!r} streams its images from disk: it has no `{name}` array. Read "
                "it with keras_imae.data.train_dataset / eval_dataset, or load it with "
                "streaming='off' to decode it into memory.")
        return reader.x

    @property
    def verified(self):
        """Bool mask of the training examples whose clean label is known."""
        return self.y_train != UNVERIFIED

    def __repr__(self):
        where = "in memory" if self.in_memory else "streamed"
        return (f"Dataset(name={self.name!r}, train={len(self.train)} x {self.input_shape}, "
                f"test={len(self.test)}, num_classes={self.num_classes}, {where})")
