"""Tests for keras_imae.run_folder: what a run may delete, its lock, log, export."""

import json
import os
import socket
import subprocess
import sys

import pytest

import keras_imae
from keras_imae import noise
from keras_imae.run_folder import RunBackup
from keras_imae.run_folder import _folder as run_folder


def test_clear_deletes_only_what_a_run_writes(tmp_path):
    folder = run_folder.RunFolder(tmp_path)
    for name in (run_folder.CONFIG, run_folder.LOG, run_folder.METRICS, run_folder.MODEL,
                 noise.NOISY_LABELS_FILENAME, "notes.txt", "data.npz",
                 ".model.keras.tmp-abc.keras", ".notes.txt.tmp-abc"):  # a save killed mid-write
        (tmp_path / name).write_text("x")
    for name in (run_folder.BACKUP, run_folder.TENSORBOARD, "saved_models"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "inner").write_text("x")
    assert folder.finished
    folder.clear()
    assert sorted(os.listdir(tmp_path)) == [".notes.txt.tmp-abc", "data.npz", "notes.txt",
                                            "saved_models"]
    assert (tmp_path / "saved_models" / "inner").exists() and not folder.finished


def test_lock_refuses_a_second_run_and_takes_over_a_dead_ones(tmp_path):
    folder = run_folder.RunFolder(tmp_path / "run")
    with folder.lock():
        with pytest.raises(run_folder.RunLocked, match=f"pid {os.getpid()}"):
            with folder.lock():
                pass
    assert not os.path.exists(folder.path)  # released, and the folder it made left empty
    os.makedirs(folder.path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    with open(folder.file(run_folder.LOCK), "w") as f:
        json.dump({"pid": int(dead), "host": socket.gethostname(), "time": "then"}, f)
    with pytest.warns(RuntimeWarning, match="stale lock"):
        with folder.lock():
            pass
    with open(folder.file(run_folder.LOCK), "w") as f:  # another host: never assumed dead
        json.dump({"pid": int(dead), "host": "elsewhere", "time": "then"}, f)
    with pytest.raises(run_folder.RunLocked, match="elsewhere"):
        with folder.lock():
            pass


def test_log_is_cut_back_to_the_backed_up_epochs(tmp_path):
    folder = run_folder.RunFolder(tmp_path)
    (tmp_path / run_folder.LOG).write_text("epoch,loss\n0,1.0\n1,0.5\n2,0.4\n")
    assert folder.backed_up_epochs() == 0
    backup = RunBackup(tmp_path / run_folder.BACKUP)
    backup.set_model(keras_imae.models.build_model("mlp", (3,), 2, seed=0))
    backup.save(2)
    assert folder.backed_up_epochs() == 2
    folder.truncate_log(2)
    assert [r["epoch"] for r in folder.read_log()] == ["0", "1"]
    with pytest.raises(FileNotFoundError, match="No training log"):
        run_folder.RunFolder(tmp_path / "none").read_log()


def test_export_targets(tmp_path):
    target, source = tmp_path / "export", tmp_path / "runs" / "a"
    run_folder.check_export_target(target, source, overwrite=False)  # absent: fine
    target.mkdir()
    (target / "mine.txt").write_text("user file")
    for overwrite in (False, True):  # a folder keras_imae did not write: never replaced
        with pytest.raises(FileExistsError, match="not written by keras_imae"):
            run_folder.check_export_target(target, source, overwrite=overwrite)
    run_folder.write_export_marker(target, source)
    run_folder.check_export_target(target, source, overwrite=False)  # its own export
    with pytest.raises(FileExistsError, match="holds the export of .*runs/a"):
        run_folder.check_export_target(target, tmp_path / "runs" / "b", overwrite=False)
    run_folder.check_export_target(target, tmp_path / "runs" / "b", overwrite=True)


def _hold_lock_in_child(folder):
    """A child process that takes ``folder``'s lock and sleeps; returns it once it holds it."""
    code = ("import sys, time; from keras_imae.run_folder import _folder as run_folder\n"
            "with run_folder.RunFolder(sys.argv[1]).lock():\n"
            "    print('held', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(folder.path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_held_lock_is_refused_whatever_its_file_says(tmp_path):
    # Exclusion is the holder's flock, not the pid in the file: a run that read a stale pid
    # cannot take over a lock that another run has just taken (the take-over race).
    folder = run_folder.RunFolder(tmp_path / "run")
    child = _hold_lock_in_child(folder)
    try:
        with open(folder.file(run_folder.LOCK), "w") as f:  # the content of a dead holder
            json.dump({"pid": 2 ** 22 + 1, "host": socket.gethostname(), "time": "then"}, f)
        with pytest.raises(run_folder.RunLocked, match="Another run is training"):
            folder.check_unlocked()
        with pytest.raises(run_folder.RunLocked, match="Another run is training"):
            with folder.lock():
                pass
    finally:
        child.kill()
        child.wait()
    # Killed without cleaning up: its file stays, the kernel dropped its flock.
    assert os.path.exists(folder.file(run_folder.LOCK))
    assert folder.check_unlocked()["time"] == "then"
    with pytest.warns(RuntimeWarning, match="stale lock"):
        with folder.lock():
            assert run_folder._read_lock(folder.file(run_folder.LOCK))["pid"] == os.getpid()
    assert not os.path.exists(folder.file(run_folder.LOCK))


def test_a_resumed_log_keeps_its_header_columns(tmp_path):
    # A resumed run whose logs carry other keys (here: "a" gone, "c" new) writes its rows
    # under the header already in log.csv; Keras' own CSVLogger would shift them.
    log = tmp_path / run_folder.LOG
    log.write_text("epoch,a,b\n0,1,2\n")
    writer = run_folder.LogWriter(str(log), append=True)
    writer.on_train_begin()
    writer.on_epoch_end(1, {"b": 5.0, "c": 6.0})
    writer.on_train_end()
    rows = run_folder.RunFolder(tmp_path).read_log()
    assert rows == [{"epoch": "0", "a": "1", "b": "2"}, {"epoch": "1", "a": "NA", "b": "5.0"}]
    fresh = tmp_path / "fresh.csv"  # no file yet: Keras' behaviour, the first epoch's keys
    writer = run_folder.LogWriter(str(fresh), append=True)
    writer.on_train_begin()
    writer.on_epoch_end(0, {"b": 1.0})
    writer.on_train_end()
    assert fresh.read_text().splitlines()[0] == "epoch,b,val_b"
