"""Training runs, in one import: the public facade over :mod:`keras_imae.config`,
:mod:`keras_imae.run` and :mod:`keras_imae.run_folder`.

``from keras_imae import training`` then ``training.run(training.RunConfig(...))``: one run
end to end (:func:`keras_imae.run.run`), configured by a :class:`keras_imae.config.RunConfig`
(checked by :func:`validate`; every default in :mod:`keras_imae.config.recipe`),
written into its run folder (:class:`RunLocked`, :func:`write_json`) and exported
(:class:`ExportFailed`). Nothing is defined here: the library's own modules import from the
packages that own these names, never from this one.
"""

from keras_imae.config import (NOISE_TYPES, RunConfig, export_target, finished_results, recipe,
                               validate)
from keras_imae.run import fit_monitor, format_results, read_log, run
from keras_imae.run_folder import RunLocked, write_json
from keras_imae.run_folder.export import ExportFailed

__all__ = ["ExportFailed", "NOISE_TYPES", "RunConfig", "RunLocked", "export_target",
           "finished_results", "fit_monitor",
           "format_results",
           "read_log", "recipe", "run", "validate", "write_json"]
