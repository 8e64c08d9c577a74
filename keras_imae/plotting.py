"""Figures: emphasis curves w(p) (the papers' figure) and a run's per-epoch fit curves.

Uses matplotlib's non-interactive Agg backend; every function writes one PNG and returns
its path.
"""

import os

import numpy as np

from keras_imae import training, weighting

__all__ = ["plot_emphasis", "plot_run"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_emphasis(path, *, dm_settings=((0.0, 8.0), (0.5, 8.0), (1.0, 8.0), (2.0, 12.0))):
    """Two panels: each loss's w(p), and DM's w(p) for several (lambda, beta).

    Curves are divided by their maximum so their shapes (where the emphasis lies) compare.
    """
    plt = _pyplot()
    p = np.linspace(0.0, 1.0, 401).astype(np.float32)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    curves = {
        "CCE": weighting.cce(p), "MAE": weighting.mae(p), "GCE q=0.7": weighting.gce(p, q=0.7),
        "SCE a=0.1 b=1": weighting.sce(p, alpha=0.1, beta=1.0),
        "IMAE T=8": weighting.imae(p, temperature=8.0),
        "DM lam=0.5 b=8": weighting.dm(p, beta=8.0, lam=0.5),
    }
    for label, w in curves.items():
        w = np.asarray(w)
        left.plot(p, w / w.max(), label=label)
    for lam, beta in dm_settings:
        w = np.asarray(weighting.dm(p, beta=beta, lam=lam))
        right.plot(p, w / w.max(), label=f"lam={lam:g}, beta={beta:g}")
    for ax, title in ((left, "Emphasis w(p) of each loss"), (right, "DM emphasis density")):
        ax.set(xlabel="p (probability of the labelled class)", ylabel="w(p) / max w",
               title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    path = _save(fig, path)
    plt.close(fig)
    return path


_RUN_CURVES = (("train_clean_fit", "clean fit (train)"),
               ("train_noisy_fit", "noisy memorisation (train)"),
               ("train_noisy_correct", "noisy correction (train)"),
               ("test_accuracy", "test accuracy"))


def plot_run(model_dir, path=None):
    """Per-epoch clean fit, noisy memorisation, noisy correction and test accuracy.

    Reads ``model_dir/log.csv`` (written by ``keras_imae.training.run``).

    Raises:
        FileNotFoundError: no ``log.csv`` in ``model_dir``.
    """
    rows = training.read_log(model_dir)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for key, label in _RUN_CURVES:
        if rows and key in rows[0]:
            ax.plot(epochs, [float(r[key]) for r in rows], label=label)
    ax.set(xlabel="epoch", ylabel="fraction", ylim=(0, 1),
           title=os.path.basename(os.path.normpath(model_dir)))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = _save(fig, path or os.path.join(model_dir, "fit_curves.png"))
    plt.close(fig)
    return path
