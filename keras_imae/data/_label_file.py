"""Label files: real noisy labels given as ``path,label[,clean_label]`` lines.

The ``labels:DIR`` source (see :func:`keras_imae.data.load`) reads ``DIR/train.csv``
and ``DIR/test.csv`` (or ``.tsv``), plus an optional ``DIR/classes.txt``. Format, decided
here once:

- **Delimiter**: ``,`` for ``.csv``, a tab for ``.tsv`` (Python's ``csv`` module, so a path
  holding the delimiter can be quoted). Blank lines are skipped.
- **Header**: optional; the first row is a header exactly when its fields are ``path,label``
  or ``path,label,clean_label`` (case and surrounding spaces ignored).
- **Rows**: ``path,label`` or ``path,label,clean_label``. ``path`` is relative to ``DIR``
  (or absolute). In ``train.csv``, ``label`` is the given (possibly wrong) label and
  ``clean_label`` the verified one; leave it empty (``path,label,``) or omit it for an
  unverified example -- as in Clothing1M, clean labels may exist for a subset only. In
  ``test.csv`` the truth is ``clean_label`` when given, else ``label``.
- **Classes**: with ``classes.txt`` (one class name per line; line ``i`` is class id ``i``)
  a label is a name from it or an integer id in ``[0, K)``. Without it, when every label of
  both files is a non-negative integer they are class ids and ``K = max + 1``; otherwise
  labels are names and the classes are the sorted unique names of ``train.csv`` (given and
  clean labels).
- **Errors** name the file and the line: a missing image, an image listed twice (duplicate
  or conflicting rows), a row with the wrong number of fields or an empty path or label, an
  unknown class (not in ``classes.txt``, or a test label no training row has). A UTF-8 byte
  order mark (as spreadsheet programs write) is accepted. All raise
  :class:`keras_imae.data.DataError` (a ``ValueError``).

Only labels and paths are read here (a few bytes per example); the images are decoded later,
inside the tf.data graph.
"""

import collections
import csv
import os

import numpy as np

from keras_imae.data._dataset import UNVERIFIED
from keras_imae.data._images import DataError, path_array

LabelRows = collections.namedtuple("LabelRows", ["paths", "labels", "clean_labels"])
_HEADERS = (["path", "label"], ["path", "label", "clean_label"])
CLASSES_FILENAME = "classes.txt"


def find_split_file(root, split):
    """``root/<split>.csv`` or ``root/<split>.tsv`` (exactly one must exist)."""
    found = [os.path.join(root, f"{split}{ext}") for ext in (".csv", ".tsv")
             if os.path.isfile(os.path.join(root, f"{split}{ext}"))]
    if len(found) != 1:
        raise DataError(
            f"Label-file folder {root!r} needs exactly one of {split}.csv and {split}.tsv. "
            f"Found: {[os.path.basename(f) for f in found]}")
    return found[0]


def _raw_rows(path):
    """``[(line_number, path_field, label_field, clean_field_or_'')]`` of one file."""
    delimiter = "\t" if path.endswith(".tsv") else ","
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM, as spreadsheets write
        reader = csv.reader(f, delimiter=delimiter)
        first = True
        for fields in reader:
            line = reader.line_num
            if not fields or all(not x.strip() for x in fields):
                continue
            fields = [x.strip() for x in fields]
            if first and [x.lower() for x in fields] in _HEADERS:
                first = False
                continue
            first = False
            if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
                raise DataError(
                    f"{path}:{line}: bad row {delimiter.join(fields)!r}. Expected "
                    f"path{delimiter}label[{delimiter}clean_label] with a non-empty path and "
                    "label.")
            rows.append((line, fields[0], fields[1], fields[2] if len(fields) == 3 else ""))
    if not rows:
        raise DataError(f"{path}: no example rows.")
    return rows


def _is_id(text):
    return text.isdigit()


def read_classes(root):
    """The class names of ``root/classes.txt`` (one per line), or ``None`` without it."""
    path = os.path.join(root, CLASSES_FILENAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"{path}: expected at least 2 distinct class names, one per line. "
                        f"Received: {len(names)} names, {len(set(names))} distinct")
    return names


def _class_names(root, train_rows, test_rows):
    """The class list: ``classes.txt``, integer ids, or the sorted training names."""
    names = read_classes(root)
    if names is not None:
        return names, True
    fields = [r[2] for r in train_rows] + [r[3] for r in train_rows if r[3]]
    test_fields = [r[2] for r in test_rows] + [r[3] for r in test_rows if r[3]]
    if all(_is_id(x) for x in fields + test_fields):
        num_classes = max(int(x) for x in fields + test_fields) + 1
        return [str(c) for c in range(max(num_classes, 2))], True
    return sorted(set(fields)), False


def _to_ids(rows, column, file_path, class_names, ids_allowed, optional):
    index = {name: i for i, name in enumerate(class_names)}
    out = np.full(len(rows), UNVERIFIED, np.int64)
    for n, row in enumerate(rows):
        text = row[column]
        if not text and optional:
            continue
        if text in index:
            out[n] = index[text]
        elif ids_allowed and _is_id(text) and int(text) < len(class_names):
            out[n] = int(text)
        else:
            kind = "clean_label" if column == 3 else "label"
            raise DataError(
                f"{file_path}:{row[0]}: unknown class {text!r} in column {kind}. Known "
                f"classes: {len(class_names)} ({', '.join(class_names[:8])}"
                f"{', ...' if len(class_names) > 8 else ''}).")
    return out


def _image_paths(rows, root, file_path):
    paths, first_line = [], {}
    for row in rows:
        path = os.path.normpath(os.path.join(root, row[1]))
        if not os.path.isfile(path):
            raise DataError(f"{file_path}:{row[0]}: image {row[1]!r} not found (looked for "
                            f"{path!r}).")
        if path in first_line:
            raise DataError(
                f"{file_path}:{row[0]}: image {row[1]!r} is listed again (first on line "
                f"{first_line[path]}): an image must have one row. Remove the duplicate, or "
                "keep the label you trust.")
        first_line[path] = row[0]
        paths.append(path)
    return path_array(paths)


def read_label_files(root):
    """Reads ``root``'s training and test label files.

    Returns:
        ``(train, test, class_names)``: ``train`` and ``test`` are :data:`LabelRows` with
        the image ``paths`` (UTF-8 bytes, :func:`keras_imae.data._images.path_array`), int64
        ``labels`` (train: the given labels; test: the truth)
        and int64 ``clean_labels`` (train: :data:`UNVERIFIED` where no clean label is given;
        test: equal to ``labels``).

    Raises:
        DataError: naming the file and line (see the module docstring).
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No label-file folder at {root!r}.")
    train_file, test_file = find_split_file(root, "train"), find_split_file(root, "test")
    train_rows, test_rows = _raw_rows(train_file), _raw_rows(test_file)
    class_names, ids_allowed = _class_names(root, train_rows, test_rows)
    given = _to_ids(train_rows, 2, train_file, class_names, ids_allowed, optional=False)
    clean = _to_ids(train_rows, 3, train_file, class_names, ids_allowed, optional=True)
    test_given = _to_ids(test_rows, 2, test_file, class_names, ids_allowed, optional=False)
    test_clean = _to_ids(test_rows, 3, test_file, class_names, ids_allowed, optional=True)
    truth = np.where(test_clean >= 0, test_clean, test_given)
    train = LabelRows(_image_paths(train_rows, root, train_file), given, clean)
    test = LabelRows(_image_paths(test_rows, root, test_file), truth, truth.copy())
    return train, test, class_names
