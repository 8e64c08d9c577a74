"""Which labels are wrong? keras_imae.label_issues vs cleanlab + 5-fold logistic regression.

Both methods see the same noisy labels (``noise.corrupt_labels``, same seed) in one run:

- **cleanlab + LR** (the reference of issue #12): out-of-sample probabilities from
  ``sklearn.model_selection.cross_val_predict`` of ``StandardScaler + LogisticRegression``
  over ``StratifiedKFold(5, shuffle=True)``; flags from ``cleanlab.filter.find_label_issues``
  with its defaults (``filter_by="prune_by_noise_rate"``); ranking score ``1 -`` cleanlab's
  ``get_label_quality_scores`` (self-confidence).
- **cleanlab rule on our probabilities**: the same cleanlab call on this project's K-fold
  probabilities (separates the probabilities from the flag rule).
- **keras_imae**: ``label_issues.cross_val_probabilities`` (K folds of the robust loss,
  ``make_fit``) and ``label_issues.find_label_issues`` (score ``1 - p(given)``,
  confident-learning flags).

Data: scikit-learn's digits (1,347 training images, ``mlp``) and MNIST-1D
(``mnist1d.make_dataset``, generated offline, 80% of ``--mnist1d_samples`` for training) as
40 features (``mlp``) and as 40x1 images (``cnn``), 40% symmetric and 40% pair-flip noise. Needs the ``bench`` extra (cleanlab, mnist1d)::

    pip install -e ".[bench]"
    python benchmarks/label_issues_vs_cleanlab.py
    python benchmarks/label_issues_vs_cleanlab.py --datasets=digits --noise_types=pairflip

Prints one table (precision, recall, F1 of the flags; ROC-AUC of the score) and, per cell,
whether keras_imae's F1 and ROC-AUC are at least cleanlab + LR's (the issue's target).
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_imae import data, label_issues, noise, training  # noqa: E402
from keras_imae.training import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["digits", "mnist1d", "mnist1d_image"],
                  "digits | mnist1d (40 features, mlp) | mnist1d_image (the same signals as "
                  "40x1 one-channel images: --model=auto picks the cnn).")
flags.DEFINE_list("noise_types", ["symmetric", "pairflip"], "Noise types to corrupt with.")
flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
flags.DEFINE_integer("noise_seed", 0, "Seed of the corruption (and of the folds).")
flags.DEFINE_integer("mnist1d_samples", 15000, "MNIST-1D examples (80% train, 20% test).")
flags.DEFINE_integer("folds", label_issues.DEFAULT_FOLDS, "K of keras_imae's K-fold.")
flags.DEFINE_string("loss", "dm", "keras_imae loss (its label-issue defaults).")
flags.DEFINE_integer("epochs", label_issues.DEFAULT_EPOCHS, "Epochs per fold (keras_imae).")

_INSTALL_HINT = 'pip install -e ".[bench]"   (or: pip install cleanlab mnist1d)'


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"This benchmark needs the optional package {module!r}, which is not "
                 f"installed. Install the bench extra: {_INSTALL_HINT}")


def load(name, folder):
    """digits, or MNIST-1D generated offline and read back through the ``npz:`` source."""
    if name == "digits":
        return data.load("digits")
    if name not in ("mnist1d", "mnist1d_image"):
        raise app.UsageError("--datasets takes digits, mnist1d and mnist1d_image. "
                             f"Received: {name!r}")
    _require("mnist1d")
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset(): downloads

    args = get_dataset_args()
    args.num_samples = FLAGS.mnist1d_samples
    generated = make_dataset(args)
    # (N, 40) features for the mlp; (N, 40, 1) grey 40x1 images (the loader adds the channel).
    shape = (-1, 40) if name == "mnist1d" else (-1, 40, 1)
    path = os.path.join(folder, f"{name}.npz")
    np.savez(path, x_train=generated["x"].astype("float32").reshape(shape),
             y_train=generated["y"], x_test=generated["x_test"].astype("float32").reshape(shape),
             y_test=generated["y_test"])
    return data.load(f"npz:{path}")


def cleanlab_lr(x, noisy, seed):
    """cleanlab's flags and scores on 5-fold logistic-regression probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probs = cross_val_predict(model, x.reshape(len(x), -1).astype("float64"), noisy,
                              cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                              method="predict_proba")
    return cleanlab_rule(noisy, probs)


def cleanlab_rule(noisy, probs):
    """``(flags, scores)``: ``find_label_issues`` defaults, 1 - self-confidence quality."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(noisy, probs), 1.0 - get_label_quality_scores(noisy, probs)


def cell(dataset, noise_type):
    """The rows of one (dataset, noise) cell: method -> quality dict (+ seconds)."""
    noisy, is_noisy = noise.corrupt_labels(dataset.y_train, dataset.num_classes, noise_type,
                                           FLAGS.noise_rate, FLAGS.noise_seed,
                                           dataset=dataset.name)
    rows = {}
    start = time.time()
    flagged, scores = cleanlab_lr(dataset.x_train, noisy, FLAGS.noise_seed)
    rows["cleanlab + 5-fold LR"] = (label_issues.issue_quality(flagged, scores, is_noisy),
                                    time.time() - start)
    start = time.time()
    config = training.RunConfig(loss=FLAGS.loss, epochs=FLAGS.epochs, seed=FLAGS.noise_seed)
    probs, _ = label_issues.cross_val_probabilities(
        dataset.x_train, noisy, dataset.num_classes, fit=label_issues.make_fit(config, dataset),
        folds=FLAGS.folds, seed=FLAGS.noise_seed)
    found = label_issues.find_label_issues(noisy, probs)
    seconds = time.time() - start
    flagged, scores = cleanlab_rule(noisy, probs)
    rows["cleanlab rule, our probabilities"] = (
        label_issues.issue_quality(flagged, scores, is_noisy), seconds)
    rows[f"keras_imae ({FLAGS.loss}, {FLAGS.folds}-fold)"] = (
        label_issues.issue_quality(found.is_issue, found.scores, is_noisy), seconds)
    return rows, int(is_noisy.sum())


def main(_):
    cli.quiet_logs(FLAGS)
    _require("cleanlab")
    header = ("| data (train) | noise | wrong | method | precision | recall | F1 | ROC-AUC "
              "| s |\n|---|---|---|---|---|---|---|---|---|")
    lines, verdicts = [header], []
    with tempfile.TemporaryDirectory() as folder:
        for name in FLAGS.datasets:
            dataset = load(name, folder)
            label = f"{name} ({len(dataset.y_train)})"
            for noise_type in FLAGS.noise_types:
                rows, wrong = cell(dataset, noise_type)
                print(f"{label}, {noise_type}: done", flush=True)
                for method, (q, seconds) in rows.items():
                    lines.append(
                        f"| {label} | {FLAGS.noise_rate:.0%} {noise_type} | {wrong} | {method} "
                        f"| {q['precision']:.3f} | {q['recall']:.3f} | {q['f1']:.3f} "
                        f"| {q['roc_auc']:.3f} | {seconds:.0f} |")
                ref, ours = rows["cleanlab + 5-fold LR"][0], list(rows.values())[-1][0]
                verdicts.append(
                    f"{label}, {noise_type}: F1 {ours['f1']:.3f} vs {ref['f1']:.3f} "
                    f"({'met' if ours['f1'] >= ref['f1'] else 'MISSED'}), ROC-AUC "
                    f"{ours['roc_auc']:.3f} vs {ref['roc_auc']:.3f} "
                    f"({'met' if ours['roc_auc'] >= ref['roc_auc'] else 'MISSED'})")
    print("\n" + "\n".join(lines))
    print("\nTarget (keras_imae >= cleanlab + LR in F1 and ROC-AUC):\n" + "\n".join(verdicts))


if __name__ == "__main__":
    app.run(main)
