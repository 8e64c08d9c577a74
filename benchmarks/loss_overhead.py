"""Loss overhead: DM and IMAE against Keras' sparse cross-entropy, measured side by side.

Prints, for every (batch, classes, mode), the median time of forward+backward of each loss
and its ratio to ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``; then the
time of a full training step of a small CNN compiled with DM vs with CCE. Candidates are
timed in interleaved rounds (A, B, C, A, B, C, ...) so that load on the machine affects all
of them alike; the median over rounds is reported.

Targets (issue #3): loss alone <= 1.5x CCE; train step <= 1.03x CCE.

    python benchmarks/loss_overhead.py                 # full grid
    python benchmarks/loss_overhead.py --rounds=5 --batches=128 --classes=10
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import keras  # noqa: E402
from keras_imae import losses  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("batches", ["128", "1024"], "Batch sizes.")
flags.DEFINE_list("classes", ["10", "100", "1000"], "Numbers of classes.")
flags.DEFINE_list("modes", ["eager", "function", "xla"], "eager | function | xla.")
flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds (median reported).")
flags.DEFINE_integer("iters", 20, "Calls per round (loss benchmark).")
flags.DEFINE_integer("step_batch", 128, "Batch size of the CNN train-step benchmark.")
flags.DEFINE_integer("step_iters", 10, "Train steps per round (CNN benchmark).")


def _loss_step(loss, mode):
    def step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(y, z)
        return tape.gradient(value, z)

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "xla"))


def interleaved_median(fns, rounds, iters):
    """Median seconds per call of each fn, timed in interleaved rounds."""
    for fn in fns.values():  # warm-up (tracing, compilation)
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(iters):
                out = fn()
            np.asarray(out)  # wait for the result
            times[name].append((time.perf_counter() - start) / iters)
    return {name: float(np.median(t)) for name, t in times.items()}


def loss_table():
    candidates = {
        "cce": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "dm": losses.DerivativeManipulation(beta=8.0, lam=0.5),
        "imae": losses.IMAE(temperature=8.0),
    }
    rows = []
    rng = np.random.default_rng(0)
    for mode in FLAGS.modes:
        for batch in map(int, FLAGS.batches):
            for k in map(int, FLAGS.classes):
                z = tf.constant(rng.standard_normal((batch, k)).astype(np.float32))
                y = tf.constant(rng.integers(0, k, batch).astype(np.int32))
                fns = {}
                for name, loss in candidates.items():
                    step = _loss_step(loss, mode)
                    fns[name] = lambda step=step: step(y, z)
                t = interleaved_median(fns, FLAGS.rounds, FLAGS.iters)
                rows.append((mode, batch, k, t["cce"], t["dm"] / t["cce"],
                             t["imae"] / t["cce"]))
    print("\nLoss forward+backward, median over interleaved rounds")
    print("| mode | B | K | CCE (µs) | DM / CCE | IMAE / CCE |")
    print("|---|---|---|---|---|---|")
    for mode, batch, k, t_cce, r_dm, r_imae in rows:
        print(f"| {mode} | {batch} | {k} | {t_cce * 1e6:.0f} | {r_dm:.2f} | {r_imae:.2f} |")


def _cnn(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])


def train_step_table():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((FLAGS.step_batch, 32, 32, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, FLAGS.step_batch).astype(np.int32))
    fns = {}
    for name, loss in (("cce", keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
                       ("dm", losses.DerivativeManipulation(beta=8.0, lam=0.5))):
        model = _cnn(0)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
        model.make_train_function()
        fns[name] = lambda model=model: model.train_on_batch(x, y)
    t = interleaved_median(fns, FLAGS.rounds, FLAGS.step_iters)
    print(f"\nSmall-CNN train step, batch {FLAGS.step_batch} (32x32x3, 10 classes)")
    print("| loss | ms / step | ratio to CCE |")
    print("|---|---|---|")
    for name in fns:
        print(f"| {name} | {t[name] * 1e3:.1f} | {t[name] / t['cce']:.3f} |")


def main(_):
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPU cores, devices: "
          f"{[d.name for d in tf.config.list_logical_devices()]}")
    loss_table()
    train_step_table()


if __name__ == "__main__":
    app.run(main)
