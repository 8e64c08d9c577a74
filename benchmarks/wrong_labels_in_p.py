"""Where do the wrong labels sit in p, and how much of DM's gradient do they get, epoch by epoch?

    python benchmarks/wrong_labels_in_p.py --noise_type=pairflip --reject_margin=0
    python benchmarks/wrong_labels_in_p.py --noise_type=pairflip              # the default, 3
    python benchmarks/wrong_labels_in_p.py --noise_type=confusion --dataset=npz:digits28x.npz
    python benchmarks/wrong_labels_in_p.py --noise_type=confusion --dataset=npz:digits28x.npz \
        --elr_lambda=7
    python benchmarks/wrong_labels_in_p.py --noise_type=confusion --dataset=npz:digits28x.npz \
        --sticky_reject

The recipe of ``keras_imae.recommended`` (DM at the run's lambda, beta, margin caps and
warm-up, AdamW, cosine) on the MLP with input dropout, digits (or ``--dataset=npz:...``),
40% synthetic noise. After every epoch the whole training set is scored and printed:

- ``mem``: memorised (wrong labels predicted as their wrong label); ``clean_fit``;
- ``other``: share of the wrong labels the model confidently gives to another class
  (``argmax != label`` and ``p_k > sigmoid(3)``), ``mid``: share with ``0.05 < p < 0.95``;
- ``w_mean``: mean emphasis ``exp(beta p^lam (1 - p))`` over the training set (the batch
  normaliser, once the warm-up ends);
- ``g_wrong``, ``g_other``: share of the normalised gradient (its L1 mass) that goes to all
  wrong labels, and to the confidently-other wrong labels, before the rejection cap
  (``w`` of the examples outside the margin cap set to 0; the emphasis as after the warm-up);
- ``g_mem``: share that goes to the wrong labels the model already predicts (memorised),
  with the rejection cap too (the confidently-other ones get nothing): what keeps fitting
  them.

Then, per clean class, the share of its wrong labels the final model has memorised (which
class pairs are absorbed).

``--sticky_reject`` (an experiment, not a library option): from the end of the warm-up on,
every training example the model has once given confidently to another class (``other``, at
the end of an epoch) is dropped for the rest of the run (sample weight 0), so that a wrong
label the rejection cap stopped cannot be pulled over and then fitted. ``flagged`` is the
share of the wrong labels dropped so far, ``flagged_clean`` that of the clean ones.

It shows the mechanism of ``docs/studies/class_dependent_noise.md``: once the clean examples are
fitted (capped) and nothing sits near the emphasis mode, ``w_mean`` falls towards 1 and the
wrong labels, at ``w ~ 1`` too, get their full share of the gradient.
"""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import keras_imae  # noqa: E402
from keras_imae import data, noise, training  # noqa: E402
from keras_imae.run import corrupt  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "A keras_imae.data source (digits, npz:PATH, ...).")
flags.DEFINE_enum("noise_type", "pairflip", list(noise.NOISE_TYPES), "Noise.")
flags.DEFINE_float("noise_rate", 0.4, "Noise rate.")
flags.DEFINE_float("reject_margin", None, "DM's rejection cap (default: the recipe's).")
flags.DEFINE_integer("epochs", 40, "Epochs.")
flags.DEFINE_integer("every", 3, "Print every N-th epoch (and the last).")
flags.DEFINE_integer("seed", 0, "Seed of the noise, the initialisation and the data order.")
flags.DEFINE_float("elr_lambda", 0.0, "Early-learning regularisation's weight (0: off), "
                   "keras_imae.EarlyLearning at its default momentum.")
flags.DEFINE_boolean("sticky_reject", False, "Drop every example once confidently other "
                     "after the warm-up, for the rest of the run (module docstring).")

_OTHER = 1.0 / (1.0 + math.exp(-3.0))  # p_k above which a prediction counts as confident


def _softmax(z):
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def probe(model, x, noisy, is_noisy, lam, beta, max_margin, epoch, warmup, dropped=None):
    """The row of one epoch (module docstring); updates ``dropped`` in place."""
    p = _softmax(model.predict(x, batch_size=1024, verbose=0).astype("float64"))
    p_c = p[np.arange(len(p)), noisy]
    predicted = p.argmax(1)
    other = (predicted != noisy) & (p.max(1) > _OTHER)
    w = np.exp(beta * p_c ** lam * (1 - p_c))
    margin = np.log(np.maximum(p_c, 1e-300)) - np.log(np.maximum(1 - p_c, 1e-300))
    w_cap = np.where(np.abs(margin) > max_margin, 0.0, w)
    hit = predicted == noisy
    w_kept = np.where(other, 0.0, w_cap)
    if dropped is not None:  # --sticky_reject: once other after the warm-up, dropped
        dropped |= other & (epoch + 1 >= warmup)
    row = {"mem": hit[is_noisy].mean(), "clean_fit": hit[~is_noisy].mean(),
            "other": other[is_noisy].mean(),
            "mid": ((p_c > 0.05) & (p_c < 0.95))[is_noisy].mean(), "w_mean": w.mean(),
            "g_wrong": w_cap[is_noisy].sum() / w_cap.sum(),
            "g_other": w_cap[is_noisy & other].sum() / w_cap.sum(),
            "g_mem": w_kept[is_noisy & hit].sum() / w_kept.sum()}
    if dropped is not None:
        row.update(flagged=dropped[is_noisy].mean(), flagged_clean=dropped[~is_noisy].mean())
    return row


def main(argv):
    del argv
    ds = data.load(FLAGS.dataset)
    noisy, is_noisy = corrupt(ds, FLAGS.noise_type, FLAGS.noise_rate, FLAGS.seed)
    keras.utils.set_random_seed(FLAGS.seed)
    images = len(ds.input_shape) > 1
    model = keras_imae.models.build_model(
        "mlp", ds.input_shape, ds.num_classes, mean=ds.mean, std=ds.std,
        input_dropout=training.recipe.DEFAULTS["image_input_dropout"] if images else 0.0,
        seed=FLAGS.seed)
    settings = {} if FLAGS.reject_margin is None else {"reject_margin": FLAGS.reject_margin}
    r = keras_imae.recommended(model, num_examples=len(noisy), epochs=FLAGS.epochs, **settings)
    config = r.loss.get_config()
    print(r)
    early = None
    if FLAGS.elr_lambda:
        early = keras_imae.EarlyLearning(len(noisy), lam=FLAGS.elr_lambda)
    model.compile(optimizer=r.optimizer, loss=r.loss, early_learning=early)
    rows = []
    dropped, weights = None, None
    if FLAGS.sticky_reject:  # the examples dropped so far, and their sample weights
        dropped = np.zeros(len(noisy), bool)
        weights = tf.Variable(np.ones(len(noisy), "float32"), trainable=False)

    def on_epoch_end(epoch, logs):
        rows.append({"epoch": epoch, "test": logs["val_accuracy"], **probe(
            model, ds.x_train, noisy, is_noisy, config["lam"], config["beta"],
            config["max_margin"] or math.inf, epoch, r.settings["warmup_epochs"], dropped)})
        if dropped is not None:
            weights.assign(np.where(dropped, 0.0, 1.0).astype("float32"))

    train = data.train_dataset(ds.x_train, noisy, batch_size=r.batch_size, seed=FLAGS.seed,
                               with_ids=early is not None or dropped is not None)
    if dropped is not None:  # each example's weight, looked up by its id when it is drawn
        train = train.map(lambda x, y: (x, y if early else {"label": y["label"]},
                                        tf.gather(weights, y["id"])))
    model.fit(train, validation_data=(ds.x_test, ds.y_test), epochs=r.epochs, verbose=0,
              callbacks=[*r.callbacks, keras.callbacks.LambdaCallback(
                  on_epoch_end=on_epoch_end)])
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows[::FLAGS.every] + ([rows[-1]] if (len(rows) - 1) % FLAGS.every else []):
        print("| " + " | ".join(str(v) if k == "epoch" else f"{v:.3f}"
                                for k, v in row.items()) + " |")
    predicted = model.predict(ds.x_train, batch_size=1024, verbose=0).argmax(1)
    memorised = [np.mean(predicted[is_noisy & (ds.y_train == c)] == noisy[is_noisy & (
        ds.y_train == c)]) for c in range(ds.num_classes)]
    print("memorised by clean class: " + " ".join(f"{c}:{m:.2f}" for c, m in
                                                  enumerate(memorised)))


if __name__ == "__main__":
    app.run(main)
