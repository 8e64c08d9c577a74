"""Tests for keras_imae.files: atomic writes of files and folders."""

import os

import pytest

from keras_imae import _files as files


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_atomic_write_creates_the_folder_with_umask_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = files.atomic_write(tmp_path / "a" / "b.txt", lambda f: f.write("x"))
    assert open(path).read() == "x" and _mode(path) == 0o666 & ~umask
    files.atomic_write(path, lambda f: f.write(b"yz"), binary=True)
    assert open(path).read() == "yz"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = files.atomic_write(tmp_path / "b.txt", lambda f: f.write("old"))

    def fail(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(path, fail)
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["b.txt"]


def test_atomic_replace_dir(tmp_path):
    target = tmp_path / "sm"
    files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v1"), "w").close())
    with pytest.raises(FileExistsError, match="overwrite"):
        files.atomic_replace_dir(target, lambda d: None)

    def fail(d):
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        files.atomic_replace_dir(target, fail, overwrite=True)
    assert os.listdir(target) == ["v1"]
    files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v2"), "w").close(),
                             overwrite=True)
    assert os.listdir(target) == ["v2"] and os.listdir(tmp_path) == ["sm"]
