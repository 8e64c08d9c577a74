"""Which epoch each selection score would export, read from finished runs' own logs.

A run that holds out noisy labels (``--checkpoint=best``, ``--tune``, ``compare.py``) logs,
every epoch, the plain accuracy on them (``val_accuracy``) and, where the ``T`` estimated from
the noisy labels is usable, that accuracy corrected by it (``val_accuracy_corrected``), next to
the test accuracy. So for every such run under ``--runs`` (searched recursively for
``log.csv``) this prints the test accuracy at the epoch each score would export (the
earliest best, as ``--checkpoint=best`` does), the last epoch's, and the highest corrected
score (above 1: the estimate over-states the noise); then the means over the runs and how
often the corrected choice is ahead of or behind the plain one.

    python benchmarks/selection_rules.py --runs=runs/compare
"""

import csv
import glob
import os

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", "runs", "Folder searched recursively for runs' log.csv.")


def _column(rows, key):
    return np.array([float(r[key]) for r in rows], "float64")


def choices(rows):
    """``(last, plain, corrected, highest corrected)``: test accuracy at the last epoch and at
    the epoch each score exports, from a run's log rows; ``None`` without both scores."""
    if not rows or not rows[0].get("val_accuracy_corrected"):
        return None
    test = _column(rows, "test_accuracy")
    plain, corrected = _column(rows, "val_accuracy"), _column(rows, "val_accuracy_corrected")
    return test[-1], test[np.argmax(plain)], test[np.argmax(corrected)], corrected.max()


def main(_):
    found = []
    for log in sorted(glob.glob(os.path.join(FLAGS.runs, "**", "log.csv"), recursive=True)):
        with open(log) as f:
            chosen = choices(list(csv.DictReader(f)))
        if chosen is not None:
            found.append(chosen)
            print(f"{os.path.relpath(os.path.dirname(log), FLAGS.runs)}: last {chosen[0]:.3f}, "
                  f"plain {chosen[1]:.3f}, corrected {chosen[2]:.3f}, "
                  f"highest corrected {chosen[3]:.2f}")
    print(f"runs with both scores: {len(found)}")
    if found:
        last, plain, corrected, highest = np.transpose(found)
        print(f"mean test accuracy exported: last {last.mean():.4f}, plain {plain.mean():.4f}, "
              f"corrected {corrected.mean():.4f}; corrected ahead of plain in "
              f"{(corrected > plain).sum()}, behind in {(corrected < plain).sum()}; highest "
              f"corrected score above 1 in {(highest > 1).sum()}")


if __name__ == "__main__":
    app.run(main)
