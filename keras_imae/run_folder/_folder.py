"""The folder of one training run: its files, when it is finished, its lock, its export.

Everything a run writes lives in ``model_dir``::

    model_dir/
      .lock              held while a run trains here (pid, host, time); removed at the end
      config.json        the RunConfig
      noisy_labels.npz   the exact corruption (reused on resume, shareable)
      log.csv            per-epoch History (CSVLogger, appended on resume)
      tensorboard/       TensorBoard logs
      backup/            BackupAndRestore state while training (deleted when fit completes)
      checkpoints/       with checkpoint="best": the best epochs' weights (deleted at the end)
      tune/              with tune=True: one run per grid point (point-0/, point-1/, ...)
      model.keras        the trained model, compiled with its loss
      metrics.json       the results -- written last: a run is *finished* iff it exists

Rules (docs/reliability.md):

- A run is finished only when ``metrics.json`` exists; any other state of the folder is an
  unfinished run, which the same command resumes.
- :meth:`RunFolder.clear` (``--overwrite``) deletes only the entries listed above, never
  anything else in the folder.
- A SavedModel export carries :data:`EXPORT_MARKER` naming the run folder that wrote it; a run
  replaces an existing export only if it wrote it itself, or with ``overwrite`` if another
  keras_imae run wrote it -- never a folder that keras_imae did not write.
"""

import contextlib
import csv
import fcntl
import json
import os
import shutil
import socket
import time
import warnings

import keras
import numpy as np

from keras_imae import _files, noise
from keras_imae.run_folder._backup import good_generation

__all__ = ["EXPORT_MARKER", "RunFolder", "RunLocked", "check_apart", "check_export_target",
           "enclosing_export", "write_export_marker", "write_json"]

CONFIG, LOG, METRICS, MODEL = "config.json", "log.csv", "metrics.json", "model.keras"
BACKUP, TENSORBOARD, LOCK = "backup", "tensorboard", ".lock"
CHECKPOINTS, TUNE = "checkpoints", "tune"  # checkpoint="best"'s weights; tune=True's runs
PAIR_MARGINS = "pair_margins.json"  # pair_margins=True's noise estimate (read on resume)
WRITTEN = (CONFIG, noise.NOISY_LABELS_FILENAME, LOG, TENSORBOARD, BACKUP, CHECKPOINTS, TUNE,
           PAIR_MARGINS, MODEL, METRICS)
# Keys every run's config.json has had (a RunConfig written by keras_imae.run.run).
_CONFIG_KEYS = {"dataset", "noise_type", "loss", "model_dir", "epochs"}
EXPORT_MARKER = "keras_imae_export.json"


class RunLocked(RuntimeError):
    """Another run is training in the same folder."""


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_json(path, obj):
    """Write ``obj`` (numpy values allowed) as JSON to ``path`` atomically (temporary file,
    then rename)."""
    _files.atomic_write(
        path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=_json_default))


class LogWriter(keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` that, appending to a log that has a header, keeps its columns.

    Keras writes the keys of the first epoch it sees under the header already in the file,
    so a resumed run whose logs carry other keys (a newer keras_imae logs more, a validation
    split adds some) would shift every value of its rows under the wrong name. Here the
    resumed rows follow the existing header: a key it lacks is dropped, a key the logs lack
    is written as ``NA``.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.sep), None)
            if header and header[0] == "epoch":
                self.keys = header[1:]


class RunFolder:
    """One run's ``model_dir`` (see the module docstring).

    Args:
        path: the folder (need not exist yet).
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def finished(self):
        """Whether a run completed here (``metrics.json`` exists)."""
        return os.path.isfile(self.file(METRICS))

    def written(self):
        """The run entries present in the folder (files and folders a run writes)."""
        return [name for name in WRITTEN if os.path.lexists(self.file(name))]

    def foreign(self):
        """The run entries present although no run wrote them: every one of them when the
        folder's ``config.json`` is missing or not a run's (a run writes it first). A run
        never replaces or deletes these, whatever ``overwrite`` says."""
        try:
            with open(self.file(CONFIG)) as f:
                keys = set(json.load(f))
        except (OSError, ValueError, TypeError):
            keys = set()
        return [] if _CONFIG_KEYS <= keys else self.written()

    def clear(self):
        """Delete the entries a run writes and their temporary files (``.model.keras.tmp-*``
        of a writer killed mid-save: the folder is locked, so no one is writing them), and
        nothing else."""
        temporary = tuple(f".{name}.tmp-" for name in WRITTEN)
        leftovers = [entry for entry in os.listdir(self.path) if entry.startswith(temporary)]
        for name in self.written() + leftovers:
            target = self.file(name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.remove(target)

    # -- the per-epoch log ------------------------------------------------------------------
    def read_log(self):
        """The rows of ``log.csv`` (one dict of strings per epoch, resumed runs included).

        Raises:
            FileNotFoundError: no ``log.csv`` in the folder.
        """
        log = self.file(LOG)
        if not os.path.exists(log):
            raise FileNotFoundError(f"No training log at {log!r}: is {self.path!r} a run "
                                    "folder written by scripts/train.py?")
        with open(log, newline="") as f:
            return list(csv.DictReader(f))

    def backed_up_epochs(self):
        """Epochs completed according to the newest backup that reads back whole
        (:mod:`keras_imae.run_folder._backup`), else 0."""
        return good_generation(self.file(BACKUP), warn=False)[0]

    def truncate_log(self, epochs):
        """Keep the first ``epochs`` rows of ``log.csv`` (rows of epochs whose backup was
        never written -- a run killed between its log row and its backup -- are re-run)."""
        if not os.path.exists(self.file(LOG)):
            return
        with open(self.file(LOG), newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if len(lines) > epochs + 1:
            _files.atomic_write(self.file(LOG), lambda f: f.writelines(lines[:epochs + 1]))

    # -- the lock -----------------------------------------------------------------------------
    # Exclusion comes from an exclusive ``flock`` on ``.lock``, which the kernel drops when
    # its holder dies: a crashed run's lock is free without guessing from its pid, and of
    # two runs taking over one stale lock only one can win. The file's content (pid, host,
    # time) only names the holder in messages. A lock written on another host is never taken
    # over: ``flock`` need not work across hosts on a shared file system.
    def check_unlocked(self):
        """Raise :class:`RunLocked` when a live run holds ``.lock`` (or one written on another
        host); return the holder of a stale lock, or ``None`` when there is no lock.
        Read-only: the folder is left as it was."""
        path = self.file(LOCK)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _check_free(path, fd)
        finally:
            os.close(fd)  # releases the probe's flock, if it got one

    @contextlib.contextmanager
    def lock(self):
        """Hold ``.lock`` while a run trains here; a second run is refused with
        :class:`RunLocked`. A lock left by a dead process on this host is taken over.
        Folders it creates are removed again if the run leaves them empty."""
        created = []
        parent = os.path.abspath(self.path)
        while not os.path.isdir(parent):
            created.append(parent)
            parent = os.path.dirname(parent)
        os.makedirs(self.path, exist_ok=True)
        path = self.file(LOCK)
        fd = _acquire(path)
        try:
            yield self
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # before the flock goes: a waiting run then makes a new file
            os.close(fd)
            for folder in created:  # innermost first; a folder with files stays
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _check_free(path, fd):
    """Take ``flock`` on ``fd`` (open on ``path``) or raise :class:`RunLocked`; return the
    previous holder written in the file (``{}`` if unreadable), refusing another host's."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_lock(path)
        raise RunLocked(
            f"Another run is training in {os.path.dirname(path)!r} (lock {path!r}: pid "
            f"{holder.get('pid')} on {holder.get('host')} since {holder.get('time')}). "
            "Wait for it, or choose another model_dir.") from None
    holder = _read_lock(path)
    host = holder.get("host")
    if host is not None and host != socket.gethostname():
        raise RunLocked(
            f"A run on host {host!r} holds {path!r} (pid {holder.get('pid')} since "
            f"{holder.get('time')}); a lock from another host is never taken over. If that "
            "run is gone, delete the file, or choose another model_dir.")
    return holder


def _acquire(path):
    """An open descriptor holding the exclusive ``flock`` of the file at ``path`` (created if
    missing), with this process written into it."""
    for _ in range(8):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            holder = _check_free(path, fd)
            try:  # the previous holder may have removed the file between our open and flock
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is None or not os.path.samestat(os.fstat(fd), current):
                os.close(fd)
                continue
        except BaseException:
            os.close(fd)
            raise
        if holder:
            warnings.warn(f"Taking over the stale lock {path!r} of pid {holder.get('pid')} "
                          "(no longer running).", RuntimeWarning, stacklevel=4)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "time": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        return fd
    raise RunLocked(f"Could not take the lock {path!r}: it keeps being replaced.")


def _read_lock(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# -- exports --------------------------------------------------------------------------------
def enclosing_export(path):
    """The SavedModel folder (one with :data:`EXPORT_MARKER` or ``saved_model.pb``) that is
    ``path`` or holds it, else ``None``: an export is replaced whole, so nothing else may live
    inside one."""
    folder = os.path.abspath(os.fspath(path))
    while True:
        if any(os.path.isfile(os.path.join(folder, name))
               for name in (EXPORT_MARKER, "saved_model.pb")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def check_apart(model_dir, export_dir):
    """Raise ``ValueError`` unless a run folder and its export target stay apart: not the same
    folder, the run folder not inside the export (replacing the export would delete the run),
    the export not inside an entry the run writes (``--overwrite`` would delete it)."""
    run, target = os.path.abspath(os.fspath(model_dir)), os.path.abspath(os.fspath(export_dir))
    inside = [os.path.join(run, name) for name in WRITTEN]
    if run == target or run.startswith(target + os.sep) or any(
            target == entry or target.startswith(entry + os.sep) for entry in inside):
        raise ValueError(
            f"model_dir {model_dir!r} and the export target {export_dir!r} are "
            f"{'the same folder' if run == target else 'nested in each other'}: an export "
            "replaces its whole folder and --overwrite clears the run's. Choose an "
            "--export_dir outside --model_dir.")


def write_export_marker(export_dir, source):
    """Record inside a SavedModel folder what wrote it (``source``: a run folder or file)."""
    write_json(os.path.join(export_dir, EXPORT_MARKER),
               {"source": os.path.abspath(os.fspath(source))})


def check_export_target(export_dir, source, *, overwrite):
    """Raise unless ``export_dir`` may receive ``source``'s export.

    Allowed: a target that does not exist; an export written from the same ``source``; with
    ``overwrite``, an export another keras_imae run or script wrote. Never: an existing folder
    without :data:`EXPORT_MARKER` (not written by keras_imae), whatever ``overwrite`` says.

    Raises:
        FileExistsError: the target may not be replaced.
        OSError: the target is a file, or cannot be created or written.
    """
    export_dir = os.path.abspath(os.fspath(export_dir))
    if os.path.lexists(export_dir) and not os.path.isdir(export_dir):
        raise FileExistsError(f"Export target {export_dir!r} is a file, not a folder; it is "
                              "never replaced. Choose another --export_dir, or move it.")
    # the export is written into a sibling, then renamed: the parent must be writable
    _files.check_writable_dir(os.path.dirname(export_dir), "The folder of export target")
    if not os.path.lexists(export_dir):
        return
    marker = _read_lock(os.path.join(export_dir, EXPORT_MARKER)) if os.path.isdir(
        export_dir) else {}
    owner = marker.get("source")
    if owner is None:
        raise FileExistsError(
            f"Export target {export_dir!r} exists and was not written by keras_imae (no "
            f"{EXPORT_MARKER}); it is never replaced. Choose another --export_dir, or move it.")
    if owner == os.path.abspath(os.fspath(source)) or overwrite:
        return
    raise FileExistsError(
        f"Export target {export_dir!r} holds the export of {owner!r}, not of "
        f"{os.path.abspath(os.fspath(source))!r}. Pass --overwrite to replace it, or choose "
        "another --export_dir.")
