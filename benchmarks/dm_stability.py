r"""Study: does DM stay robust *and* accurate to the last epoch, and in which recipe?

    python benchmarks/dm_stability.py                       # digits + MNIST-1D, the full grid
    python benchmarks/dm_stability.py --datasets=digits --seeds=1 --epochs=5 --recipes=adam \
        --losses=dm,cce                                      # smoke run (seconds)

Every cell trains one loss with one recipe (architecture, optimizer, schedule, weight decay) on
data with label noise (``--noise_type``, ``--noise_rate``; 40% symmetric by default), measures
after every epoch on the un-augmented training set and the test set
(``keras_imae.callbacks.FitMonitor``), and reports over seeds (mean ± std): final and best
test accuracy, clean fit and memorisation at the last epoch, the median max |logit|
(``logit_scale``) at the last epoch, and how many runs collapsed
(``keras_imae.callbacks.CollapseGuard``'s criteria: non-finite values, logit scale > 1000,
constant predictions) -- a collapsed run is stopped there and reported with its values at that
point. ``--output`` writes the table (markdown) and ``--json`` every run's per-epoch values.

Recipes ending in ``_crop`` train on randomly translated images (``augment="crop"``: zero-pad an
eighth of each side, random crop back), what ``train.py --augment=auto`` does for convolutional
models. Images only: MNIST-1D signals are not images.

``--input_dropout`` (what ``train.py`` gives the MLPs: 0.2, ``recipe.INPUT_DROPOUT``) and
``--dropout`` (after each hidden ReLU) apply to the MLP recipes; their rows are labelled
``<recipe>_in<rate>`` and ``<recipe>_h<rate>``. ``--warmup_epochs=E`` trains DM losses with a
flat emphasis (beta=0) for the first E epochs (rows ``<recipe>_warm<E>``; by recompiling,
where ``train.py`` switches with ``callbacks.EmphasisWarmup``): with the faithful gradient it
collapsed more runs under asymmetric noise, with the margin cap it lifts the pair-flip clean
fit and is ``train.py``'s default, a quarter of the epochs (README, "Keeping DM stable",
part 7). With
``--warmup_lam=L`` the first E epochs use lambda L and the loss's own beta instead (rows
``<recipe>_warm<E>_lam<L>``): lambda=1's symmetric emphasis, then the loss's lambda=2, also
rejected (pair-flip: lower clean fit for every E measured).

Datasets: ``digits`` (embedded), ``digits28`` (the same images upsampled to 28x28,
bilinear: a CNN learns them more slowly) and ``mnist1d`` (Greydanus 2020, generated offline
by the ``mnist1d`` package: ``pip install -e ".[study]"``; 1-D signals, so only the MLPs run
there).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from absl import app, flags

from keras_imae import callbacks, data, losses, models, noise
from keras_imae.config import optimizers
from keras_imae.config.recipe import DEFAULTS
from keras_imae.losses import _core as _loss_core

FLAGS = flags.FLAGS

# name -> (architecture, optimizer, learning rate, schedule, coupled L2, AdamW decay)
RECIPES = {
    "adam": ("mlp", "adam", 1e-3, None, 0.0, None),
    "adam_cosine": ("mlp", "adam", 1e-3, "cosine", 0.0, None),
    "adamw": ("mlp", "adamw", 1e-3, None, 0.0, 0.05),
    "sgd_step_l2": ("mlp", "sgd", 0.05, "step", 5e-4, None),
    "bn_adam": ("mlp_bn", "adam", 1e-3, None, 0.0, None),
    "bn_sgd_step_l2": ("mlp_bn", "sgd", 0.05, "step", 5e-4, None),  # the papers' recipe
    "cnn_adam": ("cnn", "adam", 1e-3, None, 0.0, None),
    "cnn_adam_cosine": ("cnn", "adam", 1e-3, "cosine", 0.0, None),
    "bn_adam_cosine": ("mlp_bn", "adam", 1e-3, "cosine", 0.0, None),
    # weight decay on top of the default recipe: coupled L2 (through Adam) or decoupled
    **{f"adam_cosine_l2_{l2:g}": ("mlp", "adam", 1e-3, "cosine", l2, None)
       for l2 in (1e-4, 1e-3)},
    **{f"{prefix}adamw_cosine_{wd:g}": (arch, "adamw", 1e-3, "cosine", 0.0, wd)
       for prefix, arch in (("", "mlp"), ("bn_", "mlp_bn"), ("cnn_", "cnn"))
       for wd in (0.3, 0.5, 1.0, 1.5, 2.0, 3.0)},
    # train.py's default: AdamW, cosine, the normalised decay of recipe.weight_decay
    **{f"{prefix}adamw_norm": (arch, "adamw", 1e-3, "cosine", 0.0, "normalised")
       for prefix, arch in (("", "mlp"), ("bn_", "mlp_bn"), ("cnn_", "cnn"))},
}
# every recipe again on translated images (pad + random crop, no flip: augment="crop")
CROP_RECIPES = {f"{name}_crop": recipe for name, recipe in RECIPES.items()}
RECIPES.update(CROP_RECIPES)


class _Diagnostic(keras.losses.Loss):
    """DM with a modified emphasis, to test the mechanism (not offered by the library).

    ``"cut"``: ``w(p) - p`` -- the floor removed at p -> 1 only (fitted examples stop
    pushing; rejected ones keep w(0) = 1). ``"no_low"``: ``w(p) - (1 - p)`` -- the floor
    removed at p -> 0 only (rejected examples stop pushing; fitted ones keep w(1) = 1).
    ``"zero_floor"``: ``expm1(beta p^lam (1 - p))`` divided by its peak, no batch
    normalisation -- no floor at either end.
    """

    def __init__(self, kind, beta=8.0, lam=0.5):
        super().__init__(name=f"dm_{kind}")
        self.kind, self.beta, self.lam = kind, beta, lam

    def call(self, y_true, y_pred):
        from keras import ops

        from keras_imae.losses import weighting

        beta, lam = self.beta, self.lam
        if self.kind in ("cut", "no_low"):
            def weight(p, one_minus_p):
                floor = p if self.kind == "cut" else one_minus_p
                return weighting.dm(p, beta=beta, lam=lam, one_minus_p=one_minus_p) - floor
            normalize = "batch"
        else:
            peak = float(np.expm1(weighting.log_dm_peak(beta=beta, lam=lam)))

            def weight(p, one_minus_p):
                return ops.expm1(weighting.log_dm(p, beta=beta, lam=lam,
                                                  one_minus_p=one_minus_p)) / peak
            normalize = None
        return _loss_core.gradient_core(  # the library's core, with this weight
            y_true, y_pred, value_fn=lambda s: -s.log_p_c,
            grad_fn=_loss_core.emphasis_gradient(weight), normalize=normalize, from_logits=True)


# name -> (kind, beta, lam) of a diagnostic loss
DIAGNOSTICS = {"dm_cut": ("cut", 8.0, 0.5), "dm_zero_floor": ("zero_floor", 8.0, 0.5),
               "dm_l1b16_no_low": ("no_low", 16.0, 1.0), "dm_l2b12_no_low": ("no_low", 12.0, 2.0)}
# name -> (losses.get name, keyword arguments); or a diagnostic loss
LOSSES = {
    "dm": ("dm", dict(beta=8.0, lam=0.5)),
    "dm_margin16": ("dm", dict(beta=8.0, lam=0.5, max_margin=16.0)),
    "dm_l1b16": ("dm", dict(beta=16.0, lam=1.0)),  # the papers' CIFAR-10 40% setting
    "dm_l1b16_margin16": ("dm", dict(beta=16.0, lam=1.0, max_margin=16.0)),
    "dm_l2b16_margin16": ("dm", dict(beta=16.0, lam=2.0, max_margin=16.0)),
    "dm_l1b8_margin16": ("dm", dict(beta=8.0, lam=1.0, max_margin=16.0)),
    "dm_l2b4_margin16": ("dm", dict(beta=4.0, lam=2.0, max_margin=16.0)),
    "dm_l2b8_margin16": ("dm", dict(beta=8.0, lam=2.0, max_margin=16.0)),
    "dm_l1b8": ("dm", dict(beta=8.0, lam=1.0)),
    "dm_l2b12": ("dm", dict(beta=12.0, lam=2.0)),  # the papers' setting for 60-80% noise
    "dm_l2b16": ("dm", dict(beta=16.0, lam=2.0)),
    "dm_l2b8": ("dm", dict(beta=8.0, lam=2.0)),
    "dm_l2b6": ("dm", dict(beta=6.0, lam=2.0)),
    "dm_l2b4": ("dm", dict(beta=4.0, lam=2.0)),
    "dm_l2b2": ("dm", dict(beta=2.0, lam=2.0)),
    "dm_b0": ("dm", dict(beta=0.0, lam=2.0)),  # flat emphasis: every example weighs 1
    "dm_l3b12": ("dm", dict(beta=12.0, lam=3.0)),
    "dm_l3b16": ("dm", dict(beta=16.0, lam=3.0)),
    "imae": ("imae", dict(temperature=8.0)),
    "cce": ("cce", {}),
    "mae": ("mae", {}),
    "gce": ("gce", dict(q=0.7)),
    **{name: None for name in DIAGNOSTICS},
}


def define_flags():
    flags.DEFINE_list("datasets", ["digits", "mnist1d"],
                      "digits, digits28 (digits upsampled to 28x28) and/or mnist1d.")
    flags.DEFINE_list("recipes", list(RECIPES), f"Recipes among {', '.join(RECIPES)}.")
    flags.DEFINE_list("losses", list(LOSSES), f"Losses among {', '.join(LOSSES)}.")
    flags.DEFINE_integer("seeds", 3, "Seeds per cell (noise, initialisation, data order).")
    flags.DEFINE_integer("first_seed", 0, "Seeds are first_seed, first_seed + 1, ...")
    flags.DEFINE_integer("epochs", 40, "Epochs per run.")
    flags.DEFINE_integer("batch_size", 64, "Batch size.")
    flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
    flags.DEFINE_enum("noise_type", "symmetric", ["symmetric", "pairflip", "asymmetric"],
                      "Noise type (asymmetric: the digits class map 2->7, 3->8, 5<->6, 7->1; "
                      "not for MNIST-1D).")
    flags.DEFINE_float("input_dropout", 0.0, "Input dropout rate of the MLP recipes.")
    flags.DEFINE_float("dropout", 0.0, "Dropout rate after each hidden layer of the MLP recipes.")
    flags.DEFINE_integer("warmup_epochs", 0, "DM only: train the first epochs with beta=0 "
                         "(a flat emphasis), then with the loss's beta.")
    flags.DEFINE_float("warmup_lam", None, "With --warmup_epochs: warm up with this lambda "
                       "and the loss's own beta instead of beta=0.")
    flags.DEFINE_integer("mnist1d_size", 8000, "MNIST-1D examples (80% train, 20% test).")
    flags.DEFINE_string("output", None, "Markdown file for the tables.")
    flags.DEFINE_string("json", None, "JSON file with every run's per-epoch values.")
    for name, valid in (("recipes", RECIPES), ("losses", LOSSES)):
        flags.register_validator(name, lambda v, valid=valid: set(v) <= set(valid),
                                 message=f"--{name} takes names among {', '.join(valid)}")
    flags.register_multi_flags_validator(
        ["warmup_lam", "warmup_epochs"],
        lambda v: v["warmup_lam"] is None or v["warmup_epochs"] > 0,
        message="--warmup_lam needs --warmup_epochs > 0")
    flags.register_validator("datasets", lambda v: set(v) <= {"digits", "digits28", "mnist1d"},
                             message="--datasets takes digits, digits28 and/or mnist1d")


def load(name, size):
    """``(x_train, y_train, x_test, y_test, mean, std, K)``; images stay raw (the model
    normalises them)."""
    if name in ("digits", "digits28"):
        ds = data.load("digits")
        if name == "digits":
            return (ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.mean, ds.std,
                    ds.num_classes)
        from scipy.ndimage import zoom  # scikit-learn's own dependency

        def up(x):  # 8x8 -> 28x28, bilinear, pixel scale kept: a slower-to-learn CNN input
            return np.clip(zoom(x[..., 0], (1, 3.5, 3.5), order=1), 0, 16)[..., None]

        x, xt = up(ds.x_train).astype("float32"), up(ds.x_test).astype("float32")
        mean, std = data.channel_stats([x], 1)  # per channel, as data.load_dataset does
        return x, ds.y_train, xt, ds.y_test, mean, std, ds.num_classes
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise app.UsageError("--datasets=mnist1d needs the mnist1d package: "
                             'pip install -e ".[study]"') from None
    args = get_dataset_args()
    args.num_samples = size
    d = make_dataset(args)  # generated from templates shipped in the package: no download
    x, xt = d["x"].astype("float32"), d["x_test"].astype("float32")
    return (x, d["y"].astype("int64"), xt, d["y_test"].astype("int64"), x.mean(0),
            x.std(0) + 1e-6, 10)


def run_cell(dataset, recipe, loss_name, seed):
    """One training run; returns its per-epoch monitor values and whether it collapsed."""
    x, y, xt, yt, mean, std, k = dataset
    arch, opt, lr, schedule, l2, decoupled = RECIPES[recipe]
    keras.utils.set_random_seed(seed)
    noisy, _ = noise.corrupt_labels(y, k, FLAGS.noise_type, FLAGS.noise_rate, seed,
                                    dataset="digits")  # the class map of asymmetric noise
    if arch.startswith("mlp"):
        model = models.mlp(x.shape[1:], k, batch_norm=arch == "mlp_bn",
                           input_dropout=FLAGS.input_dropout, dropout=FLAGS.dropout, mean=mean,
                           std=std, weight_decay=l2, seed=seed)
    else:
        model = models.build_model(arch, x.shape[1:], k, mean=mean, std=std, weight_decay=l2,
                                   seed=seed)
    steps = int(np.ceil(len(x) / FLAGS.batch_size))
    if decoupled == "normalised":  # Loshchilov & Hutter (2019), as train.py
        decoupled = DEFAULTS["normalized_weight_decay"] * np.sqrt(
            FLAGS.batch_size / (len(x) * FLAGS.epochs))
    optimizer = optimizers.make_optimizer(opt, learning_rate=lr, schedule=schedule,
                                          epochs=FLAGS.epochs, steps_per_epoch=steps,
                                          weight_decay=decoupled)
    loss = (_Diagnostic(*DIAGNOSTICS[loss_name]) if loss_name in DIAGNOSTICS
            else losses.get(LOSSES[loss_name][0], **LOSSES[loss_name][1]))
    monitor = callbacks.FitMonitor((x, noisy, y), (xt, yt))
    guard = callbacks.CollapseGuard()
    history, collapsed = [], None

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            nonlocal collapsed
            history.append({k: float(v) for k, v in logs.items()})
            reasons = guard.update(logs, last_epoch=epoch + 1 == FLAGS.epochs)
            if reasons and collapsed is None:
                collapsed = {"epoch": epoch + 1, "reasons": reasons}
                self.model.stop_training = True

    augment = "crop" if recipe in CROP_RECIPES else None
    train = data.train_dataset(x, noisy, batch_size=FLAGS.batch_size, seed=seed, augment=augment)
    phases = [(loss, 0, FLAGS.epochs)]
    if FLAGS.warmup_epochs and isinstance(loss, losses.DerivativeManipulation):
        config = loss.get_config()
        warm = ({"beta": 0.0, "lam": config["lam"]} if FLAGS.warmup_lam is None
                else {"beta": config["beta"], "lam": FLAGS.warmup_lam})
        warmup = losses.DerivativeManipulation(**warm, max_margin=config["max_margin"])
        phases = [(warmup, 0, FLAGS.warmup_epochs), (loss, FLAGS.warmup_epochs, FLAGS.epochs)]
    for phase_loss, first, last in phases:  # the optimizer (and its schedule) carries over
        model.compile(optimizer, phase_loss)
        model.fit(train, initial_epoch=first, epochs=last, verbose=0,
                  callbacks=[monitor, Record()])
        if collapsed:
            break
    return {"history": history, "collapsed": collapsed}


def label(recipe):
    """The row name: the recipe, with the MLP's dropout rates when set."""
    warmup = f"_warm{FLAGS.warmup_epochs}" if FLAGS.warmup_epochs else ""
    if FLAGS.warmup_epochs and FLAGS.warmup_lam is not None:
        warmup += f"_lam{FLAGS.warmup_lam:g}"
    if not RECIPES[recipe][0].startswith("mlp"):
        return recipe + warmup
    rates = (("in", FLAGS.input_dropout), ("h", FLAGS.dropout))
    return recipe + "".join(f"_{tag}{rate:g}" for tag, rate in rates if rate) + warmup


def summarise(runs):
    def stat(values):
        values = np.asarray(values, float)
        return float(values.mean()), float(values.std())

    finals = [r["history"][-1] for r in runs]
    return {
        "test_final": stat([f["test_accuracy"] for f in finals]),
        "test_best": stat([max(h["test_accuracy"] for h in r["history"]) for r in runs]),
        "clean_fit": stat([f["train_clean_fit"] for f in finals]),
        # absent without wrong labels (--noise_rate=0, a clean-label reference): nan
        "memorised": stat([f.get("train_noisy_fit", np.nan) for f in finals]),
        "logit_scale": stat([f["train_logit_scale"] for f in finals]),
        "collapsed": sum(r["collapsed"] is not None for r in runs),
        "runs": len(runs),
    }


def table(title, rows):
    pct = lambda m: f"{100 * m[0]:.1f} ± {100 * m[1]:.1f}"  # noqa: E731
    lines = [f"**{title}**", "",
             "| recipe | loss | test final | test best | clean fit | memorised | logit scale | "
             "collapsed |", "|---|---|---|---|---|---|---|---|"]
    for (recipe, loss_name), s in rows.items():
        lines.append(
            f"| {recipe} | {loss_name} | {pct(s['test_final'])} | {pct(s['test_best'])} | "
            f"{pct(s['clean_fit'])} | {pct(s['memorised'])} | {s['logit_scale'][0]:.3g} | "
            f"{s['collapsed']}/{s['runs']} |")
    return "\n".join(lines)


def main(_):
    tables, everything = [], {}
    for name in FLAGS.datasets:
        if FLAGS.noise_type == "asymmetric" and not name.startswith("digits"):
            print(f"{name}: skipped, asymmetric noise has a class map for digits only")
            continue
        dataset = load(name, FLAGS.mnist1d_size)
        rows = {}
        for recipe in FLAGS.recipes:
            if (RECIPES[recipe][0] == "cnn" or recipe in CROP_RECIPES) and dataset[0].ndim != 4:
                continue  # 1-D signals: the CNN and the translations are for images
            for loss_name in FLAGS.losses:
                runs = [run_cell(dataset, recipe, loss_name, seed)
                        for seed in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds)]
                rows[(label(recipe), loss_name)] = s = summarise(runs)
                everything[f"{name}/{label(recipe)}/{loss_name}"] = runs
                print(f"{name:8s} {label(recipe):15s} {loss_name:12s} "
                      f"final {s['test_final'][0]:.3f} "
                      f"best {s['test_best'][0]:.3f} clean {s['clean_fit'][0]:.3f} "
                      f"mem {s['memorised'][0]:.3f} logits {s['logit_scale'][0]:.3g} "
                      f"collapsed {s['collapsed']}/{s['runs']}", flush=True)
                title = (f"{name}, {FLAGS.noise_rate:.0%} {FLAGS.noise_type} noise, "
                         f"{FLAGS.epochs} epochs, {FLAGS.seeds} seeds")
                if FLAGS.output:  # rewritten after every cell: a stopped study keeps its rows
                    with open(FLAGS.output, "w") as f:
                        f.write("\n\n".join([*tables, table(title, rows)]) + "\n")
        tables.append(table(title, rows))
    print("\n\n".join(tables))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(everything, f)


if __name__ == "__main__":
    define_flags()
    app.run(main)
