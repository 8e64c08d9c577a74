"""Fine-tuning a pretrained backbone on noisy labels, offline: which loss holds, in which phase.

    python benchmarks/finetune_study.py --out=/tmp/finetune            # 1 seed, ~30 min, 2 cores
    python benchmarks/finetune_study.py --out=/tmp/finetune --seeds=0,1,2 --noises=pairflip
    python benchmarks/finetune_study.py --out=/tmp/finetune --starts=pretrained \
        --losses=dm,dm_reject0,dm_nopairs,dm_b16,dm_warm0,gce

Nothing can be downloaded here, so the pretrained network is made by the study: a
``keras.applications`` backbone (``--backbone``, at 32x32) is trained with cross-entropy on the
clean labels of the digits of classes 0-4 (``--pretrain_epochs``), its BatchNorm statistics
are set to those of that data, and it is saved without its top, as a user's weights file.
Every run then fine-tunes it on the *other* classes, 5-9 (relabelled 0-4), whose training
labels get 40% noise (symmetric, pair-flip, instance-dependent), with ``training.run`` --
what ``keras-imae-train --model=BACKBONE --weights=FILE --loss=LOSS`` does, every other
setting at its default (the head alone for the first quarter of the epochs, then the whole
network at a tenth of the learning rate). The same network trained from random
initialisation (``scratch``) is the reference.

Printed per noise, start (pretrained or scratch) and loss: test accuracy, clean fit and
memorised (the share of the wrong labels the model predicts) at the end of the head phase and
at the end of the run, and the best test accuracy. A run the collapse guard stops (constant
predictions) is reported as collapsed. Below the table, each loss's final test accuracy
minus ``--reference``'s, paired by seed (the same seed draws the same noise): the mean, its
standard error over the seeds, and the cells where it differs by more than two of them.
Finished runs are kept in ``--out`` and not run again.

``--losses`` takes loss names, ``elr`` (cross-entropy with early-learning regularisation, as
``compare.py`` runs it) and the DM variants of :data:`VARIANTS` (which of DM's recipe parts
hold for a pretrained network). ``--reverse`` swaps the two halves (pretrain on 5-9,
fine-tune on 0-4): a second fine-tuning task, to verify what was tuned on the first (use
another ``--out``).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import numpy as np  # noqa: E402

from keras_imae import data, training  # noqa: E402
from keras_imae.callbacks import TrainingCollapsed  # noqa: E402
from keras_imae.run import comparison  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder of the study's data, weights and runs.", required=True)
flags.DEFINE_string("backbone", "MobileNetV3Small", "keras.applications class name.")
flags.DEFINE_integer("pretrain_epochs", 15, "Cross-entropy epochs on classes 0-4.")
flags.DEFINE_boolean("reverse", False, "Pretrain on classes 5-9, fine-tune on 0-4.")
flags.DEFINE_integer("epochs", 20, "Epochs of each fine-tuning run.")
flags.DEFINE_list("losses", ["cce", "gce", "nce_rce", "forward", "elr", "dm"], "Losses compared.")
flags.DEFINE_list("noises", ["symmetric", "pairflip", "instance"], "Noise types (40%).")
flags.DEFINE_list("starts", ["pretrained", "scratch"], "pretrained and/or scratch.")
flags.DEFINE_list("seeds", ["0"], "Seeds (noise draw, initialisation, data order).")
flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
flags.DEFINE_float("finetune_learning_rate", None, "Pretrained runs: the second phase's rate "
                   "(default: the run's, a tenth of the learning rate).")
flags.DEFINE_integer("head_epochs", None, "Pretrained runs: epochs of the head alone "
                     "(default: the run's, a quarter of the epochs).")
flags.DEFINE_string("reference", "dm", "Loss every other is compared with, seed by seed.")

# DM's recipe, one part changed at a time (RunConfig overrides)
VARIANTS = {
    "dm_reject0": dict(loss="dm", reject_margin=0.0),  # no rejection cap
    "dm_nopairs": dict(loss="dm", pair_margins=False),  # one margin R for every class pair
    "dm_b16": dict(loss="dm", beta=16.0),  # the sharp emphasis of networks without BatchNorm
    "dm_warm0": dict(loss="dm", warmup_epochs=0),  # the emphasis and the caps from epoch 1
    # where the emphasis peaks, p* = lam / (lam + 1): 2/3 (the recipe "scratch"'s lam, and
    # "finetune"'s before 2026-12-07, when lam = 0.5 replaced it) and 1/2, not 1/3
    "dm_lam2": dict(loss="dm", lam=2.0),
    "dm_lam1": dict(loss="dm", lam=1.0),
    "dm_lam05_b8": dict(loss="dm", beta=8.0),  # the papers' own DM (lam, beta) = (0.5, 8)
    # the recipe "finetune" before 2026-12-07: lam = 2 and the cap of the recipe "scratch"
    "dm_mm16": dict(loss="dm", lam=2.0, max_margin=16.0),
    # early-learning regularisation, the baseline of the instance-dependent issue (#29), as
    # compare.py runs it: cross-entropy with ELR at the paper's lam
    **comparison.BASELINES,
}
SIDE = 32
SPLIT = 5  # classes [0, SPLIT) pretrain, [SPLIT, 10) fine-tune (--reverse: the other way)


def _halves():
    """``((low, high) pretrained on, (low, high) fine-tuned on)``."""
    halves = ((0, SPLIT), (SPLIT, 10))
    return halves[::-1] if FLAGS.reverse else halves


def _part(digits, low, high):
    keep_train = (digits.y_train >= low) & (digits.y_train < high)
    keep_test = (digits.y_test >= low) & (digits.y_test < high)
    return (digits.x_train[keep_train], digits.y_train[keep_train] - low,
            digits.x_test[keep_test], digits.y_test[keep_test] - low)


def pretrained_weights(out, digits, name, epochs):
    """The backbone trained on the pretraining half (cross-entropy, clean labels), its
    BatchNorm statistics set on that data: ``(weights path, its test accuracy there)``."""
    import keras

    low, high = _halves()[0]
    path = os.path.join(out, f"{name}_digits{low}-{high - 1}.weights.h5")
    record = path + ".json"
    if os.path.exists(record):
        with open(record) as f:
            return path, json.load(f)["test_accuracy"]
    x, y, x_test, y_test = _part(digits, low, high)
    keras.utils.set_random_seed(0)
    backbone = getattr(keras.applications, name)(include_top=False, weights=None,
                                                 input_shape=(SIDE, SIDE, 3), pooling="avg")
    batch_norm = [layer for layer in backbone.layers
                  if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norm:
        layer.momentum = 0.9
    inputs = keras.Input(x.shape[1:])
    z = keras.layers.Resizing(SIDE, SIDE)(inputs)
    z = keras.layers.Concatenate()([z, z, z])
    model = keras.Model(inputs, keras.layers.Dense(high - low)(backbone(z)))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=epochs, batch_size=64, verbose=2)
    for layer in batch_norm:  # the statistics of the whole pretraining set, exactly
        layer.momentum = 0.0
    model(x.astype("float32"), training=True)
    accuracy = float(model.evaluate(x_test.astype("float32"), y_test, verbose=0)[1])
    backbone.save_weights(path)
    with open(record, "w") as f:
        json.dump({"test_accuracy": accuracy, "epochs": epochs}, f)
    return path, accuracy


def _row(rows, epoch):
    row = rows[epoch]
    return (float(row["test_accuracy"]), float(row["train_clean_fit"]),
            float(row["train_noisy_fit"]))


def one_run(out, npz, weights, noise_type, start, loss, seed):
    name = f"{noise_type}_{start}_{loss}_s{seed}"
    pretrained = start == "pretrained"
    overrides = {}
    if pretrained:
        overrides = {k: FLAGS[k].value for k in ("finetune_learning_rate", "head_epochs")
                     if FLAGS[k].value is not None}
    name += "".join(f"_{k}{v:g}" for k, v in sorted(overrides.items()))
    model_dir = os.path.join(out, "runs", name)
    config = training.RunConfig(
        dataset=f"npz:{npz}", noise_type=noise_type, noise_rate=FLAGS.noise_rate,
        noise_seed=seed, seed=seed, model=FLAGS.backbone, **VARIANTS.get(loss, {"loss": loss}),
        weights=weights if pretrained else None, epochs=FLAGS.epochs, verbose=0,
        model_dir=model_dir, export_dir="", **overrides)
    collapsed = os.path.join(model_dir, "collapsed.txt")
    if not os.path.exists(os.path.join(model_dir, "metrics.json")) and not os.path.exists(
            collapsed):
        try:
            training.run(config)
        except TrainingCollapsed as err:  # the guard stopped it: a result, not a failure
            with open(collapsed, "w") as f:
                f.write(str(err))
    if os.path.exists(collapsed):
        return None
    rows = training.read_log(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
        head = json.load(f)["resolved"]["head_epochs"]
    return {"head": _row(rows, head - 1) if head else None, "final": _row(rows, -1),
            "best": max(float(r["test_accuracy"]) for r in rows)}


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    digits = data.load("digits")
    weights, accuracy = pretrained_weights(FLAGS.out, digits, FLAGS.backbone,
                                           FLAGS.pretrain_epochs)
    (low, high), (tune_low, tune_high) = _halves()
    print(f"{FLAGS.backbone} pretrained on digits {low}-{high - 1} ({FLAGS.pretrain_epochs} "
          f"epochs, clean labels): test accuracy {100 * accuracy:.1f}")
    npz = os.path.join(FLAGS.out, f"digits{tune_low}-{tune_high - 1}.npz")
    x, y, x_test, y_test = _part(digits, tune_low, tune_high)
    np.savez(npz, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    print(f"Fine-tuned on digits {tune_low}-{tune_high - 1}: {len(y)} training, "
          f"{len(y_test)} test images, {FLAGS.noise_rate:.0%} noise, {FLAGS.epochs} epochs, "
          f"seeds {','.join(FLAGS.seeds)}.")
    print("Figures in %, mean over seeds: test accuracy / clean fit / memorised, at the end of "
          "the head phase and at the end; best test accuracy.")
    print("| noise | start | loss | head phase | final | best |")
    print("|---|---|---|---|---|---|")
    finals = {}
    for noise_type in FLAGS.noises:
        for start in FLAGS.starts:
            for loss in FLAGS.losses:
                runs = [one_run(FLAGS.out, npz, weights, noise_type, start, loss, int(s))
                        for s in FLAGS.seeds]
                finals[noise_type, start, loss] = [r and r["final"][0] for r in runs]
                if any(r is None for r in runs):
                    print(f"| {noise_type} | {start} | {loss} | collapsed in "
                          f"{sum(r is None for r in runs)} of {len(runs)} runs (constant "
                          "predictions: stopped by the run's guard) | | |", flush=True)
                    continue

                def cell(key):
                    if runs[0][key] is None:
                        return "-"
                    mean = 100 * np.mean([r[key] for r in runs], axis=0)
                    return " / ".join(f"{v:.1f}" for v in mean)

                best = 100 * np.mean([r["best"] for r in runs])
                print(f"| {noise_type} | {start} | {loss} | {cell('head')} | {cell('final')} "
                      f"| {best:.1f} |", flush=True)
    _print_paired(finals)


def _print_paired(finals):
    """Each loss's final test accuracy minus the reference's, seed by seed (runs the guard
    stopped left out): mean ± standard error, in points."""
    reference = FLAGS.reference
    if reference not in FLAGS.losses:
        return
    print(f"\nFinal test accuracy minus {reference}'s, paired by seed, in points (mean ± "
          "standard error over the seeds,\nwhere two or more ran; *: ahead of or behind it by "
          "more than two standard errors):")
    for loss in FLAGS.losses:
        if loss == reference:
            continue
        cells = []
        for noise_type in FLAGS.noises:
            for start in FLAGS.starts:
                pairs = [(a, b) for a, b in zip(finals[noise_type, start, loss],
                                                finals[noise_type, start, reference])
                         if a is not None and b is not None]
                if not pairs:
                    continue
                diff = 100 * np.subtract(*np.transpose(pairs))
                label = noise_type if len(FLAGS.starts) == 1 else f"{noise_type}/{start}"
                cell = f"{label} {diff.mean():+.1f}"
                if len(diff) > 1:  # one seed has no standard error
                    se = diff.std(ddof=1) / np.sqrt(len(diff))
                    cell += f" ± {se:.1f}" + ("*" if abs(diff.mean()) > 2 * se else "")
                cells.append(cell)
        print(f"{loss:>12}: " + ", ".join(cells))


if __name__ == "__main__":
    app.run(main)
