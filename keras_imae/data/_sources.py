"""Dataset names: the one parser every other module asks (``--dataset``, ``data.load``).

A name is one of:

- ``"digits"``: scikit-learn's bundled 8x8 digits (the embedded default, no download);
- ``"npz:PATH"``: arrays ``x_train, y_train, x_test, y_test`` (optional ``class_names``);
- ``"folder:PATH"``: one sub-folder of images per class (``PATH/train`` + ``PATH/test``, or
  one folder split 80/20 per class);
- ``"labels:DIR"``: real noisy labels in ``DIR/train.csv`` and ``DIR/test.csv``;
- ``"tfrecord:DIR"``: ``tf.train.Example`` records with an encoded ``image`` and a ``label``;
- any TFDS image-classification name (``mnist``, ``cifar10``, ``cifar100``, ...), with an
  optional ``:VERSION`` and ``/VARIANT``; ``cifar10_n[/ANNOTATION]`` and ``cifar100_n`` bring
  human (noisy) labels.
"""

import collections

__all__ = ["Source", "SOURCES_HELP", "check_data_dir", "is_known_source", "parse"]

KINDS_WITH_PATH = ("npz", "folder", "labels", "tfrecord")
HUMAN_LABEL_DATASETS = ("cifar10_n", "cifar100_n")  # TFDS datasets with human noisy labels
_TFDS_EXAMPLES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")
SOURCES_HELP = (
    "Expected 'digits', 'npz:PATH', 'folder:PATH', 'labels:DIR', 'tfrecord:DIR' or a TFDS "
    f"image-classification name (e.g. {', '.join(_TFDS_EXAMPLES)}, "
    "'cifar10_n[/aggre|random1|random2|random3|worse]', 'cifar100_n').")

Source = collections.namedtuple("Source", ["name", "kind", "path", "tfds_name"])
Source.__doc__ = """A parsed dataset name.

Attributes:
    name: the name as given.
    kind: ``"digits"``, ``"npz"``, ``"folder"``, ``"labels"``, ``"tfrecord"`` or ``"tfds"``.
    path: the file or folder of the path kinds, else ``None``.
    tfds_name: the TFDS builder name without version or variant (``"cifar10_n"`` for
        ``"cifar10_n/aggre"``), else ``None``.
"""


def parse(name):
    """The :class:`Source` a dataset name means; ``ValueError`` for a malformed one.

    The name is only parsed: whether the path exists, or a TFDS name is registered, is
    checked when loading (:func:`is_known_source` checks the latter without loading).

    Example:
        >>> parse("npz:data/mine.npz").kind, parse("cifar10_n/aggre").tfds_name
        ('npz', 'cifar10_n')
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Invalid value for `dataset`. {SOURCES_HELP} Received: dataset={name!r}")
    if name == "digits":
        return Source(name, "digits", None, None)
    prefix, colon, rest = name.partition(":")
    if colon and prefix in KINDS_WITH_PATH:
        if not rest:
            raise ValueError(f"Invalid value for `dataset`: {prefix}: needs a path "
                             f"({prefix}:PATH). Received: dataset={name!r}")
        return Source(name, prefix, rest, None)
    return Source(name, "tfds", None, prefix.split("/")[0])


def gives_own_noise(source):
    """Whether the source's training labels are already noisy (label files, CIFAR-N): no
    noise is drawn on top of them."""
    return source.kind == "labels" or source.tfds_name in HUMAN_LABEL_DATASETS


def check_data_dir(source, data_dir):
    """``data_dir`` applies to TFDS datasets only: ``ValueError`` otherwise."""
    if data_dir is not None and source.kind != "tfds":
        raise ValueError("Invalid value for `data_dir`: it only applies to TFDS datasets. "
                         f"Received: data_dir={data_dir!r} with dataset={source.name!r}")


def is_known_source(name):
    """Whether ``name`` parses and, for TFDS, is a registered builder (no data is read).

    For flag validation: a typo fails at start-up, not after minutes of work.
    """
    try:
        source = parse(name)
    except ValueError:
        return False
    if source.kind != "tfds":
        return True
    import tensorflow_datasets as tfds

    return source.tfds_name in tfds.list_builders()
