r"""Train a classifier on noisily labelled data and report what it fits.

With no flags: DM on the embedded digits dataset (scikit-learn) with 40% symmetric noise,
an MLP, a couple of minutes on a laptop CPU. Examples:

    python scripts/train.py
    python scripts/train.py --loss=cce --model_dir=runs/digits_cce
    python scripts/train.py --dataset=cifar10 --noise_type=symmetric --noise_rate=0.4 \
        --loss=dm --lam=1 --beta=16 --model=resnet56 --epochs=120 --batch_size=128 \
        --lr_schedule=step --strategy=mirrored --model_dir=runs/c10_dm
    python scripts/train.py --flagfile=my_run.flags

Prints the realised noise, Keras progress bars with clean_fit / noisy_fit / noisy_correct,
then a results table; writes metrics.json, log.csv, TensorBoard logs and model.keras into
--model_dir and a SavedModel into saved_models/<run name>/ (or --export_dir).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

import dataclasses

from absl import app, flags, logging

from keras_imae import data, distribute, losses, models, training

FLAGS = flags.FLAGS
_DEFAULTS = training.RunConfig()


def define_flags():
    d = _DEFAULTS
    flags.DEFINE_string("dataset", d.dataset,
                        "'digits' (embedded), a TFDS name (mnist, cifar10, cifar100, ...), "
                        "'npz:PATH' or 'folder:PATH'.")
    flags.DEFINE_string("data_dir", d.data_dir, "TFDS data directory.")
    flags.DEFINE_enum("noise_type", d.noise_type, list(training.NOISE_TYPES),
                      "How training labels are corrupted.")
    flags.DEFINE_float("noise_rate", d.noise_rate, "Fraction of training labels corrupted.")
    flags.DEFINE_integer("noise_seed", d.noise_seed, "Seed of the corruption.")
    flags.DEFINE_string("noisy_labels", d.noisy_labels,
                        "Reuse the corruption saved in this noisy_labels.npz (or run folder).")
    flags.DEFINE_enum("loss", d.loss, list(losses.LOSSES), "Loss function.")
    flags.DEFINE_float("beta", d.beta, "DM emphasis strength (also SCE/NCE+RCE beta).")
    flags.DEFINE_float("lam", d.lam, "DM emphasis mode parameter lambda.")
    flags.DEFINE_float("temperature", d.temperature, "IMAE temperature T.")
    flags.DEFINE_float("q", d.q, "GCE q.")
    flags.DEFINE_float("alpha", d.alpha, "SCE / NCE+RCE alpha.")
    flags.DEFINE_enum("normalize", d.normalize, ["default", "none", "batch"],
                      "Gradient normalisation over the global batch ('default': the loss's).")
    flags.DEFINE_enum("model", d.model, ["auto", *models.ARCHITECTURES],
                      "Architecture ('auto': mlp for tiny/tabular inputs, resnet20 for RGB, "
                      "cnn else).")
    flags.DEFINE_integer("epochs", d.epochs, "Training epochs.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size.")
    flags.DEFINE_enum("optimizer", d.optimizer, ["sgd", "adam"], "Optimizer.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Initial learning rate.")
    flags.DEFINE_float("momentum", d.momentum, "SGD momentum (default 0.9; not for Adam).")
    flags.DEFINE_enum("lr_schedule", d.lr_schedule, ["none", "step", "cosine"],
                      "Learning-rate schedule ('step': /10 at 50% and 75% of training).")
    flags.DEFINE_float("weight_decay", d.weight_decay, "L2 weight decay on kernels.")
    flags.DEFINE_enum("augment", d.augment, ["auto", "none", "cifar", "crop"],
                      "Training augmentation ('auto': pad+crop+flip for CIFAR, none else).")
    flags.DEFINE_float("validation_fraction", d.validation_fraction,
                       "Fraction of the (noisy) training set held out for validation.")
    flags.DEFINE_enum("strategy", d.strategy, list(distribute.STRATEGIES),
                      "tf.distribute strategy.")
    flags.DEFINE_string("tpu", d.tpu, "TPU name or grpc:// address (strategy tpu/auto).")
    flags.DEFINE_enum("precision", d.precision, list(distribute.PRECISIONS),
                      "Keras dtype policy.")
    flags.DEFINE_bool("jit_compile", d.jit_compile, "Compile the train step with XLA.")
    flags.DEFINE_integer("seed", d.seed, "Seed of initialisation, shuffling, augmentation.")
    flags.DEFINE_string("model_dir", d.model_dir, "Run folder (logs, checkpoints, metrics).")
    flags.DEFINE_bool("overwrite", d.overwrite,
                      "Start afresh in a --model_dir that holds a finished run (its files are "
                      "deleted). An interrupted run in --model_dir is resumed without it.")
    flags.DEFINE_string("export_dir", d.export_dir,
                        "SavedModel target (default saved_models/<model_dir name>; '' = none).")
    flags.DEFINE_integer("verbose", d.verbose, "Keras verbosity: 0 silent, 1 bar, 2 line.")
    flags.register_validator("dataset", data.is_known_source, message=data.SOURCES_HELP)


def main(_):
    if not FLAGS["verbosity"].present:  # absl/TF INFO logs off unless --verbosity is given
        logging.set_verbosity(logging.WARNING)
    config = training.RunConfig(**{f.name: FLAGS[f.name].value
                                   for f in dataclasses.fields(training.RunConfig)})
    try:
        training.validate(config)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    results = training.run(config)
    print(training.format_results(results))
    print(f"Wrote {config.model_dir}/metrics.json"
          + (f" and the SavedModel {results['saved_model']}" if "saved_model" in results
             else ""))


if __name__ == "__main__":
    define_flags()
    app.run(main)
