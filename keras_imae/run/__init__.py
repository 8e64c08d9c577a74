"""One training run, end to end, and the runs made of runs.

- :func:`run` (``_run``): one run -- data, noise, model, ``fit`` with the monitor
  (:func:`fit_monitor`), results, export -- configured by a :class:`keras_imae.config.RunConfig`
  and written into its :mod:`keras_imae.run_folder`. Its parts: the training labels' noise
  (``_noise``: :func:`corrupt`, drawn once, reused on resume, reported), the exported epoch
  chosen on the noisy validation labels (``_select``), ``tune=True``'s grid of runs
  (``_tune``), the results (``_results``: :func:`format_results`, :func:`read_log`).
- :mod:`.signals`: SIGTERM and Ctrl-C stop a run at a safe point; :mod:`.distribute`:
  strategies, mixed precision, resumable ``fit``; :mod:`.comparison`: every loss tuned on a
  noisy validation split.
"""

from keras_imae.run._noise import corrupt
from keras_imae.run._results import format_results, read_log
from keras_imae.run._run import fit_monitor, run

__all__ = ["corrupt", "fit_monitor", "format_results", "read_log", "run"]
