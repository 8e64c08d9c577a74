"""DM under class-dependent noise: every variant and rival on the same data, side by side.

    pip install -e ".[study]"
    python benchmarks/dm_classdep_study.py --out=/tmp/classdep        # MLP, 3 seeds (hours)
    python benchmarks/dm_classdep_study.py --out=/tmp/classdep --datasets=digits28x \
        --model=cnn --num_train=4000 --variants=dm,dm_reject0,nce_rce

Each cell is a dataset and a noise (40% symmetric, pair-flip or asymmetric, the digits class
map 2->7, 3->8, 5<->6, 7->1 for any 10-class data; or instance-dependent, ``instance`` or
``confusion``, as ``train.py --noise_type`` draws them), drawn with ``--seeds`` seeds (the seed
draws the corruption, the initialisation and the data order). Every run is
``scripts/train.py``'s: ``training.run`` with the same recipe, on the study data of
``benchmarks/study_data.py`` read back through ``--dataset=npz:``, its labels from a
``noisy_labels.npz``. A variant is a set of ``RunConfig`` overrides (:data:`VARIANTS`), so
``dm`` is whatever ``train.py --loss=dm`` does today.

Printed per cell and variant (mean over seeds, ± the standard deviation of the final
accuracy): final and best test accuracy, the drop after the best epoch, clean fit and
memorised (share of the wrong labels the final model predicts); then every variant's final
accuracy against ``--reference`` cell by cell, its losing cells named. Finished runs are
kept in ``--out`` and not run again (a study can be stopped and restarted).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import study_data  # noqa: E402

from keras_imae import callbacks, label_issues, noise, training  # noqa: E402
from keras_imae.cli import run_flags  # noqa: E402
from keras_imae.run import corrupt  # noqa: E402

# name -> RunConfig overrides. "dm" is the run default; the others change one thing. The
# variants measured before pair margins became the default (2026-12-06) keep them off.
VARIANTS = {
    "dm": {},
    "dm_nopairs": dict(pair_margins=False),  # one R for every class pair (the default before)
    "dm_reject0": dict(reject_margin=0.0),  # no rejection cap (the default before #21)
    "dm_reject1": dict(reject_margin=1.0, pair_margins=False),
    "dm_reject2": dict(reject_margin=2.0, pair_margins=False),
    "dm_reject5": dict(reject_margin=5.0, pair_margins=False),
    "dm_faithful": dict(faithful=True),  # the papers' DM (no caps, no warm-up)
    "dm_l1": dict(lam=1.0, pair_margins=False),
    "dm_b8": dict(beta=8.0, pair_margins=False),
    "dm_b8_reject0": dict(beta=8.0, reject_margin=0.0),
    "dm_beta4": dict(beta=4.0),  # the emphasis of the BatchNorm networks, pair margins on
    "dm_beta8": dict(beta=8.0),
    "dm_lam1": dict(lam=1.0),  # the emphasis's mode at p = 1/2 instead of 2/3
    "dm_lam05": dict(lam=0.5),  # ... at p = 1/3 (the papers' lam)
    "dm_mm4": dict(max_margin=4.0),  # stop every push at a margin of 4 (p = 0.982), not 16
    "dm_mm8": dict(max_margin=8.0),
    "dm_mm0": dict(max_margin=0.0),  # no margin cap: fitted examples are pushed without end
    "dm_warm0": dict(warmup_epochs=0),  # the emphasis and the caps from the first epoch
    # after the warm-up the emphasis strength rises linearly to the last epoch (opt-in)
    "dm_ramp": dict(emphasis_ramp=True),
    # exports the best epoch on 10% noisy validation; --tune: lambda, beta chosen on it
    "dm_best": dict(checkpoint="best", pair_margins=False),
    "dm_tune": dict(tune=True, checkpoint=None, pair_margins=False),
    "dm_tuned": dict(tune=True, checkpoint=None),  # --tune with every other default
    "imae": dict(loss="imae"),
    "nce_rce": dict(loss="nce_rce"),
    "gce": dict(loss="gce"),
    "sce": dict(loss="sce"),
    "cce": dict(loss="cce"),
    "mae": dict(loss="mae"),
    # early-learning regularisation (Liu et al. 2020): the baseline (cross-entropy with it) and
    # DM with it, at the paper's CIFAR-10 lambda (3) and its CIFAR-100 one (7)
    "elr": dict(loss="cce", elr_lambda=3.0),
    "dm_elr": dict(elr_lambda=3.0),
    "dm_elr1": dict(elr_lambda=1.0),
    "dm_elr7": dict(elr_lambda=7.0),
    "dm_elr15": dict(elr_lambda=15.0),
    "dm_elr10": dict(elr_lambda=10.0),
    "dm_elr30": dict(elr_lambda=30.0),
    "dm_elr7_m9": dict(elr_lambda=7.0, elr_momentum=0.9),
    "elr7": dict(loss="cce", elr_lambda=7.0),
    "forward": dict(loss="forward"),  # T estimated from the noisy labels
    "forward_best": dict(loss="forward", checkpoint="best"),
    "cce_best": dict(loss="cce", checkpoint="best"),
    "nce_rce_best": dict(loss="nce_rce", checkpoint="best"),
    # the two-stage workflow: find_label_issues.py --retrain=remove --retrain_loss=cce (its
    # 20-epoch DM detection run, then cross-entropy on the labels it keeps, 20 epochs)
    "detect_retrain": dict(epochs=label_issues.DEFAULT_EPOCHS),
}

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder of the runs and the npz data (kept; reused).")
flags.DEFINE_list("datasets", ["digits", "digits28x", "mnist1d", "tabular", "tabular_b"],
                  "digits | digits28x | mnist1d | tabular | tabular_b.")
flags.DEFINE_list("noise_types", ["pairflip", "asymmetric", "symmetric"], "Noise types.")
flags.DEFINE_list("variants", ["dm", "dm_reject0", "nce_rce", "gce", "cce"],
                  f"Among {sorted(VARIANTS)}.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_string("reference", "dm_reject0", "Variant every other is compared with.")
flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
flags.DEFINE_string("model", "mlp", "Architecture (auto: train.py's rule).")
flags.DEFINE_integer("epochs", 40, "Epochs.")
flags.DEFINE_integer("num_train", 0, "Train on the first N examples only (0: all).")
flags.DEFINE_string("checkpoint", "last", "Exported epoch: last | best (reported as 'exported').")
flags.mark_flag_as_required("out")


def _labels(dataset, noise_type, seed):
    path = os.path.join(FLAGS.out, "labels", f"{dataset.name.replace(':', '_')}_"
                        f"{len(dataset.y_train)}_{noise_type}_r{FLAGS.noise_rate:g}_{seed}.npz"
                        .replace("/", "_"))
    if os.path.exists(path):
        return path
    if noise_type in noise.INSTANCE_NOISE_TYPES:  # as train.py draws it, from the inputs
        noisy, is_noisy = corrupt(dataset, noise_type, FLAGS.noise_rate, seed)
    else:
        noisy, is_noisy = noise.corrupt_labels(dataset.y_train, dataset.num_classes, noise_type,
                                               FLAGS.noise_rate, seed, dataset="digits")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    noise.save_noisy_labels(path, noisy, is_noisy, clean=dataset.y_train)
    return path


def one_run(dataset, name, noise_type, variant, seed):
    """``metrics.json`` of one run, trained now unless it is already in ``--out``; ``None``
    when the collapse guard stopped it (recorded in ``collapsed.json``, not run again)."""
    tag = f"{FLAGS.model}_{FLAGS.num_train or 'all'}_{FLAGS.epochs}_{FLAGS.checkpoint}"
    model_dir = os.path.join(FLAGS.out, "runs", tag,
                             f"{name}_{noise_type}_r{FLAGS.noise_rate:g}_{variant}_s{seed}")
    metrics = os.path.join(model_dir, "metrics.json")
    if variant == "detect_retrain":  # the cleaned run's metrics
        metrics = os.path.join(model_dir, "retrain_cleaned", "metrics.json")
    collapsed = os.path.join(FLAGS.out, "runs", tag, "collapsed",
                             os.path.basename(model_dir) + ".json")
    if os.path.exists(collapsed):
        return None
    if not os.path.exists(metrics):
        config = training.RunConfig(
            noisy_labels=_labels(dataset, noise_type, seed), model=FLAGS.model, seed=seed,
            model_dir=model_dir, export_dir="", verbose=0, overwrite=True,
            **{"epochs": FLAGS.epochs, "checkpoint": FLAGS.checkpoint, **VARIANTS[variant]})
        if variant == "detect_retrain":
            label_issues.run(config, output_dir=model_dir, retrain="remove",
                             retrain_loss="cce", dataset=dataset, log=None)
        else:
            try:
                training.run(config, dataset=dataset)
            except callbacks.TrainingCollapsed as err:
                os.makedirs(os.path.dirname(collapsed), exist_ok=True)
                with open(collapsed, "w") as f:
                    json.dump({"collapsed": str(err)}, f)
                return None
    with open(metrics) as f:
        return json.load(f)


def _row(runs):
    """Means over the seeds that trained (``collapsed``: how many the guard stopped)."""
    collapsed = sum(r is None for r in runs)
    runs = [r for r in runs if r is not None]
    if not runs:
        return {"collapsed": collapsed}
    final = [r["test_accuracy_final"] for r in runs]
    values = {
        "final": np.mean(final), "sd": np.std(final),
        "best": np.mean([r["test_accuracy_best"] for r in runs]),
        "clean": np.mean([r["clean_fit"] for r in runs]),
        "memorised": np.mean([r["noisy_fit"] for r in runs]),
        "exported": np.mean([r["exported"]["test_accuracy"] for r in runs]),
    }
    values["drop"] = values["best"] - values["final"]
    values["collapsed"] = collapsed
    return values


def main(_):
    run_flags.quiet_logs(FLAGS)
    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"Unknown variants {unknown}; expected among {sorted(VARIANTS)}")
    seeds = [int(s) for s in FLAGS.seeds]
    table = {}
    print(f"model={FLAGS.model} epochs={FLAGS.epochs} checkpoint={FLAGS.checkpoint} "
          f"noise_rate={FLAGS.noise_rate} seeds={seeds}")
    print("| data | noise | variant | final | best | drop | clean fit | memorised | exported |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in FLAGS.datasets:
        dataset = study_data.load(name, FLAGS.out, FLAGS.num_train)
        for noise_type in FLAGS.noise_types:
            for variant in FLAGS.variants:
                runs = [one_run(dataset, name, noise_type, variant, s) for s in seeds]
                v = table[name, noise_type, variant] = _row(runs)
                if "final" not in v:
                    print(f"| {name} | {noise_type} | {variant} | collapsed ({v['collapsed']}/"
                          f"{len(seeds)}) | - | - | - | - | - |", flush=True)
                    continue
                tag = f" (collapsed {v['collapsed']}/{len(seeds)})" if v["collapsed"] else ""
                print(f"| {name} | {noise_type} | {variant}{tag} | {v['final']:.3f} ± {v['sd']:.3f} "
                      f"| {v['best']:.3f} | {v['drop']:.3f} | {v['clean']:.3f} "
                      f"| {v['memorised']:.3f} | {v['exported']:.3f} |", flush=True)
    reference = FLAGS.reference
    if reference not in FLAGS.variants:
        return
    print(f"\nFinal test accuracy minus {reference}'s, per cell (losing cells: below -0.005):")
    cells = [(d, n) for d in FLAGS.datasets for n in FLAGS.noise_types]
    for variant in FLAGS.variants:
        if variant == reference:
            continue
        # a cell where every seed collapsed counts as a loss of the whole reference accuracy
        deltas = [table[d, n, variant].get("final", 0.0) - table[d, n, reference]["final"]
                  for d, n in cells]
        losing = [f"{d}/{n} {x:+.3f}" for (d, n), x in zip(cells, deltas) if x < -0.005]
        print(f"{variant:>12}: mean {np.mean(deltas):+.3f}, min {min(deltas):+.3f}, "
              f"losing {len(losing)}/{len(cells)}" + (f" ({', '.join(losing)})" if losing else ""))


if __name__ == "__main__":
    app.run(main)
