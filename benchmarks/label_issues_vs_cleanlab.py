"""Which labels are wrong? keras_imae against cleanlab on the same deep model, side by side.

    pip install -e ".[bench]"
    python benchmarks/label_issues_vs_cleanlab.py                 # every cell (an hour or more)
    python benchmarks/label_issues_vs_cleanlab.py --datasets=digits --noise_types=pairflip

Every method sees the same noisy labels (``noise.corrupt_labels``, same seed) in one cell:

- **keras_imae (run)**: ``label_issues.run(method="run")``, what ``scripts/find_label_issues.py``
  does by default: one robust training run on every label (``train.py``'s recipe: DM,
  translation or input dropout, the warm-up), its final model's probabilities of its own
  training examples, confident learning's flags.
- **keras_imae (K-fold)** (``--methods=run,kfold``): K robust fold models, out-of-sample.
- **cleanlab + K-fold CCE**: the rival a cleanlab user with a Keras model would run:
  out-of-sample probabilities of the *same* model and recipe trained with cross-entropy
  (``--loss=cce``), K folds, then ``cleanlab.filter.find_label_issues`` with its defaults and
  the score ``1 -`` cleanlab's self-confidence.
- **cleanlab + K-fold LR**: the same with ``StandardScaler + LogisticRegression`` on pixels.

Data (``benchmarks/study_data.py``, generated offline): ``digits`` (1,347, the MLP),
``mnist1d`` (12,000 signals, the MLP), ``tabular`` (12,000, the MLP) and ``digits28x``
(28x28 images, the CNN with translated inputs; ``--digits28x_train`` of them, 4,000 by default
as in issue #24). Noise: 40% symmetric, pair-flip and asymmetric (the digits class map
2->7, 3->8, 5<->6, 7->1, for any 10-class data).

Prints one table: precision, recall, F1 of the flags, ROC-AUC of the score, seconds, and the
seconds in units of one training run of the same model and epochs (the run method's own
training); then, per cell, whether keras_imae's default meets cleanlab + CCE's F1 and ROC-AUC.
"""

import dataclasses
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study_data  # noqa: E402

from keras_imae import label_issues, noise, training  # noqa: E402
from keras_imae.cli import run_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["digits", "mnist1d", "tabular", "digits28x"],
                  "digits | mnist1d | tabular | digits28x | tabular_b.")
flags.DEFINE_list("noise_types", ["symmetric", "pairflip", "asymmetric"], "Noise types.")
flags.DEFINE_list("methods", ["run"], "keras_imae methods: run and/or kfold.")
flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
flags.DEFINE_integer("seed", 0, "Seed of the corruption, the folds and the models.")
flags.DEFINE_integer("folds", 5, "K of every K-fold method.")
flags.DEFINE_integer("epochs", 20, "Epochs of every training (a run, or a fold model).")
flags.DEFINE_integer("digits28x_train", 4000, "Training images of digits28x (first N).")
flags.DEFINE_string("data_dir", None, "Folder of the generated npz files (default: temporary).")
flags.DEFINE_string("output", None, "Markdown file for the table.")
flags.DEFINE_bool("pair_margins", None, "DM's per-pair rejection margins in the run "
                  "(default: the recipe's; --nopair_margins: one margin for every pair).")


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"This benchmark needs {module!r}: pip install -e \".[bench]\"")


def _cleanlab(noisy, probs):
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(noisy, probs), 1.0 - get_label_quality_scores(noisy, probs)


def _logistic_probabilities(dataset, noisy):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = dataset.x_train.reshape(len(noisy), -1).astype("float64")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(model, x, noisy, method="predict_proba",
                             cv=StratifiedKFold(FLAGS.folds, shuffle=True, random_state=FLAGS.seed))


def cell(dataset, noise_type, folder):
    """``{method: (quality, seconds)}`` of one (dataset, noise) cell, and the wrong labels."""
    noisy, is_noisy = noise.corrupt_labels(dataset.y_train, dataset.num_classes, noise_type,
                                           FLAGS.noise_rate, FLAGS.seed, dataset="digits")
    labels_file = noise.save_noisy_labels(os.path.join(folder, "noisy.npz"), noisy, is_noisy,
                                          clean=dataset.y_train)
    base = training.RunConfig(noisy_labels=labels_file, epochs=FLAGS.epochs, seed=FLAGS.seed,
                              verbose=0, pair_margins=FLAGS.pair_margins)
    rows, one_training = {}, None
    for method in FLAGS.methods:
        start = time.time()
        result = label_issues.run(base, output_dir=os.path.join(folder, method), method=method,
                                  folds=FLAGS.folds, dataset=dataset, log=None)
        seconds = time.time() - start
        if method == "run":  # the run's own training: the unit of cost
            with open(os.path.join(folder, "run", "run", "metrics.json")) as f:
                one_training = json.load(f)["seconds"]
        name = "keras_imae (run)" if method == "run" else f"keras_imae ({FLAGS.folds}-fold)"
        rows[name] = (result["quality"], seconds)
    start = time.time()
    result = label_issues.run(dataclasses.replace(base, loss="cce", pair_margins=None),
                              output_dir=os.path.join(folder, "cce"), method="kfold",
                              folds=FLAGS.folds, dataset=dataset, log=None)
    flagged, scores = _cleanlab(noisy, result["probs"])
    rows[f"cleanlab + {FLAGS.folds}-fold CCE"] = (
        label_issues.issue_quality(flagged, scores, is_noisy), time.time() - start)
    start = time.time()
    flagged, scores = _cleanlab(noisy, _logistic_probabilities(dataset, noisy))
    rows[f"cleanlab + {FLAGS.folds}-fold LR"] = (
        label_issues.issue_quality(flagged, scores, is_noisy), time.time() - start)
    return rows, int(is_noisy.sum()), one_training


def main(_):
    run_flags.quiet_logs(FLAGS)
    _require("cleanlab")
    header = ("| data (train) | noise | wrong | method | precision | recall | F1 | ROC-AUC | s "
              "| trainings |\n|---|---|---|---|---|---|---|---|---|---|")
    lines, verdicts = [header], []
    folder = FLAGS.data_dir or tempfile.mkdtemp(prefix="label_issues_")
    for name in FLAGS.datasets:
        dataset = study_data.load(name, folder, FLAGS.digits28x_train if name == "digits28x" else 0)
        label = f"{name} ({len(dataset.y_train)})"
        for noise_type in FLAGS.noise_types:
            with tempfile.TemporaryDirectory() as work:
                rows, wrong, one = cell(dataset, noise_type, work)
            for method, (q, seconds) in rows.items():
                units = f"{seconds / one:.1f}" if one and "LR" not in method else "-"
                lines.append(
                    f"| {label} | {FLAGS.noise_rate:.0%} {noise_type} | {wrong} | {method} "
                    f"| {q['precision']:.3f} | {q['recall']:.3f} | {q['f1']:.3f} "
                    f"| {q['roc_auc']:.3f} | {seconds:.0f} | {units} |")
            print("\n".join(lines[-len(rows):]), flush=True)
            ours = next(iter(rows.values()))[0]  # the first method asked for: the default
            rival = rows[f"cleanlab + {FLAGS.folds}-fold CCE"][0]
            verdicts.append(
                f"{label}, {noise_type}: F1 {ours['f1']:.3f} vs {rival['f1']:.3f} "
                f"({'met' if ours['f1'] >= rival['f1'] else 'MISSED'}), ROC-AUC "
                f"{ours['roc_auc']:.3f} vs {rival['roc_auc']:.3f} "
                f"({'met' if ours['roc_auc'] >= rival['roc_auc'] else 'MISSED'})")
            if FLAGS.output:
                with open(FLAGS.output, "w") as f:
                    f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
    print(f"\nTarget (keras_imae's default >= cleanlab + {FLAGS.folds}-fold CCE in F1 and "
          "ROC-AUC):\n" + "\n".join(verdicts))


if __name__ == "__main__":
    app.run(main)
