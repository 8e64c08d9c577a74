"""Atomic writes: a reader sees the old file (or folder) or the new one, never a partial one.

Everything is written to a temporary sibling first and moved into place with ``os.replace``
/ ``os.rename`` (atomic on POSIX within one file system). A temporary sibling is named after
its owner, ``.NAME.tmp-PID@HOST~...``: it is removed by its owner when writing fails, and by
anyone else only when its owner is provably dead (that pid is not alive on this host), never
while another process may still be writing it. The result gets the permissions a plain
``open()``/``mkdir`` would have given under the current umask (``tempfile`` creates 0600
files and 0700 folders, which other users -- a serving process, say -- could not read).
"""

import errno
import os
import re
import shutil
import socket
import tempfile

__all__ = ["atomic_write", "atomic_replace_dir", "check_writable_dir", "remove_stale"]

_CLAIM_TRIES = 10  # renames of an overwriting export racing other overwriting exports


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


def _owner():
    """The owner tag of this process's temporary names: ``PID@HOST~``."""
    return f"{os.getpid()}@{socket.gethostname()}~"


def _owner_dead(tag):
    """Whether the owner tag at the start of ``tag`` names a process that is gone: a pid not
    alive on this host. Another host's process, or a name without a tag, is not known dead."""
    match = re.match(r"(\d+)@([^~]*)~", tag)
    if not match or match.group(2) != socket.gethostname() or int(match.group(1)) <= 0:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def remove_stale(parent, prefix):
    """Remove the entries of ``parent`` named ``prefix`` + an owner tag whose owner is dead
    (a process killed while writing them); returns their names."""
    stale = [entry for entry in os.listdir(parent)
             if entry.startswith(prefix) and _owner_dead(entry[len(prefix):])]
    for entry in stale:
        leftover = os.path.join(parent, entry)
        if os.path.isdir(leftover) and not os.path.islink(leftover):
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            os.remove(leftover)
    return stale


def _clean_leftovers(parent, name, path):
    """Folders an interrupted :func:`atomic_replace_dir` of ``name`` left (its owner killed
    before its clean-up ran): an old export it moved aside is put back when the target is
    missing (the replacement never finished); the others are deleted."""
    for entry in os.listdir(parent):
        prefix = f".{name}.old-"
        leftover = os.path.join(parent, entry)
        if entry.startswith(prefix) and _owner_dead(entry[len(prefix):]):
            if not os.path.lexists(path) and os.path.isdir(os.path.join(leftover, name)):
                try:
                    os.rename(os.path.join(leftover, name), path)
                except OSError:  # another export claimed the target meanwhile
                    pass
    remove_stale(parent, f".{name}.old-")
    remove_stale(parent, f".{name}.tmp-")


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
    prefix = f".{os.path.basename(path)}.tmp-"
    remove_stale(folder, prefix)  # left by a writer killed mid-write
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix + _owner(), suffix=suffix)
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

    The target is claimed by the rename itself: ``os.rename`` of a folder onto a non-empty
    folder fails, so of two processes exporting to the same new target exactly one wins and
    the other gets ``FileExistsError`` (its temporary folder removed), and a reader never sees
    a mix. With ``overwrite`` an existing ``path`` is moved aside, the new folder renamed in,
    and the old one deleted -- or moved back if the rename fails, so a failed replacement
    leaves the old folder in place. Leftovers of a killed export of ``path`` are cleaned only
    when their owner is dead (see the module docstring).

    Raises:
        FileExistsError: ``path`` exists (or another process claimed it first) and
            ``overwrite`` is False.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"Target {path!r} already exists; pass overwrite=True (--overwrite) to replace it.")
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    _clean_leftovers(parent, name, path)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-{_owner()}", dir=parent)
    olds = []
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        for _ in range(_CLAIM_TRIES):
            try:
                os.rename(tmp, path)  # the claim: fails while path is a non-empty folder
                break
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if not overwrite:
                    raise FileExistsError(
                        f"Target {path!r} was written by another process meanwhile; pass "
                        "overwrite=True (--overwrite) to replace it.") from None
            olds.append(tempfile.mkdtemp(prefix=f".{name}.old-{_owner()}", dir=parent))
            try:
                os.rename(path, os.path.join(olds[-1], name))
            except FileNotFoundError:  # another export moved it first: claim again
                pass
        else:
            raise FileExistsError(f"Target {path!r} kept being replaced by other processes.")
    except BaseException:
        for old in reversed(olds):  # put the newest old export back if nothing replaced it
            if not os.path.lexists(path) and os.path.isdir(os.path.join(old, name)):
                try:
                    os.rename(os.path.join(old, name), path)
                except OSError:
                    pass
        raise
    finally:
        for leftover in (tmp, *olds):
            if os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
    return path
