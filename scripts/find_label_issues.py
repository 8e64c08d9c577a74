r"""Find the wrong labels of a training set: out-of-sample K-fold probabilities + a flag rule.

With no flags: the digits demo with 40 percent symmetric noise (the same data and noise flags
as train.py),
5 folds of DM (lambda=2, beta=8), 20 epochs each. Examples:

    python scripts/find_label_issues.py
    python scripts/find_label_issues.py --noise_type=pairflip --retrain=remove
    python scripts/find_label_issues.py --noisy_labels=runs/digits_dm     # train.py's noise
    python scripts/find_label_issues.py --dataset=npz:mine.npz                   # your data

Writes into --output_dir: label_issues.csv (index,given_label,suggested_label,score,is_issue),
label_issues.png (the top suspects), and when the true labels are known noisy_labels.npz and
summary.json (precision, recall, F1, ROC-AUC). See keras_imae/label_issues.py.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags

from keras_imae import label_issues, losses
from keras_imae.training import cli

FLAGS = flags.FLAGS
# Run flags that do not apply: one process trains the fold models in turn and writes only
# --output_dir (retraining runs go to --output_dir/retrain_*).
_NOT_USED = ("validation_fraction", "strategy", "tpu", "precision", "jit_compile", "model_dir",
             "export_dir", "overwrite", "verbose")


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    cli.define_run_flags(exclude=_NOT_USED, defaults={"epochs": label_issues.DEFAULT_EPOCHS},
                         **fv)
    flags.DEFINE_integer("folds", label_issues.DEFAULT_FOLDS,
                         "K: each example is scored by a model trained on the other K-1 folds.",
                         **fv)
    flags.DEFINE_string("output_dir", "runs/label_issues", "Folder for the outputs.", **fv)
    flags.DEFINE_enum("retrain", "none", list(label_issues.RETRAIN_MODES),
                      "Afterwards, train on the given labels and on the cleaned ones (flagged "
                      "examples removed or relabelled) and report the test-accuracy gain.", **fv)
    flags.DEFINE_enum("retrain_loss", None, list(losses.LOSSES),
                      "Loss of the --retrain runs, with its own defaults (default: --loss with "
                      "train.py's defaults).", **fv)
    flags.DEFINE_integer("num_suspects", label_issues.DEFAULT_NUM_SUSPECTS,
                         "Examples on the contact sheet.", **fv)

def main(_):
    cli.quiet_logs(FLAGS)
    config = cli.run_config(FLAGS)
    options = dict(folds=FLAGS.folds, retrain=FLAGS.retrain, retrain_loss=FLAGS.retrain_loss)
    try:
        label_issues.validate(config, **options)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    with cli.one_line_errors("Nothing was written; run the command again to start over."):
        results = label_issues.run(config, output_dir=FLAGS.output_dir,
                                   num_suspects=FLAGS.num_suspects, **options)
    print(label_issues.format_summary(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)
