"""The run's backup: every epoch's training state, written so that a crash never corrupts it.

Keras' ``BackupAndRestore`` writes ``latest.weights.h5`` in place: a process killed (or a disk
that fills up) in the middle of that write leaves a truncated file that no later run can
load. Here each epoch's state is one *generation*, a folder ``backup/epoch-NNNNNN/`` holding
``state.weights.h5`` (the model's and the optimizer's variables) and ``metadata.json`` (the
epoch, and the states of the model's random generators -- dropout's ``SeedGenerator``s, which
``save_weights`` leaves out -- so that a resumed run draws the masks an uninterrupted one
draws):

- it is written into a hidden temporary folder, flushed to disk, then renamed into place
  (atomic on POSIX), so a generation either exists whole or not at all;
- the previous generation is kept until the new one is in place (the last :data:`KEEP` are
  kept), and temporary folders left by a crash are removed by the next run;
- a run resumes from the newest generation that reads back whole (every array of the file
  is read, and the metadata parsed); a newer one that does not -- truncated by an earlier
  version, or damaged on disk -- is skipped with a warning naming it.

A write that fails (``OSError``: a full disk, a removed folder) stops the run with a message
saying which epoch is safely backed up.
"""

import json
import os
import shutil
import warnings

import keras
import numpy as np

from keras_imae.models import set_initial_epoch

__all__ = ["KEEP", "RunBackup", "good_generation"]

KEEP = 2  # generations kept on disk
_PREFIX, _TMP = "epoch-", ".tmp-"
WEIGHTS, METADATA = "state.weights.h5", "metadata.json"
_LEGACY = ("latest.weights.h5", "training_metadata.json")  # Keras' own layout (older runs)


def _readable(weights, metadata):
    """The parsed ``metadata`` (its ``"epoch"`` an int) if both files read back whole, else
    ``None``."""
    import h5py

    try:
        with open(metadata) as f:
            recorded = json.load(f)
        recorded["epoch"] = int(recorded["epoch"])
        with h5py.File(weights, "r") as f:
            arrays = []
            f.visititems(lambda _, item: arrays.append(item) if isinstance(
                item, h5py.Dataset) else None)
            for array in arrays:
                array[()]  # reads every byte: a truncated file fails here
        return recorded
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None


def _generations(backup_dir):
    """``[(epoch, weights, metadata, folder)]`` on disk, newest first (legacy layout last)."""
    found = []
    if os.path.isdir(backup_dir):
        for name in os.listdir(backup_dir):
            if name.startswith(_PREFIX) and name[len(_PREFIX):].isdigit():
                folder = os.path.join(backup_dir, name)
                found.append((int(name[len(_PREFIX):]), os.path.join(folder, WEIGHTS),
                              os.path.join(folder, METADATA), folder))
    found.sort(reverse=True)
    legacy = [os.path.join(backup_dir, name) for name in _LEGACY]
    if os.path.isfile(legacy[0]):
        found.append((-1, *legacy, None))
    return found


def _newest_good(backup_dir, warn):
    """``(weights_path, metadata)`` of the newest generation that reads back whole, or
    ``(None, {"epoch": 0})``; a newer unreadable one is named in a ``RuntimeWarning``."""
    for listed_epoch, weights, metadata, folder in _generations(backup_dir):
        recorded = _readable(weights, metadata)
        if recorded is not None:
            return weights, recorded
        if warn:
            warnings.warn(
                f"The backup {folder or weights!r} (epoch {listed_epoch}) cannot be read back "
                "(truncated or damaged): resuming from an older one.", RuntimeWarning,
                stacklevel=3)
    return None, {"epoch": 0}


def good_generation(backup_dir, warn=True):
    """``(epoch, weights_path)`` of the newest generation that reads back whole, or
    ``(0, None)``; a newer unreadable one is named in a ``RuntimeWarning``."""
    weights, recorded = _newest_good(backup_dir, warn)
    return recorded["epoch"], weights


def _rng_variables(model):
    """The model's random generator states (Keras ``SeedGenerator``s: dropout's), in layer
    order: in ``model.variables`` but not in ``model.weights``, what ``save_weights``
    writes."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _restore_rng(model, states, where):
    """Set the model's random generator states to ``states`` (``[[path, value], ...]``, as
    saved, matched by position: Keras numbers generator names per process, so a model built
    after others has other paths); warn when they do not fit the model (a backup of an
    earlier version)."""
    variables = _rng_variables(model)
    if not variables:
        return
    shapes = [np.shape(value) for _, value in states or ()]
    if shapes != [tuple(v.shape) for v in variables]:
        warnings.warn(
            f"The backup {where!r} holds no random generator state for this model (written by "
            "an earlier version): its dropout masks restart, and the resumed run differs "
            "from an uninterrupted one.", RuntimeWarning, stacklevel=3)
        return
    for v, (_, value) in zip(variables, states):
        v.assign(np.asarray(value, dtype=v.dtype))


class RunBackup(keras.callbacks.Callback):
    """Backs the training state up after every epoch, crash-consistently, and restores the
    newest good generation when ``fit`` starts (see the module docstring).

    Pass it last in the callbacks (an epoch counts as done only once everything before it
    ran). Like Keras' ``BackupAndRestore``, a resumed ``fit`` trains only the remaining
    epochs.

    Args:
        backup_dir: the folder of the generations (created when first needed).
        delete_when_done: remove the generations when ``fit`` completes (as Keras does).
            ``training.run`` keeps them until the run has finished, export included, and then
            calls :meth:`delete`: a run whose export failed resumes with no epoch left to
            train, and only exports.
    """

    def __init__(self, backup_dir, *, delete_when_done=True):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.delete_when_done = delete_when_done
        self.restore = True  # False: the next fit continues from the model in memory
        self._epoch = 0
        self._chosen = None  # (weights, metadata) of the generation the next fit restores

    @property
    def epoch(self):
        """Epochs the model has trained: restored from the backup, then one per epoch ended
        (what a run exports as its last epoch; ``log.csv`` may have lost rows)."""
        return self._epoch

    def resume_epoch(self):
        """The epoch the next ``fit`` starts at: the newest generation's that reads back
        whole (0 without one). The generation is chosen here, once, and that one is restored,
        so a pipeline made to start at this epoch (``keras_imae.data.train_dataset(...,
        initial_epoch=)``) matches the weights."""
        if self._chosen is None:
            self._chosen = _newest_good(self.backup_dir, warn=True)
        return self._chosen[1]["epoch"]

    def on_train_begin(self, logs=None):
        self._clean_temporary()
        if not self.restore:  # the next fit continues from the model in memory
            self._chosen = None
            return
        self.resume_epoch()
        (weights, recorded), self._chosen = self._chosen, None
        self._epoch = recorded["epoch"]
        if weights is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        _restore_rng(self.model, recorded.get("rng_states"), os.path.dirname(weights))
        set_initial_epoch(self.model, self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        self.save(self._epoch)

    def save(self, epoch):
        """Write generation ``epoch`` atomically, then drop all but the newest :data:`KEEP`."""
        os.makedirs(self.backup_dir, exist_ok=True)
        final = os.path.join(self.backup_dir, f"{_PREFIX}{epoch:06d}")
        tmp = os.path.join(self.backup_dir, f"{_TMP}{_PREFIX}{epoch:06d}-{os.getpid()}")
        try:
            os.makedirs(tmp)
            self.model.save_weights(os.path.join(tmp, WEIGHTS))
            rng_states = [[v.path, np.asarray(v.numpy()).tolist()]
                          for v in _rng_variables(self.model)]
            with open(os.path.join(tmp, METADATA), "w") as f:
                json.dump({"epoch": epoch, "rng_states": rng_states}, f)
            for name in (WEIGHTS, METADATA):
                with open(os.path.join(tmp, name), "rb") as f:
                    os.fsync(f.fileno())
            if os.path.exists(final):  # a rerun from an older generation writes it again
                shutil.rmtree(final)
            os.rename(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            kept = good_generation(self.backup_dir, warn=False)[0]
            raise OSError(
                err.errno, f"Could not write the backup of epoch {epoch} in "
                f"{self.backup_dir!r} ({err.strerror or err}). The backup of epoch {kept} is "
                "intact: free some space and run the same command again to resume from "
                "there.") from None
        for _, _, _, folder in _generations(self.backup_dir)[KEEP:]:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_when_done and self._epoch >= self.params.get("epochs", 0):
            self.delete()

    def _clean_temporary(self):
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if name.startswith(_TMP):
                    shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)

    def delete(self):
        """Remove every generation (the run has finished)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)
