r"""Train a classifier on noisily labelled data and report what it fits.

With no flags: DM on the embedded digits dataset (scikit-learn), into whose training labels the
demo draws 40 percent symmetric noise, an MLP, under a minute on a laptop CPU. Your own data is
never corrupted unless --noise_type asks for it. Examples:

    python scripts/train.py
    python scripts/train.py --loss=cce --model_dir=runs/digits_cce
    python scripts/train.py --dataset=npz:mine.npz --model_dir=runs/mine     # your labels
    python scripts/train.py --dataset=cifar10 --noise_type=symmetric --noise_rate=0.4 \
        --loss=dm --model=resnet56 --epochs=120 --batch_size=128 \
        --lr_schedule=step --strategy=mirrored --model_dir=runs/c10_dm
    python scripts/train.py --flagfile=my_run.flags

Prints the settings it resolved, the realised noise, Keras progress bars with clean_fit /
noisy_fit / noisy_correct, then a results table; writes metrics.json, log.csv, TensorBoard logs and model.keras into
--model_dir and a SavedModel into saved_models/<run name>/ (or --export_dir).
Exits with status 1 and a one-line reason when the run cannot start or must stop (a bad flag,
data it cannot train on, a folder another run is using, a collapsed run); nothing is
exported then.
"""
# absl %-formats this docstring for --help: write a percent sign as %% (or in words).

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags

from keras_imae import callbacks, data, training
from keras_imae.training import cli

FLAGS = flags.FLAGS
# Why a run could not start or had to stop, each explained by its message: no traceback.
_STOPPED = (training.RunLocked, callbacks.TrainingCollapsed, data.DataError,
            data.DownloadFailed)


def define_flags(flag_values=flags.FLAGS):
    cli.define_run_flags(flag_values=flag_values)


def main(_):
    cli.quiet_logs(FLAGS)
    config = cli.run_config(FLAGS)
    try:
        try:
            training.validate(config)  # RunLocked too, for a folder in use
        except ValueError as err:
            raise app.UsageError(str(err)) from None
        results = training.run(config)
    except _STOPPED as err:
        sys.exit(f"{type(err).__name__}: {err}")
    print(training.format_results(results))
    print(f"Wrote {config.model_dir}/metrics.json"
          + (f" and the SavedModel {results['saved_model']}" if "saved_model" in results
             else ""))


if __name__ == "__main__":
    define_flags()
    app.run(main)
