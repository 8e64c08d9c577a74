"""Atomic writes: a reader sees the old file (or folder) or the new one, never a partial one.

Everything is written to a temporary sibling first and moved into place with ``os.replace``
/ ``os.rename`` (atomic on POSIX within one file system). Temporary files are removed when
writing fails, and the result gets the permissions a plain ``open()``/``mkdir`` would have
given under the current umask (``tempfile`` creates 0600 files and 0700 folders, which other
users -- a serving process, say -- could not read).
"""

import os
import shutil
import tempfile

__all__ = ["atomic_write", "atomic_replace_dir"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, *, binary=False):
    """Write ``path`` by calling ``write(file_object)`` on a temporary sibling, then rename.

    Args:
        path: target file; its folder is created if missing.
        write: function taking the open file object.
        binary: open in ``"wb"`` instead of ``"w"``.

    Returns:
        ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_replace_dir(path, fill, *, overwrite=False):
    """Create folder ``path`` by calling ``fill(tmp_folder)`` on a temporary sibling, then rename.

    An existing ``path`` is refused unless ``overwrite``; then it is moved aside, the new folder
    renamed in, and the old one deleted -- or moved back if the rename fails, so a failed
    replacement leaves the old folder in place.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"Target {path!r} already exists; pass overwrite=True (--overwrite) to replace it.")
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    old = None
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rename(path, os.path.join(old, name))
        try:
            os.rename(tmp, path)
        except BaseException:
            if old is not None:
                os.rename(os.path.join(old, name), path)
            raise
    finally:
        for leftover in (tmp, old):
            if leftover is not None and os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
    return path
