"""Sharing one corruption between runs: the ``noisy_labels.npz`` file.

The file holds ``noisy_labels`` (int), ``is_noisy`` (bool), optionally ``clean_labels``
(int; -1 marks an example whose clean label is unknown, as in label files with a verified
subset) and ``meta`` (a JSON string: noise type, rate, seed, dataset, ...). It is indexed by
example id (the training-set position), so in-memory and streamed runs read the same file.
``keras_imae.noise`` exports :func:`save_noisy_labels`, :func:`load_noisy_labels` and
:func:`noisy_labels_path`.
"""

import json
import os
import zipfile

import numpy as np

from keras_imae import _checks, _files

NOISY_LABELS_FILENAME = "noisy_labels.npz"


def noisy_labels_path(path):
    """The ``noisy_labels.npz`` file meant by ``path``: ``path`` itself if it ends in ``.npz``,
    else ``path/noisy_labels.npz``."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else os.path.join(path, NOISY_LABELS_FILENAME)


def _jsonable(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"Metadata value {value!r} is not JSON-serialisable.")


def save_noisy_labels(path, noisy, is_noisy, clean=None, **meta):
    """Writes ``noisy_labels.npz`` atomically so another run can reuse the exact corruption.

    Args:
        path: a directory (the file is ``path/noisy_labels.npz``; created if missing) or a
            file name ending in ``.npz``.
        noisy: 1-D integer noisy labels.
        is_noisy: 1-D bool mask, same length.
        clean: optional clean labels, same length (lets :func:`load_noisy_labels` check that a
            later run uses the same training set in the same order).
        **meta: JSON-serialisable facts to keep with the labels (noise_type, rate, seed,
            dataset, ...); numpy arrays and scalars are converted to lists/numbers.

    Returns:
        The path of the written file. It is written to a temporary file in the same directory
        and moved into place with ``os.replace``, so readers never see a partial file.
    """
    noisy, is_noisy = np.asarray(noisy), np.asarray(is_noisy, dtype=bool)
    arrays = {"noisy_labels": noisy, "is_noisy": is_noisy}
    if clean is not None:
        arrays["clean_labels"] = np.asarray(clean)
    for key, value in arrays.items():
        if value.shape != noisy.shape or value.ndim != 1:
            raise ValueError(
                f"Invalid value for argument `{key}`. Expected a 1-D array of the same length "
                f"as `noisy` {noisy.shape}. Received: shape {value.shape}"
            )
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True, default=_jsonable))
    file_path = noisy_labels_path(path)
    _files.atomic_write(file_path, lambda f: np.savez(f, **arrays), binary=True)
    return file_path


def load_noisy_labels(path, *, clean_labels=None, num_classes=None):
    """Reads a file written by :func:`save_noisy_labels`.

    Args:
        path: a directory holding ``noisy_labels.npz``, or the ``.npz`` file itself.
        clean_labels: optional training labels of the current run: their length must match,
            and, when the file stored clean labels, they must be identical (same data, same
            order), otherwise a ``ValueError`` is raised.
        num_classes: optional; the noisy labels must lie in ``[0, num_classes)``.

    Returns:
        ``(noisy_labels, is_noisy, clean_labels_or_None, meta_dict)``.
    """
    file_path = noisy_labels_path(path)
    if not os.path.exists(file_path):
        raise FileNotFoundError(f"No noisy-label file at {file_path!r}.")
    try:
        with np.load(file_path, allow_pickle=False) as f:
            missing = {"noisy_labels", "is_noisy"} - set(f.files)
            if missing:
                raise ValueError(
                    f"{file_path!r} is not a noisy-label file: missing {sorted(missing)}. "
                    f"Found: {sorted(f.files)}")
            noisy, is_noisy = f["noisy_labels"], f["is_noisy"]
            stored_clean = f["clean_labels"] if "clean_labels" in f.files else None
            meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{file_path!r} is not a readable noisy-label file (empty, truncated "
                         f"or another format): {type(err).__name__}: {err}") from None
    except ValueError as err:
        if "not a noisy-label file" in str(err):
            raise
        raise ValueError(f"{file_path!r} is not a readable noisy-label file (damaged, or "
                         f"written by something else): {err}") from None
    if noisy.ndim != 1 or is_noisy.shape != noisy.shape:
        raise ValueError(f"{file_path!r} is not a noisy-label file: noisy_labels and is_noisy "
                         f"must be 1-D of one length. Found shapes {noisy.shape} and "
                         f"{is_noisy.shape}")
    if num_classes is not None:
        noisy = _check_noisy(noisy, num_classes)
    if clean_labels is not None:
        clean_labels = np.asarray(clean_labels).reshape(-1)
        if len(clean_labels) != len(noisy):
            raise ValueError(
                f"{file_path!r} holds {len(noisy)} labels but the training set has "
                f"{len(clean_labels)} examples."
            )
        if stored_clean is not None and not np.array_equal(stored_clean, clean_labels):
            raise ValueError(
                f"{file_path!r} was made for other training labels (or another order): "
                f"{int(np.sum(stored_clean != clean_labels))} clean labels differ."
            )
    return noisy, is_noisy, stored_clean, meta


def _check_noisy(noisy, num_classes):
    num_classes = _checks.integer("num_classes", num_classes, low=2)
    return _checks.label_ids(noisy, num_classes, "noisy_labels")
