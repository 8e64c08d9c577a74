"""absl flags for :class:`keras_imae.config.RunConfig`, shared by the commands.

One table, :data:`RUN_FLAGS`, defines a flag per ``RunConfig`` field (default taken from the
dataclass), so ``keras-imae-train`` and ``keras-imae-compare`` accept the same spelling, choices
and help for the same setting. Nothing is defined at import time.
"""

import contextlib
import dataclasses
import os
import signal
import sys

from absl import flags, logging

from keras_imae import _files, data, losses, models
from keras_imae.config import NOISE_TYPES, RunConfig, optimizers, recipe
from keras_imae.run import distribute, signals

__all__ = ["RUN_FLAGS", "TOPICS", "check_output_file", "define_run_flags", "one_line_errors",
           "run_config", "quiet_logs"]

# field -> (kind, choices or None, help)
_D = recipe.DEFAULTS
# field -> (kind, choices or None, help). Defaults come from RunConfig; None or "auto" means
# the recipe's default (keras_imae/config/recipe.py, DEFAULTS), printed at the start of a run.
RUN_FLAGS = {
    "dataset": ("string", None, "'digits' (embedded), 'npz:PATH', 'folder:PATH', "
                                "'labels:DIR' (train.csv/test.csv: real noisy labels), "
                                "'tfrecord:DIR', a TFDS name (mnist, cifar10, ...), "
                                "'cifar10_n[/aggre|random1|random2|random3|worse]', 'cifar100_n'."),
    "data_dir": ("string", None, "TFDS data directory."),
    "noise_type": ("enum", NOISE_TYPES,
                   "Noise drawn into the training labels. 'auto': 40% symmetric for the "
                   "embedded digits demo, none for any other dataset (its labels are used as "
                   "given). Class-conditional: symmetric, pairflip, asymmetric; "
                   "instance-dependent: 'instance' (Xia et al. 2020), 'confusion' (the hard "
                   "examples get a simple classifier's likeliest wrong class, Chen et al. "
                   "2021)."),
    "noise_rate": ("float", None, "Fraction of training labels corrupted (with --noise_type)."),
    "noise_seed": ("integer", None, "Seed of the corruption."),
    "noisy_labels": ("string", None,
                     "Reuse the corruption saved in this noisy_labels.npz (or run folder)."),
    "loss": ("enum", tuple(losses.LOSSES), "Loss function."),
    "beta": ("float", None, "DM emphasis strength (also SCE/NCE+RCE beta). DM default: "
                            f"{_D['dm']['beta']:g} for the plain MLP, "
                            f"{_D['dm_batchnorm']['beta']:g} for the BatchNorm networks."),
    "lam": ("float", None, "DM emphasis mode parameter lambda (mode lam / (1 + lam)). "
                           f"Default {_D['dm']['lam']:g}; "
                           f"{_D['recipes']['finetune']['dm_batchnorm']['lam']:g} for a "
                           "pretrained backbone (--recipe=finetune)."),
    "temperature": ("float", None, f"IMAE temperature T. Default {_D['imae']['temperature']:g}."),
    "q": ("float", None, "GCE q."),
    "alpha": ("float", None, "SCE / NCE+RCE alpha."),
    "max_margin": ("float", None,
                   "DM/IMAE option of this project (not the papers'): no gradient for examples "
                   "whose margin |log(p / (1 - p))| exceeds it. Default "
                   f"{_D['max_margin']:g}; 0 = none (the papers' faithful gradient)."),
    "reject_margin": ("float", None,
                      "DM/IMAE option of this project (not the papers'): no gradient for an "
                      "example the model confidently gives to another class k, "
                      "log(p_k / (1 - p_k)) > R, unless the model is losing the labelled class "
                      "in the batch (on from the end of the warm-up). Default "
                      f"{_D['reject_margin']:g}; 0 = none (the papers' faithful gradient)."),
    "warmup_epochs": ("integer", None,
                      "DM/IMAE option of this project (not the papers'): train the first "
                      "epochs with a flat emphasis (every example weighted the same). Default: "
                      f"{_D['warmup_fraction']:g} of --epochs, rounded down. 0 = none."),
    "emphasis_ramp": ("bool", None,
                      "DM/IMAE option of this project: after the warm-up, raise the emphasis "
                      "strength linearly to its value at the last epoch instead of switching "
                      "it on at once: for a model that fits its data only in part. Default: "
                      "off."),
    "pair_margins": ("bool", None,
                     "DM/IMAE option of this project: at the end of the warm-up, estimate the "
                     "noise transition T from the model's predictions on its noisy training "
                     "set and lower --reject_margin R for each class pair whose labels are "
                     "swapped more often than average: R - log(T[k,c] / mean_j T[j,c]) for "
                     "label c and predicted class k, clipped to [0, R]."),
    "recipe": ("enum", ("auto", *recipe.RECIPES),
               "The named recipe of the defaults: 'scratch' (a network trained from scratch), "
               "'folds' (find_label_issues' fold models: DM lambda "
               f"{_D['recipes']['folds']['dm']['lam']:g}, beta "
               f"{_D['recipes']['folds']['dm']['beta']:g}, no warm-up, no pair margins) or "
               "'finetune' (a pretrained backbone: the head alone for "
               f"{_D['recipes']['finetune']['head_fraction']:g} of the epochs, then the whole "
               f"network at {_D['recipes']['finetune']['finetune_lr_factor']:g} x the rate); "
               "'auto': finetune with --model=BACKBONE --weights=..., else scratch. Settings "
               "you pass win."),
    "elr_lambda": ("float", None,
                   "Early-learning regularisation (Liu et al. 2020) on any loss: add "
                   "lambda * log(1 - <p_i, t_i>), t_i a running average of example i's own "
                   "predictions (--elr_momentum). 0 = off; the paper's: 3 (CIFAR-10), 7 "
                   "(CIFAR-100)."),
    "elr_momentum": ("float", None, "ELR: the running average's momentum beta in [0, 1)."),
    "faithful": ("bool", None,
                 "DM/IMAE exactly as the papers define them: no margin caps, no warm-up (the "
                 "same as --max_margin=0 --reject_margin=0 --warmup_epochs=0)."),
    "normalize": ("enum", ("default", "none", "batch"),
                  "Gradient normalisation over the global batch ('default': the loss's)."),
    "model": ("string", None,
              f"Architecture: {', '.join(models.ARCHITECTURES)}, or a keras.applications "
              "class name (a backbone under a new head: MobileNetV3Small, ResNet50, "
              "EfficientNetB0, ConvNeXtTiny, ...). 'auto': mlp for feature vectors and images "
              "up to 8x8, resnet20 for RGB images, cnn else."),
    "weights": ("string", None,
                "Backbones: 'imagenet' (read from Keras' cache ~/.keras/models, never "
                "downloaded) or the path of a weights file of the backbone without its top. "
                "Unset: random initialisation."),
    "image_size": ("integer", None,
                   "Backbones: the side images are resized to inside the model (default: 224 "
                   "or the family's ImageNet side with --weights=imagenet, else the data's "
                   f"side, at least {models.MIN_IMAGE_SIZE})."),
    "head_epochs": ("integer", None,
                    "Backbones with --weights: epochs that train the new head alone on the "
                    "frozen backbone before the whole network trains (default "
                    f"{_D['recipes']['finetune']['head_fraction']:g} of --epochs, rounded down; "
                    "0 without weights)."),
    "finetune_learning_rate": ("float", None,
                               "Backbones: the learning rate of the whole network after the "
                               "head epochs (default "
                               f"{_D['recipes']['finetune']['finetune_lr_factor']:g} x "
                               "--learning_rate with --weights, else --learning_rate)."),
    "epochs": ("integer", None, "Training epochs."),
    "batch_size": ("integer", None, "Global batch size."),
    "optimizer": ("enum", optimizers.OPTIMIZERS, "Optimizer."),
    "learning_rate": ("float", None, "Initial learning rate."),
    "momentum": ("float", None, f"SGD momentum (default {_D['sgd_momentum']:g})."),
    "lr_schedule": ("enum", ("none", "step", "cosine"),
                    "Learning-rate schedule ('cosine': to 0 at the end; 'step': /10 at 50% "
                    "and 75% of training)."),
    "weight_decay": ("float", None, "Weight decay: an L2 penalty on kernels for sgd/adam, "
                                    "AdamW's decoupled decay for adamw. Default: 0 for "
                                    f"sgd/adam; for adamw {_D['normalized_weight_decay']:g} * "
                                    "sqrt(batch_size / (training examples * epochs))."),
    "augment": ("enum", ("auto", "none", "cifar", "crop"),
                "Training augmentation ('auto': pad+crop+flip for CIFAR, pad+crop for SVHN and "
                "other images under a convolutional model, none for the MLP)."),
    "input_dropout": ("float", None,
                      f"Dropout rate on the input of the MLPs (default "
                      f"{_D['image_input_dropout']:g} on images, 0 on feature vectors)."),
    "validation_fraction": ("float", None,
                            "Fraction of the (noisy) training set held out for validation "
                            f"(default {_D['validation_fraction']:g} with --checkpoint=best or "
                            "--tune, else 0)."),
    "checkpoint": ("enum", recipe.CHECKPOINTS,
                   "The epoch exported: 'last', or 'best' by the plain accuracy on the noisy "
                   "validation split. Default "
                   f"{_D['checkpoint']} (best with --tune)."),
    "tune": ("bool", None,
             "Choose the loss's hyper-parameters on the noisy validation split: train each of "
             "its 4 grid points (DM: the default lambda, beta and its neighbours) under "
             "model_dir/tune/ and keep the best one's model (4 trainings' cost)."),
    "strategy": ("enum", distribute.STRATEGIES, "tf.distribute strategy."),
    "tpu": ("string", None, "TPU name or grpc:// address (strategy tpu/auto)."),
    "precision": ("enum", distribute.PRECISIONS, "Keras dtype policy."),
    "jit_compile": ("bool", None, "Compile the train step with XLA."),
    "seed": ("integer", None, "Seed of initialisation, shuffling, augmentation."),
    "model_dir": ("string", None, "Run folder (logs, checkpoints, metrics)."),
    "export_dir": ("string", None,
                   "SavedModel target (default saved_models/<model_dir name>; '' = none)."),
    "overwrite": ("bool", None,
                  "Start afresh in a --model_dir that holds a finished run (its files are "
                  "deleted). An interrupted run in --model_dir is resumed without it."),
    "verbose": ("integer", None, "Keras verbosity: 0 silent, 1 bar, 2 line."),
    "streaming": ("enum", data.STREAMING_MODES,
                  "Stream images from disk instead of decoding them into memory ('auto': "
                  "label files, TFRecords, CIFAR-N and image folders over 256 MB decoded)."),
    "max_logit_scale": ("float", None,
                        "Stop (non-zero exit, no export) when the median max |logit| on the "
                        "training set exceeds this: the logits are diverging. 0 disables."),
}

# topic -> its flags, in --help's order; absl groups flags by the module that defines them, so
# each flag is defined with its topic as ``module_name`` (--help and --helpfull show the topics).
TOPICS = {
    "data and noise": ("dataset", "data_dir", "streaming", "noise_type", "noise_rate",
                       "noise_seed", "noisy_labels", "validation_fraction", "augment"),
    "model": ("model", "weights", "image_size", "head_epochs", "finetune_learning_rate",
              "input_dropout", "seed"),
    "loss": ("loss", "recipe", "beta", "lam", "temperature", "q", "alpha", "max_margin",
             "reject_margin", "warmup_epochs", "emphasis_ramp", "pair_margins", "elr_lambda",
             "elr_momentum", "faithful", "normalize", "tune"),
    "optimisation": ("epochs", "batch_size", "optimizer", "learning_rate", "momentum",
                     "lr_schedule", "weight_decay", "max_logit_scale"),
    "run folder and export": ("model_dir", "export_dir", "overwrite", "checkpoint", "verbose"),
    "distribution": ("strategy", "tpu", "precision", "jit_compile"),
}


def define_run_flags(*, exclude=(), defaults=None, flag_values=flags.FLAGS):
    """Define one absl flag per ``RunConfig`` field, except those in ``exclude``.

    ``defaults`` overrides the dataclass defaults (e.g. a script's own validation share).
    A ``--dataset`` that no source knows fails at flag parsing with the list of sources.
    ``flag_values``: where to define them (tests parse into a fresh ``flags.FlagValues()``).
    Each flag's defining module, for absl's help, is its topic in :data:`TOPICS`.
    """
    base = {**dataclasses.asdict(RunConfig()), **(defaults or {})}
    for topic, names in TOPICS.items():
        for name in names:
            if name in exclude:
                continue
            kind, choices, text = RUN_FLAGS[name]
            fv = {"flag_values": flag_values, "module_name": topic}
            if kind == "enum":
                flags.DEFINE_enum(name, base[name], list(choices), text, **fv)
            else:
                getattr(flags, f"DEFINE_{kind}")(name, base[name], text, **fv)
    if "dataset" not in exclude:
        flags.register_validator("dataset", data.is_known_source, message=data.SOURCES_HELP,
                                 flag_values=flag_values)


def run_config(flag_values, **overrides):
    """A ``RunConfig`` from the run flags that were defined, plus ``overrides``."""
    values = {name: flag_values[name].value for name in RUN_FLAGS if name in flag_values}
    return RunConfig(**{**values, **overrides})


def quiet_logs(flag_values):
    """absl/TF INFO logs off unless ``--verbosity`` was given."""
    if "verbosity" not in flag_values or not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def check_output_file(flag, path, kind):
    """Before any work: ``--flag=path`` must be a ``kind`` file we can write -- not a folder,
    no file in its path, its nearest existing folder writable. Raises ``ValueError`` or
    ``OSError`` (one line under :func:`one_line_errors`)."""
    if os.path.isdir(path):
        raise ValueError(f"--{flag}={path!r} is a folder; expected the path of a {kind}.")
    _files.check_writable_dir(os.path.dirname(os.path.abspath(path)), f"--{flag}'s folder")


@contextlib.contextmanager
def one_line_errors(interrupted):
    """A script's body: every stop is one line on stderr, never a traceback.

    Ctrl-C exits with status 130 and SIGTERM with 143, printing ``interrupted`` (say how to
    resume); the signals are recorded and a run stops at its next safe point (before the
    next batch, after an epoch's backup, between tuning points, before an export:
    :mod:`keras_imae.run.signals`). An error of the library (``ValueError``,
    ``OSError`` and the library's own: a folder in use, bad data, a failed download, a
    collapsed run, a failed export) exits with status 1 and ``Name: message``. ``finally``
    clauses run first in every case.
    """
    try:
        with signals.deferred():
            yield
    except KeyboardInterrupt as err:
        term = isinstance(err, signals.Stopped) and err.signum == signal.SIGTERM
        print(f"Stopped ({'SIGTERM' if term else 'Ctrl-C'}). {interrupted}", file=sys.stderr)
        sys.exit(143 if term else 130)
    except (ValueError, OSError, RuntimeError) as err:
        sys.exit(f"{type(err).__name__}: {err}")
