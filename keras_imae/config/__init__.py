"""A run's configuration: every default in one table, the user's settings, resolved once.

- :mod:`.recipe`: every default in one table (``DEFAULTS``, named recipes, rules), resolved
  once per run (:func:`~keras_imae.config.recipe.resolve`) into the numbers it trains with;
  :mod:`.optimizers`: the papers' optimizers and schedules.
- :class:`RunConfig` (``_run_config``): one run's settings, checked by :func:`validate` (which
  also checks its folder and export target), :func:`export_target`, :func:`finished_results`
  and the checks that a resumed run is the same run (:func:`check_resume`).
- :mod:`.build`: the resolved recipe made into Keras objects (the loss, the optimizer, the
  compiled model, once per fine-tuning phase); :func:`recommended` (``_recommended``): the
  same recipe for your own Keras code (``keras_imae.recommended``).
"""

from keras_imae.config import build, optimizers, recipe
from keras_imae.config._recommended import Recommended, recommended
from keras_imae.config._run_config import (FINETUNE_FIELDS, NOISE_TYPES, RESUME_MAY_CHANGE,
                                           RunConfig, check_resume, export_target,
                                           finished_results, folder_state, validate)

__all__ = ["FINETUNE_FIELDS", "NOISE_TYPES", "RESUME_MAY_CHANGE", "Recommended", "RunConfig",
           "build", "check_resume", "export_target", "finished_results", "folder_state",
           "optimizers", "recipe", "recommended", "validate"]
