"""What a finished run reports: ``metrics.json`` and the end-of-run table."""

import os
import time

import numpy as np

from keras_imae import noise, run_folder
from keras_imae.run import _noise

__all__ = ["format_results", "read_log", "results"]

_HISTORY_KEYS = ("test_accuracy", "train_clean_fit", "train_noisy_fit", "train_noisy_correct",
                 "loss")


def read_log(model_dir):
    """The rows of ``model_dir/log.csv``; see :meth:`RunFolder.read_log`."""
    return run_folder.RunFolder(model_dir).read_log()


def _epoch_results(model_dir):
    """Best/final test accuracy and the last epoch's exact training-set fit values, from the
    whole CSV log (complete across resumed runs)."""
    rows = read_log(model_dir)
    test = [float(r["test_accuracy"]) for r in rows]
    best = int(np.argmax(test))
    last = rows[-1]

    def value(key):
        return float(last[key]) if last.get(key) not in (None, "", "NA") else None

    return {
        "test_accuracy_best": test[best],
        "test_accuracy_best_epoch": int(rows[best]["epoch"]) + 1,
        "test_accuracy_final": test[-1],
        "train_accuracy": value("train_accuracy"),
        "clean_fit": value("train_clean_fit"),
        "noisy_fit": value("train_noisy_fit"),
        "noisy_correct": value("train_noisy_correct"),
        "history": {key: [float(r[key]) for r in rows] for key in _HISTORY_KEYS
                    if rows and key in rows[0]},
    }


def results(config, resolved, dataset, model, folder, monitor, noisy, train_ids, meta, start,
            exported):
    """The run's results dict (written to ``metrics.json``): the last epoch's values under
    their usual keys, and ``exported``, what the exported model (the last or the best epoch,
    ``resolved["checkpoint"]``) scores."""
    scores = monitor.last_train_scores  # of the exported model, by training id, in order
    train_noisy, train_clean = noisy[train_ids], dataset.y_train[train_ids]
    verified = train_clean >= 0  # label files: clean labels for a subset only
    train_is_noisy = (train_noisy != train_clean)[verified]
    quality = (noise.ranking_quality(scores[verified], train_is_noisy)
               if 0 < train_is_noisy.sum() < len(train_is_noisy) else {})
    out = {
        "dataset": dataset.name,
        "model": model.name,
        "loss": model.loss.get_config(),
        "resolved": resolved,
        "warmup_epochs": resolved["warmup_epochs"],  # flat-emphasis epochs first
        "ramp_epochs": resolved["ramp_epochs"],  # then the emphasis rises over these
        "noise_type": resolved["noise_type"],
        "noise_rate_nominal": meta.get("noise_rate"),
        "noise_rate_realised": _noise.realised_rate(noisy, dataset.y_train),
        "epochs": config.epochs,
        **_epoch_results(folder.path),
        "exported": exported,
        "mislabel_ranking": quality,
        "model_keras": os.path.abspath(folder.file(run_folder.MODEL)),
        "seconds": round(time.time() - start, 1),
    }
    last = folder.read_log()[-1]
    for key in ("val_accuracy", "val_accuracy_corrected"):  # on the *noisy* labels
        if last.get(key) not in (None, "", "NA"):  # (Keras' CSVLogger writes NA for none)
            out[f"{key}_final"] = float(last[key])
    return out


def format_results(results):
    """The end-of-run table, as text."""
    rows = [
        ("test accuracy, best (epoch)",
         f"{results['test_accuracy_best']:.4f} ({results['test_accuracy_best_epoch']})"),
        ("test accuracy, final", f"{results['test_accuracy_final']:.4f}"),
    ]
    for name, key in (("clean fit (train, clean subset)", "clean_fit"),
                      ("noisy memorisation (train, noisy subset)", "noisy_fit"),
                      ("noisy correction (train, noisy subset)", "noisy_correct")):
        if results.get(key) is not None:
            rows.append((name, f"{results[key]:.4f}"))
    if results.get("val_accuracy_final") is not None:
        rows.append(("validation accuracy on noisy labels, final",
                     f"{results['val_accuracy_final']:.4f}"))
    if results.get("val_accuracy_corrected_final") is not None:
        rows.append(("  corrected by the T estimated from the noisy labels",
                     f"{results['val_accuracy_corrected_final']:.4f}"))
    exported = results.get("exported") or {}
    if exported.get("selected_by"):
        rows.append((f"exported: epoch {exported['epoch']}, best {exported['selected_by']}",
                     f"{exported[exported['selected_by']]:.4f}"))
        for name, key in (("  its test accuracy", "test_accuracy"),
                          ("  its clean fit", "clean_fit"),
                          ("  its noisy memorisation", "noisy_fit")):
            if exported.get(key) is not None:
                rows.append((name, f"{exported[key]:.4f}"))
    rate = results["noise_rate_realised"]
    rows.append(("realised noise rate", "n/a (no clean labels)" if rate is None
                 else f"{rate:.4f}"))
    quality = results.get("mislabel_ranking") or {}
    if quality:
        rows.append(("mislabel ranking precision@k / ROC-AUC",
                     f"{quality['precision_at_k']:.4f} / {quality['roc_auc']:.4f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
