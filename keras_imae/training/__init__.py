"""Training runs: the recipe, one run end to end, its folder, strategies, export, the CLI.

- :mod:`.recipe`: every default in one table (``DEFAULTS``), resolved once per run into the
  numbers it trains with; ``keras_imae.recommended`` (``_recommended``) the same for your own
  Keras code; :mod:`.build`: the run's model, compiled (a backbone once per fine-tuning
  phase).
- :func:`run` (``_run``): one run -- data, noise, model, ``fit`` with the monitor, results,
  export -- configured by a :class:`RunConfig` (``_config``, with :func:`validate`).
- ``_run_folder``: what a run writes, its lock, resuming; :mod:`.export` and
  :mod:`.evaluation`: the SavedModel; :mod:`.distribute` and :mod:`.optimizers`: strategies,
  precision, the papers' optimizers; :mod:`.cli`: the scripts' flags; :mod:`.comparison`:
  every loss tuned on a noisy validation split.
"""

from keras_imae.training import recipe
from keras_imae.training._config import (NOISE_TYPES, RunConfig, export_target, finished_results,
                                        validate)
from keras_imae.training._results import format_results, read_log
from keras_imae.training._run import fit_monitor, run
from keras_imae.training.export import ExportFailed
from keras_imae.training._run_folder import RunLocked, write_json

__all__ = ["ExportFailed", "NOISE_TYPES", "RunConfig", "RunLocked", "export_target",
           "finished_results", "fit_monitor",
           "format_results",
           "read_log", "recipe", "run", "validate", "write_json"]
