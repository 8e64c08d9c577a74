"""Figures: emphasis curves w(p) (the papers' figure) and a run's per-epoch fit curves.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas directly, so
the global pyplot backend (a notebook's, say) is never changed; every function writes one PNG
and returns its path.
"""

import os

import numpy as np

from keras_imae import run_folder
from keras_imae.losses import weighting

__all__ = ["plot_emphasis", "plot_run"]


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_emphasis(path, *, dm_settings=((0.0, 8.0), (0.5, 8.0), (1.0, 8.0), (2.0, 12.0))):
    """Two panels: each loss's w(p), and DM's w(p) for several (lambda, beta).

    Curves are divided by their maximum so their shapes (where the emphasis lies) compare.
    """
    p = np.linspace(0.0, 1.0, 401).astype(np.float32)
    fig = _figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
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
    return _save(fig, path)


_RUN_CURVES = (("train_clean_fit", "clean fit (train)"),
               ("train_noisy_fit", "noisy memorisation (train)"),
               ("train_noisy_correct", "noisy correction (train)"),
               ("test_accuracy", "test accuracy"),
               ("train_rejected", "rejected by DM's cap (train)"),
               ("train_rejected_wrong", "wrong labels rejected (train)"))


_EMPHASIS_CURVES = (("train_emphasis_low", "emphasis mass, p < 0.1"),
                    ("train_emphasis_mid", "emphasis mass, 0.1 <= p <= 0.9"),
                    ("train_emphasis_high", "emphasis mass, p > 0.9"))


def plot_run(model_dir, path=None):
    """A run's per-epoch curves, from ``model_dir/log.csv`` (written by a training run).

    Left: clean fit, noisy memorisation, noisy correction, test accuracy and, for DM with
    its rejection cap, the share of examples the cap rejects (all, and of the wrong labels).
    Right: the logit scale (median max |logit|, log axis; a steady climb means the logits
    diverge) and, for losses with an emphasis density, where the emphasis mass sits by p band.

    Raises:
        FileNotFoundError: no ``log.csv`` in ``model_dir``.
        ValueError: a cell of ``log.csv`` is not a number (``NA`` is accepted), naming the
            line and the column.
    """
    rows = run_folder.RunFolder(model_dir).read_log()
    fig = _figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)

    def value(i, key):
        cell = rows[i].get(key) or "NA"  # a column a resumed run's version did not log: NA
        try:
            return float("nan" if cell == "NA" else cell)
        except ValueError:
            raise ValueError(f"{os.path.join(model_dir, run_folder.LOG)!r}, line {i + 2}: "
                             f"column {key!r} holds {cell!r}, not a number.") from None

    epochs = [value(i, "epoch") + 1 for i in range(len(rows))]

    def curve(ax, key, label, **style):
        if rows and rows[0].get(key, "") != "":
            ax.plot(epochs, [value(i, key) for i in range(len(rows))], label=label, **style)
            return True
        return False

    for key, label in _RUN_CURVES:
        curve(left, key, label)
    left.set(xlabel="epoch", ylabel="fraction", ylim=(0, 1),
             title=os.path.basename(os.path.normpath(model_dir)))
    if curve(right, "train_logit_scale", "logit scale (median max |z|)", color="black",
             linestyle="--"):
        right.set_yscale("log")
    right.set(xlabel="epoch", ylabel="logit scale", title="Saturation and emphasis")
    twin = right.twinx()
    drawn = [curve(twin, key, label) for key, label in _EMPHASIS_CURVES]
    twin.set(ylabel="share of emphasis", ylim=(0, 1))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    handles = right.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    if handles:
        right.legend(handles=handles, fontsize=7, loc="center right")
    if not any(drawn):
        twin.set_visible(False)
    return _save(fig, path or os.path.join(model_dir, "fit_curves.png"))
