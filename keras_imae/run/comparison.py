"""Every loss on the same data, noise and budget, tuned without clean labels.

Protocol (answers the papers' critics: equal tuning budget, no clean validation data, more
baselines):

1. Hold out ``validation_fraction`` of the *noisy* training set (stratified by noisy label).
2. For each loss, train ``selection_seeds`` times per point of its grid
   (:func:`keras_imae.config.recipe.grid`, ``--tune``'s: the same number of points for
   every loss; a loss without hyper-parameters gets that many learning rates instead),
   each time with another seed (``base.seed + s``: another held-out split, initialisation
   and data order; the corruption stays ``base.noise_seed``'s), and
   keep the point with the best mean final score on the noisy validation labels. One split
   of a few hundred examples cannot rank close settings (its standard error is several
   points, and the ranking then follows the split, not the setting), so the default
   averages :data:`SELECTION_SEEDS` of them.
   ``selection="noisy"`` (the default) scores the plain accuracy on the noisy validation
   labels, as a run chooses its epoch (:mod:`keras_imae.run._select`); ``"corrected"``
   scores ``mean (T^-1)[noisy, predicted]`` (:func:`keras_imae.noise.corrected_accuracy`)
   with the ``T`` each run estimates from its noisy labels (never the drawn one), where that
   estimate is usable (else the plain accuracy). With the true ``T`` the corrected score is
   an unbiased estimate of clean accuracy under class-dependent noise; the estimate
   over-states the noise, and on digits the two chose the same point for 18 of the 20
   loss-noise pairs, and for MAE under pair-flip the corrected score's choice ended 6.3
   points lower (docs/studies/results.md). On a tie
   (a few hundred validation examples often give the same count to several settings) the
   loss's run default wins: the point equal to what ``train.py``
   would use (:func:`keras_imae.config.recipe.loss_settings` for the data's architecture; the
   base learning rate for the learning-rate grids), then the earliest. A point whose
   training collapses (:class:`keras_imae.callbacks.TrainingCollapsed`) is logged and is no
   candidate; only a loss whose every point collapses stops the comparison.
3. Retrain the chosen setting on the full noisy training set with ``num_seeds`` seeds (each
   seed changes the corruption, the initialisation and the data order) and report mean ±
   std of final and best test accuracy, clean fit, noisy memorisation and noisy correction.
"""

import dataclasses
import os

import numpy as np

from keras_imae import _checks as checks
from keras_imae import losses as losses_module  # `losses` is compare()'s argument
from keras_imae.callbacks import TrainingCollapsed
from keras_imae.config import build, recipe
from keras_imae.run._run import run as training_run

__all__ = ["BASELINES", "GRID_SIZE", "NAMES", "OVER_CORRECTED", "SELECTIONS", "SELECTION_SEEDS",
           "compare", "markdown_table", "selection_table"]

GRID_SIZE = 4
SELECTION_SEEDS = 3  # selection runs per grid point (step 2 of the protocol)
_REPORTED = ("test_accuracy_final", "test_accuracy_best", "clean_fit", "noisy_fit",
             "noisy_correct")


def grid_for(loss, base, model):
    """The grid of ``loss`` (:func:`keras_imae.config.recipe.grid`, ``--tune``'s):
    dicts of RunConfig overrides, :data:`GRID_SIZE` of them."""
    return recipe.grid(loss, model, base.learning_rate, recipe.named(base))


def _run(base, work_dir, name, dataset, **overrides):
    # A sweep point starts afresh (overwrite: an earlier run of it is replaced, never
    # resumed); a folder holding files no run wrote is refused, never deleted.
    config = dataclasses.replace(base, model_dir=os.path.join(work_dir, name), export_dir="",
                                 verbose=0, overwrite=True, **overrides)
    return training_run(config, dataset=dataset)


SELECTIONS = ("noisy", "corrected")
# Under the selection table when a T-corrected score is above 100% (docs/training.md).
OVER_CORRECTED = (
    "T-corrected scores above 100%: the T estimated from the noisy labels over-states the "
    "noise (its classifier's own errors count as noise), so the correction over-corrects. "
    "The score still ranks the settings; it is not an accuracy.")


def _score(result, selection):
    """``(score, name)`` of a sweep run: see step 2 of the protocol."""
    corrected = result.get("val_accuracy_corrected_final")
    if selection == "corrected" and corrected is not None:
        return corrected, "T-corrected noisy validation accuracy"
    return result["val_accuracy_final"], "noisy validation accuracy"


# Baselines that are a loss with an option, by name: ELR is cross-entropy plus its penalty.
BASELINES = {"elr": dict(loss="cce", elr_lambda=recipe.DEFAULTS["elr_lambda"])}
NAMES = (*losses_module.LOSSES, *BASELINES)


def _for_loss(base, loss):
    """``base`` for ``loss`` (a loss name, or one of :data:`BASELINES`): a warm-up, a ramp or
    pair margins set for the sweep apply to the losses that have an emphasis and a rejection cap
    (DM, IMAE); the others keep their own (none)."""
    if loss in BASELINES:
        return dataclasses.replace(_for_loss(base, BASELINES[loss]["loss"]),
                                   **BASELINES[loss])
    known = losses_module.LOSSES.get(loss)  # an unknown name fails in recipe's checks
    if known and known.EMPHASIS_STRENGTH is None:
        base = dataclasses.replace(base, warmup_epochs=None, emphasis_ramp=None)
    if base.pair_margins is not None and known and "reject_margin" not in known.HYPERPARAMETERS:
        base = dataclasses.replace(base, pair_margins=None)
    return dataclasses.replace(base, loss=loss)


def _run_default(base, model):
    """What a run of ``base.loss`` uses by default: its resolved hyper-parameters and the base
    learning rate (a grid point is the default when all its values match)."""
    settings = recipe.loss_settings(base.loss, recipe.given_hparams(base), model, base.normalize,
                                    recipe.named(base))
    resolved = build.build_loss({"loss": base.loss, "loss_settings": settings}).get_config()
    return {**resolved, "learning_rate": base.learning_rate, "elr_lambda": base.elr_lambda}


def compare(base, losses, *, num_seeds=3,
            validation_fraction=recipe.DEFAULTS["compare_validation_fraction"], work_dir, dataset,
            selection="noisy", selection_seeds=SELECTION_SEEDS, log=print):
    """Run the protocol above; returns one dict per loss (chosen setting, mean, std).

    Args:
        base: a :class:`keras_imae.config.RunConfig` with the data, noise and budget.
        losses: short loss names, or names of :data:`BASELINES` (``"elr"``).
        num_seeds: seeds of the final runs (seed and noise seed ``0..num_seeds-1``).
        validation_fraction: noisy validation share used for selection.
        selection_seeds: selection runs per grid point, each with its own split (step 2).
        work_dir: folder for the runs' model_dirs.
        selection: ``"noisy"`` or ``"corrected"`` (step 2 of the protocol).
        dataset: the loaded :class:`keras_imae.data.Dataset`.
        log: progress printer.
    """
    num_seeds = checks.integer("num_seeds", num_seeds, low=1)
    selection_seeds = checks.integer("selection_seeds", selection_seeds, low=1)
    bases = {loss: _for_loss(base, loss) for loss in losses}
    for loss_base in bases.values():  # a bad warm-up fails now, not in the middle of the sweep
        recipe.warmup_epochs(loss_base.loss, loss_base.epochs, loss_base.warmup_epochs)
    if selection not in SELECTIONS:
        raise ValueError(f"Invalid value for `selection`. Expected one of {SELECTIONS}. "
                         f"Received: selection={selection!r}")
    model = None if dataset is None else recipe.model_for(base, dataset.input_shape)
    rows = []
    for loss in losses:
        scored, grid = [], []
        loss_base = bases[loss]
        default = _run_default(loss_base, model)
        for i, point in enumerate(grid_for(loss, base, model)):
            try:
                results = [_run(loss_base, work_dir, f"{loss}_grid{i}_s{s}", dataset,
                                seed=base.seed + s, validation_fraction=validation_fraction,
                                **point)
                           for s in range(selection_seeds)]
            except TrainingCollapsed as err:  # a failed point: no candidate
                collapsed = err
                log(f"{loss} {point}: collapsed, not a candidate ({err})")
                grid.append({"point": point, "collapsed": str(err)})
                continue
            scores, names = zip(*(_score(r, selection) for r in results))
            score, name = float(np.mean(scores)), names[0]
            log(f"{loss} {point}: {name} {score:.4f}"
                + (f" (mean of {selection_seeds} splits)" if selection_seeds > 1 else ""))
            # rounded: equal counts must tie even when T^-1's float sums differ in the last bit
            is_default = all(default.get(key) == value for key, value in point.items())
            scored.append((round(score, 9), is_default, -i, point))
            corrected = [r.get("val_accuracy_corrected_final") for r in results]
            grid.append({"point": point,
                         "noisy": float(np.mean([r["val_accuracy_final"] for r in results])),
                         "corrected": None if None in corrected else float(np.mean(corrected)),
                         "test_final": float(np.mean([r["test_accuracy_final"]
                                                      for r in results]))})
        if not scored:
            raise collapsed
        best_score, _, _, chosen = max(scored, key=lambda s: s[:3])
        finals = [_run(loss_base, work_dir, f"{loss}_seed{seed}", dataset,
                       seed=seed, noise_seed=seed, **chosen)
                  for seed in range(num_seeds)]
        row = {"loss": loss, "chosen": chosen, "selection_score": best_score, "grid": grid}
        for key in _REPORTED:
            values = np.array([r[key] for r in finals], float)
            row[key] = (float(values.mean()), float(values.std()))
        log(f"{loss}: chose {chosen}; final test accuracy "
            f"{row['test_accuracy_final'][0]:.4f} ± {row['test_accuracy_final'][1]:.4f}")
        rows.append(row)
    return rows


def markdown_table(rows, *, title=None):
    """The comparison as a markdown table (mean ± std over seeds, in %)."""
    def pct(pair):
        return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    lines = [f"**{title}**", ""] if title else []
    lines += ["| loss | chosen (noisy val) | test final | test best | clean fit | "
              "noisy memorised | noisy corrected |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        chosen = ", ".join(f"{k}={v:g}" for k, v in row["chosen"].items())
        lines.append(f"| {row['loss']} | {chosen} | " + " | ".join(
            pct(row[key]) for key in _REPORTED) + " |")
    return "\n".join(lines)


def selection_table(rows):
    """Every grid point's selection runs: their scores on the noisy validation splits (plain
    and T-corrected) next to their final test accuracy (trained on the rest), means over the
    selection seeds, in %, the chosen one starred. Shows how well each score tracks clean
    accuracy."""
    lines = ["| loss | setting | noisy val | T-corrected val | test final |",
             "|---|---|---|---|---|"]
    for row in rows:
        for run in row["grid"]:
            setting = ", ".join(f"{k}={v:g}" for k, v in run["point"].items())
            if "collapsed" in run:
                lines.append(f"| {row['loss']} | {setting} | collapsed | - | - |")
                continue
            star = " *" if run["point"] == row["chosen"] else ""
            corrected = "-" if run["corrected"] is None else f"{100 * run['corrected']:.1f}"
            lines.append(f"| {row['loss']} | {setting}{star} | {100 * run['noisy']:.1f} | "
                         f"{corrected} | {100 * run['test_final']:.1f} |")
    if any((run.get("corrected") or 0) > 1 for row in rows for run in row["grid"]):
        lines += ["", OVER_CORRECTED]
    return "\n".join(lines)
