r"""Train a classifier on noisily labelled data and report what it fits.

With no flags: DM on the embedded digits dataset (scikit-learn), into whose training labels the
demo draws 40 percent symmetric noise, an MLP, under a minute on a laptop CPU. Your own data is
never corrupted unless --noise_type asks for it. Examples (python scripts/train.py is the same
program as keras-imae-train):

    keras-imae-train
    keras-imae-train --loss=cce --model_dir=runs/digits_cce
    keras-imae-train --dataset=npz:mine.npz --model_dir=runs/mine     # your labels
    keras-imae-train --dataset=cifar10 --noise_type=symmetric --noise_rate=0.4 \
        --loss=dm --model=resnet56 --epochs=120 --batch_size=128 \
        --lr_schedule=step --strategy=mirrored --model_dir=runs/c10_dm
    keras-imae-train --flagfile=my_run.flags

Prints the settings it resolved, the realised noise, a Keras progress bar per epoch with the
loss, accuracy, clean_fit, noisy_fit (memorised) and test_accuracy (--verbose=2: every
metric), then a results table; writes config.json, metrics.json, log.csv, TensorBoard logs and
model.keras into --model_dir and a SavedModel into saved_models/<run name>/ (or --export_dir).
The same command again after the run finished prints its results and exits with status 0.
Exits with status 1 and a one-line reason when the run cannot start or must stop (a bad flag,
data it cannot train on, a folder another run is using, a collapsed run, a full disk, a failed
export); nothing is exported then. Ctrl-C (status 130) or SIGTERM (143) stop it cleanly: run
the same command again to resume.
"""
# absl %-formats this docstring for --help: write a percent sign as %% (or in words).

from absl import flags

from keras_imae.cli import run_flags
from keras_imae.config import finished_results
from keras_imae.run import format_results, run

FLAGS = flags.FLAGS
_INTERRUPTED = "Run the same command again to resume from the last finished epoch."


def define_flags(flag_values=flags.FLAGS):
    run_flags.define_run_flags(flag_values=flag_values)


def main(_):
    run_flags.quiet_logs(FLAGS)
    config = run_flags.run_config(FLAGS)
    done = finished_results(config)
    if done is not None:  # the same command again, after the run finished
        print(format_results(done))
        print(f"{config.model_dir} already holds this run, finished: nothing to train "
              "(--overwrite trains it again).")
        return
    with run_flags.one_line_errors(_INTERRUPTED):  # a bad setting: one line, status 1 (run()
        results = run(config)         # validates first); RunLocked too
    print(format_results(results))
    print(f"Wrote {config.model_dir}/metrics.json"
          + (f" and the SavedModel {results['saved_model']}" if "saved_model" in results
             else ""))
