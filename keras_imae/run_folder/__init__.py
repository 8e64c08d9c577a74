"""What a run leaves on disk: its folder, lock and log, its backups, its SavedModel export.

- :class:`RunFolder` (``_folder``): the files of one run's ``model_dir`` (:data:`CONFIG`,
  :data:`LOG`, :data:`METRICS`, ...), when it is finished, its lock (:class:`RunLocked`), what
  ``--overwrite`` may delete, and the rules for where an export may go
  (:func:`check_export_target`).
- :class:`RunBackup` (``_backup``): every epoch's training state, written so that a crash never
  corrupts it; a run resumes from :func:`good_generation`.
- :mod:`.export`: the SavedModel a finished run exports, atomically; :mod:`.evaluation`: load
  an export (or a ``.keras`` file) back and score it.

Nothing here knows a run's configuration: the layers above pass the folder and the values.
"""

from keras_imae.run_folder._backup import RunBackup, good_generation
from keras_imae.run_folder._folder import (BACKUP, CHECKPOINTS, CONFIG, EXPORT_MARKER, LOCK, LOG,
                                           METRICS, MODEL, PAIR_MARGINS, TENSORBOARD, TUNE,
                                           WRITTEN, LogWriter, RunFolder, RunLocked, check_apart,
                                           check_export_target, enclosing_export,
                                           write_export_marker, write_json)

__all__ = ["BACKUP", "CHECKPOINTS", "CONFIG", "EXPORT_MARKER", "LOCK", "LOG", "LogWriter",
           "METRICS", "MODEL", "PAIR_MARGINS", "RunBackup", "RunFolder", "RunLocked",
           "TENSORBOARD", "TUNE", "WRITTEN", "check_apart", "check_export_target",
           "enclosing_export", "good_generation", "write_export_marker", "write_json"]
