r"""Find the wrong labels of a training set: robust probabilities + confident learning's flags.

With no flags: the digits demo with 40 percent symmetric noise (the same data and noise flags
as train.py); one robust DM training run of 20 epochs on every label, then its probabilities
of its own training examples (--method=kfold: K out-of-sample fold models instead). Examples:

    keras-imae-find-label-issues
    keras-imae-find-label-issues --noise_type=pairflip --retrain=remove
    keras-imae-find-label-issues --noisy_labels=runs/digits_dm     # train.py's noise
    keras-imae-find-label-issues --dataset=npz:mine.npz          # your own labels
    keras-imae-find-label-issues --dataset=labels:/data/photos   # streamed, as given

Writes into --output_dir: label_issues.csv (index,given_label,suggested_label,score,is_issue),
label_issues.png (the top suspects), and when the true labels are known noisy_labels.npz and
summary.json (precision, recall, F1, ROC-AUC). See docs/label_issues.md.
"""

from absl import flags

from keras_imae import label_issues, losses
from keras_imae.cli import run_flags

FLAGS = flags.FLAGS
# Run flags that do not apply: the training runs write into --output_dir (run/, retrain_*/).
_NOT_USED = ("strategy", "tpu", "precision", "jit_compile", "model_dir", "export_dir",
             "overwrite")


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    own = {**fv, "module_name": "label issues"}  # its --help topic
    run_flags.define_run_flags(exclude=_NOT_USED, defaults={"epochs": label_issues.DEFAULT_EPOCHS},
                         **fv)
    flags.DEFINE_enum("method", "run", list(label_issues.METHODS),
                      "'run': one robust training run on every label, scoring its own "
                      "training examples (one training's cost); 'kfold': K fold models, each "
                      "scoring the examples it did not see (K-1 trainings' cost).", **own)
    flags.DEFINE_integer("folds", label_issues.DEFAULT_FOLDS,
                         "K of --method=kfold: each example is scored by a model trained on "
                         "the other K-1 folds.", **own)
    flags.DEFINE_string("output_dir", "runs/label_issues", "Folder for the outputs.", **own)
    flags.DEFINE_enum("retrain", "none", list(label_issues.RETRAIN_MODES),
                      "Afterwards, train on the given labels and on the cleaned ones (flagged "
                      "examples removed or relabelled) and report the test-accuracy gain.", **own)
    flags.DEFINE_enum("retrain_loss", None, list(losses.LOSSES),
                      "Loss of the --retrain runs, with its own defaults (default: --loss with "
                      "train.py's defaults).", **own)
    flags.DEFINE_integer("num_suspects", label_issues.DEFAULT_NUM_SUSPECTS,
                         "Examples on the contact sheet.", **own)


def main(_):
    run_flags.quiet_logs(FLAGS)
    config = run_flags.run_config(FLAGS)
    options = dict(method=FLAGS.method, folds=FLAGS.folds, retrain=FLAGS.retrain,
                   retrain_loss=FLAGS.retrain_loss)
    with run_flags.one_line_errors("Nothing final was written; run the command again."):
        label_issues.validate(config, output_dir=FLAGS.output_dir,
                              **options)  # a bad setting: one line, status 1
        results = label_issues.run(config, output_dir=FLAGS.output_dir,
                                   num_suspects=FLAGS.num_suspects, **options)
    print(label_issues.format_summary(results))
