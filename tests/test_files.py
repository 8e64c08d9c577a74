"""Tests for keras_imae.files: atomic writes of files and folders."""

import errno
import os
import socket
import subprocess
import sys
import threading

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


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tag(pid):
    return f"{pid}@{socket.gethostname()}~x1"


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_exports_at_once_never_destroy_each_other(tmp_path, overwrite):
    # Issue #32: each export checked the target, then wrote with overwrite on, and deleted
    # every temporary folder of the target, another process's mid-write one included.
    for attempt in range(5):
        target = tmp_path / f"sm{attempt}"
        if overwrite:
            files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v0"), "w").close())
        both_filling = threading.Barrier(2)
        outcomes = {}

        def export(name):
            def fill(d):
                with open(os.path.join(d, name), "w") as f:
                    f.write(name)
                both_filling.wait(timeout=10)  # both are mid-write: neither may delete the other

            try:
                files.atomic_replace_dir(target, fill, overwrite=overwrite)
                outcomes[name] = "won"
            except FileExistsError as err:
                outcomes[name] = str(err)

        threads = [threading.Thread(target=export, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        contents = os.listdir(target)
        assert len(contents) == 1 and contents[0] in ("a", "b")  # one whole export
        if overwrite:
            assert outcomes == {"a": "won", "b": "won"}
        else:
            assert sorted(outcomes.values())[1] == "won"  # exactly one wins ...
            assert outcomes[contents[0]] == "won"  # ... and it is what the target holds
            loser = outcomes["b" if contents[0] == "a" else "a"]
            assert "was written by another process meanwhile" in loser
    assert sorted(os.listdir(tmp_path)) == [f"sm{i}" for i in range(5)]  # no temporary left


def test_leftovers_are_removed_only_when_their_owner_is_dead(tmp_path):
    target = tmp_path / "sm"
    files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v1"), "w").close())
    alive = tmp_path / f".sm.tmp-{_tag(os.getpid())}"  # a live process mid-write
    other_host = tmp_path / f".sm.tmp-1@not-{socket.gethostname()}~x"
    untagged = tmp_path / ".sm.tmp-abc"  # who wrote it is not known
    dead = tmp_path / f".sm.tmp-{_tag(_dead_pid())}"
    for folder in (alive, other_host, untagged, dead):
        folder.mkdir()
    # a killed replacement: the old export moved aside, the target missing
    moved = tmp_path / f".sm.old-{_tag(_dead_pid())}"
    moved.mkdir()
    os.rename(target, moved / "sm")
    files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v2"), "w").close(),
                             overwrite=True)
    assert os.listdir(target) == ["v2"]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["sm", alive.name, other_host.name, untagged.name])


def test_a_killed_atomic_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    # Issue #32: a SIGKILL while saving model.keras left .model.keras.tmp-*.keras forever.
    stale = tmp_path / f".model.keras.tmp-{_tag(_dead_pid())}.keras"
    stale.write_bytes(b"half")
    alive = tmp_path / f".model.keras.tmp-{_tag(os.getpid())}.keras"
    alive.write_bytes(b"writing")
    files.atomic_write(tmp_path / "model.keras", lambda f: f.write("m"))
    assert sorted(os.listdir(tmp_path)) == sorted(["model.keras", alive.name])


def test_an_overwrite_that_keeps_losing_the_target_gives_up(tmp_path, monkeypatch):
    target = tmp_path / "sm"
    files.atomic_replace_dir(target, lambda d: open(os.path.join(d, "v1"), "w").close())
    real_rename = os.rename

    def always_taken(src, dst):  # another export renames its folder in every time
        if ".tmp-" in os.fspath(src):
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", always_taken)
    with pytest.raises(FileExistsError, match="kept being replaced by other processes"):
        files.atomic_replace_dir(target, lambda d: None, overwrite=True)
    monkeypatch.undo()
    assert os.listdir(target) == ["v1"] and os.listdir(tmp_path) == ["sm"]  # put back
