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

__all__ = ["atomic_write", "atomic_replace_dir", "check_writable_dir"]


def check_writable_dir(path, what):
    """``OSError`` naming ``what`` unless folder ``path`` exists and can be written, or can be
    created: no part of it is a file, and its nearest existing ancestor is writable."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{what} {path!r} is a file, not a folder. Choose another one.")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(
            f"{what} {path!r} cannot be created: {parent!r} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{what} {path!r} cannot be written: no write permission in {parent!r}.")


def _clean_leftovers(parent, name, path):
    """Folders an interrupted :func:`atomic_replace_dir` of ``name`` left (killed before its
    clean-up ran): temporary ones are deleted; an old export moved aside is put back when
    the target is missing (the replacement never finished), else deleted."""
    for entry in os.listdir(parent):
        leftover = os.path.join(parent, entry)
        if entry.startswith(f".{name}.tmp-"):
            shutil.rmtree(leftover, ignore_errors=True)
        elif entry.startswith(f".{name}.old-"):
            if not os.path.exists(path) and os.path.isdir(os.path.join(leftover, name)):
                os.rename(os.path.join(leftover, name), path)
            shutil.rmtree(leftover, ignore_errors=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, *, binary=False, path_only=False):
    """Write ``path`` by calling ``write(file_object)`` on a temporary sibling, then rename.

    Args:
        path: target file; its folder is created if missing.
        write: function taking the open file object (with ``path_only``: the temporary
            file's path, keeping its suffix, for writers that open the file themselves).
        binary: open in ``"wb"`` instead of ``"w"``.
        path_only: see ``write``.

    Returns:
        ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] if path_only else ""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-",
                               suffix=suffix)
    try:
        if path_only:
            os.close(fd)
            write(tmp)
        else:
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
    _clean_leftovers(parent, name, path)
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
