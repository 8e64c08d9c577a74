"""keras-imae: noise-robust training for Keras via IMAE and Derivative Manipulation.

The package, layer by layer (a module imports only from the layers above it)::

    losses/        emphasis densities w(p), the one gradient core, the Loss classes
    noise/         label corruption, the noisy_labels.npz file, realised noise
    data/          dataset name -> readers (memory or disk) -> tf.data pipelines
    models/        RobustModel (clean fit / memorisation metrics) and architectures
    callbacks/     FitMonitor, CollapseGuard, EmphasisWarmup
    run_folder/    what a run writes: its folder, lock, log, backups, SavedModel export
    config/        the recipe (one table of defaults), RunConfig and validate, recommended
    run/           run(): one run end to end, its noise, tuning; strategies; the comparison
    training/      the public facade: run, RunConfig, recipe, ... in one import
    label_issues/  find_label_issues (numpy) and the K-fold workflow
    plotting.py    emphasis curves and a run's fit curves
    cli/           the commands (keras-imae-train, ...; scripts/*.py call them)

The main names are here too: the losses (``keras_imae.DerivativeManipulation``, ...),
``RobustModel``, ``recommended`` (the recipe for your own Keras code) and
``find_label_issues``. Everything is imported on first use: ``import keras_imae`` alone
imports neither Keras nor TensorFlow, and ``keras_imae.find_label_issues`` needs numpy only.
To load a ``.keras`` file saved with these losses or ``RobustModel``, import
``keras_imae.losses`` and ``keras_imae.models`` first (they register the classes with Keras),
or use ``keras_imae.load_model``.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("losses", "noise", "data", "models", "callbacks", "run_folder", "config", "run",
                "training", "label_issues", "plotting")
_NAMES = {
    **{name: "keras_imae.losses" for name in (
        "DerivativeManipulation", "IMAE", "CategoricalCrossentropy", "MeanAbsoluteError",
        "MeanSquaredError", "GeneralizedCrossEntropy", "SymmetricCrossEntropy",
        "NormalizedCrossEntropyReverse")},
    "RobustModel": "keras_imae.models",
    "EarlyLearning": "keras_imae.models",
    "FitMonitor": "keras_imae.callbacks",
    "EmphasisWarmup": "keras_imae.callbacks",
    "PairMargins": "keras_imae.callbacks",
    "recommended": "keras_imae.config",
    "find_label_issues": "keras_imae.label_issues",
    "cross_val_probabilities": "keras_imae.label_issues",
}

__all__ = [*_SUBPACKAGES, *_NAMES, "load_model"]


def load_model(path, **kwargs):
    """``keras.models.load_model(path)`` with keras_imae's losses and layers registered."""
    import keras

    importlib.import_module("keras_imae.losses")
    importlib.import_module("keras_imae.models")
    return keras.models.load_model(path, **kwargs)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
