"""What the label-issue workflow writes: the CSV, the contact sheet, the end-of-run summary."""

import csv
import io

import numpy as np

from keras_imae import _checks as checks
from keras_imae import _files

__all__ = ["COLUMNS", "DEFAULT_NUM_SUSPECTS", "format_summary", "plot_suspects", "write_csv"]

COLUMNS = ("index", "given_label", "suggested_label", "score", "is_issue")
DEFAULT_NUM_SUSPECTS = 36


def write_csv(path, labels, issues):
    """``label_issues.csv``: columns :data:`COLUMNS`, one row per example in index order.

    ``score`` has 6 decimals, ``is_issue`` is 0/1. Written atomically.
    """
    labels = checks.label_ids(labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, (given, suggested, score, flag) in enumerate(zip(
            labels, issues.suggested_labels, issues.scores, issues.is_issue)):
        writer.writerow([i, int(given), int(suggested), f"{score:.6f}", int(flag)])
    return _files.atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _show(ax, example):
    """An image (H, W[, C]) with imshow, anything else with one non-unit axis as a curve."""
    example = np.asarray(example)
    squeezed = np.squeeze(example)
    if example.ndim == 3 and example.shape[-1] in (1, 3) and squeezed.ndim >= 2:
        image = example.astype("float64")
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray_r"
                  if image.shape[-1] == 1 else None, interpolation="nearest")
    else:
        ax.plot(squeezed.reshape(-1), linewidth=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _images_of(x, ids):
    """The examples ``ids`` of an array, or of a dataset's training split (a streamed one
    decodes just these)."""
    if not (hasattr(x, "train") and hasattr(x, "test")):
        return np.asarray(x)[ids]
    if x.in_memory:
        return x.x_train[ids]
    from keras_imae import data

    sorted_ids = np.sort(ids)
    images = np.concatenate(list(data.eval_dataset(x, ids=sorted_ids, batch_size=256)
                                 .as_numpy_iterator()))
    return images[np.searchsorted(sorted_ids, ids)]


def plot_suspects(path, x, labels, issues, *, class_names=None, num=DEFAULT_NUM_SUSPECTS):
    """A contact sheet of the ``num`` highest-scoring examples, most suspicious first.

    ``x``: the inputs (an array), or a :class:`keras_imae.data.Dataset` whose training
    examples they are (streamed: only the suspects are read). Each tile shows the example
    (images as pictures, feature vectors as curves) titled
    ``#index  given → suggested`` and the score; flagged examples are in red, unflagged
    suspects (high score, but the rule found no confident other class) in grey with
    ``given → ?``. Uses ``matplotlib.figure.Figure`` (no global backend); written atomically.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    labels = checks.label_ids(labels)
    order = np.argsort(-issues.scores, kind="stable")[: max(int(num), 1)]
    images = _images_of(x, order)
    names = class_names or [str(c) for c in range(
        int(max(labels.max(), issues.suggested_labels.max())) + 1)]
    cols = min(len(order), 6)
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(2.1 * cols, 2.3 * rows + 0.4))
    fig.suptitle("Most likely wrong labels: #index  given → suggested (score)", fontsize=10)
    for tile, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, tile + 1)
        _show(ax, images[tile])
        flagged = bool(issues.is_issue[i])
        given = names[int(labels[i])]
        suggested = names[int(issues.suggested_labels[i])] if flagged else "?"
        ax.set_title(f"#{i}  {given} → {suggested}\n({issues.scores[i]:.2f})", fontsize=8,
                     color="tab:red" if flagged else "dimgray")
    fig.tight_layout()
    return _files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100),
                              binary=True)


def format_summary(results):
    """The end-of-run text: counts, quality against the truth, retraining gain, files."""
    how = ("one robust training run, in-sample" if results["method"] == "run" else
           f"{results['folds']}-fold out-of-sample")
    lines = [f"{results['flagged']} of {results['examples']} labels flagged as issues "
             f"({how}, loss {results['loss']['name']}, {results['seconds']:.0f} s)."]
    quality = results.get("quality")
    if quality:
        lines.append(
            f"Against the true noise mask ({quality['noisy']} wrong labels): precision "
            f"{quality['precision']:.3f}, recall {quality['recall']:.3f}, F1 "
            f"{quality['f1']:.3f}, ROC-AUC {quality['roc_auc']:.3f}")
    retrained = results.get("retrain")
    if retrained:
        mode = {"remove": "flagged removed", "relabel": "flagged relabelled"}[retrained["mode"]]
        lines.append(
            f"Test accuracy (final / best, {retrained['loss']['name']}): given labels "
            f"{retrained['given']['test_accuracy_final']:.4f} / "
            f"{retrained['given']['test_accuracy_best']:.4f}; {mode} "
            f"{retrained['cleaned']['test_accuracy_final']:.4f} / "
            f"{retrained['cleaned']['test_accuracy_best']:.4f}; gain "
            f"{retrained['gain_test_accuracy_final']:+.4f} / "
            f"{retrained['gain_test_accuracy_best']:+.4f}")
    lines += [f"Wrote {path}" for path in results["files"].values()]
    return "\n".join(lines)
