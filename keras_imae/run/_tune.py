"""``tune=True`` (``--tune``): a run that chooses its loss's hyper-parameters from its own noisy
data.

Each point of the loss's grid (:func:`keras_imae.config.recipe.grid`: for DM the run
default ``(lam, beta)`` and three neighbours; four points for every loss, the grid of
``scripts/compare.py``) is trained as a full run in ``model_dir/tune/point-<i>/``, every point
with the same held-out share of the noisy labels (the same seed) and the same ``checkpoint``
(``"best"`` unless set). A point scores what its exported model scores on those held-out
labels: the plain accuracy on them, as an epoch is chosen (:mod:`keras_imae.run._select` says
why not the accuracy corrected by an estimated ``T``). The best point wins (a tie
goes to the run default, then to the earliest point; a point whose training collapses is
recorded and is no candidate). Its model is the run's: ``model_dir`` receives its
``model.keras`` and ``noisy_labels.npz`` and a ``metrics.json`` that is the chosen point's
plus ``"tuning"`` (every point with its settings and score), and the SavedModel is exported
from it. Stopped, the same command resumes: finished points are read back, an unfinished one
resumes from its backup.
"""

import dataclasses
import json
import os
import shutil

from keras_imae import _files, data, noise, run_folder
from keras_imae.callbacks import TrainingCollapsed
from keras_imae.config import check_resume, export_target, folder_state, recipe
from keras_imae.run import signals
from keras_imae.run._select import SCORE_KEY
from keras_imae.run_folder import export

__all__ = ["POINTS", "tuned_run"]

POINTS = run_folder.TUNE  # model_dir/tune/point-<i>/: one run per grid point


def _score(results):
    """The exported model's plain accuracy on the noisy validation labels, ``SCORE_KEY``
    (``keras_imae.run._select`` says why not the ``T``-corrected one)."""
    return float(results["exported"][SCORE_KEY])


def _is_default(point, config, model):
    """Whether ``point`` is what the run would use untuned."""
    default = {**recipe.loss_settings(config.loss, recipe.given_hparams(config), model,
                                      recipe=recipe.named(config)),
               "learning_rate": config.learning_rate}
    return all(default.get(key) == value for key, value in point.items())


def _point_results(config, index, point, dataset, strategy, run):
    point_config = dataclasses.replace(
        config, tune=False, overwrite=False, export_dir="",
        model_dir=os.path.join(config.model_dir, POINTS, f"point-{index}"), **point)
    folder = run_folder.RunFolder(point_config.model_dir)
    if folder.finished:
        with open(folder.file(run_folder.METRICS)) as f:
            return json.load(f)
    return run(point_config, dataset=dataset, strategy=strategy)


def _copy(source, target):
    _files.atomic_write(target, lambda tmp: shutil.copyfile(source, tmp), path_only=True)


def tuned_run(config, dataset, strategy, run):
    """:func:`keras_imae.run.run` with ``config.tune`` (see the module docstring); ``run``
    trains one point. Returns the chosen point's results plus ``"tuning"``."""
    folder = run_folder.RunFolder(config.model_dir)
    with folder.lock():
        if folder_state(config):
            check_resume(config)
        record = dataclasses.asdict(config)
        checkpoint, fraction = recipe.selection(config)
        config = dataclasses.replace(config, checkpoint=checkpoint, validation_fraction=fraction)
        if dataset is None:
            dataset = data.load(config.dataset, data_dir=config.data_dir,
                                image_size=recipe.load_image_size(config),
                                streaming=config.streaming)
        model = recipe.model_for(config, dataset.input_shape)
        grid = recipe.grid(config.loss, model, config.learning_rate, recipe.named(config))
        # Nothing was written so far: bad data leaves a finished run, or no folder, as it was.
        if config.overwrite:
            folder.clear()
        run_folder.write_json(folder.file(run_folder.CONFIG), record)
        points = []
        for index, point in enumerate(grid):
            signals.check()  # SIGTERM/Ctrl-C between points (each fit checks per batch)
            if config.verbose:
                print(f"Tuning {config.loss}: point {index + 1} of {len(grid)}, {point}")
            try:
                results = _point_results(config, index, point, dataset, strategy, run)
            except TrainingCollapsed as err:  # a failed point, not a failed run
                collapsed = err
                points.append({"point": point, "score": None, "collapsed": str(err)})
                print(f"Tuning {config.loss}: {point} collapsed; not a candidate ({err})")
                continue
            score = _score(results)
            points.append({"point": point, "score": score, "selected_by": SCORE_KEY,
                           "default": _is_default(point, config, model),
                           "test_accuracy": results["exported"]["test_accuracy"],
                           "model_dir": os.path.dirname(results["model_keras"])})
            if config.verbose:
                print(f"Tuning {config.loss}: {point} scores {SCORE_KEY} {score:.4f}")
        candidates = [i for i, p in enumerate(points) if p["score"] is not None]
        if not candidates:
            raise collapsed
        best = max(candidates, key=lambda i: (round(points[i]["score"], 9),
                                              points[i]["default"], -i))
        chosen = run_folder.RunFolder(points[best]["model_dir"])
        with open(chosen.file(run_folder.METRICS)) as f:
            results = json.load(f)
        model_path = folder.file(run_folder.MODEL)
        _copy(chosen.file(run_folder.MODEL), model_path)
        _copy(chosen.file(noise.NOISY_LABELS_FILENAME), folder.file(noise.NOISY_LABELS_FILENAME))
        results.update(model_keras=os.path.abspath(model_path),
                       tuning={"chosen": points[best]["point"], "points": points})
        results.pop("saved_model", None)
        target = export_target(config)
        signals.check()
        if target:
            from keras_imae import load_model

            results["saved_model"] = export.export_finished_run(
                load_model(model_path), target, overwrite=config.overwrite,
                model_dir=config.model_dir, model_path=model_path)
        run_folder.write_json(folder.file(run_folder.METRICS), results)  # last: finished
    return results

