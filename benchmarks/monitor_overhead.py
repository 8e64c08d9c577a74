r"""What the per-epoch exact measurement costs: epoch time with and without ``FitMonitor``.

    python benchmarks/monitor_overhead.py                  # 12,000 + 10,000 28x28 images, MLP
    python benchmarks/monitor_overhead.py --train=2000 --test=500 --rounds=1   # smoke run

The case a run measures: the monitor ``keras_imae.training.fit_monitor`` builds for
``scripts/train.py`` (the un-augmented training set and the whole test split, read through
``keras_imae.data.eval_dataset``), on an in-memory dataset of ``--train`` training and
``--test`` test images (28x28, the size of the issue's outside data), the MLP, batch 64.
Epochs with and without the monitor alternate (interleaved rounds, after a warm-up epoch of
each); the script prints the median epoch time of each and their ratio (target:
monitor / plain <= 1.15). The monitor measures clean fit, memorisation, test accuracy,
logit scale and emphasis bands exactly, every epoch.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from absl import app, flags

from keras_imae import data, losses, models, noise, training

FLAGS = flags.FLAGS
TARGET = 1.15


def define_flags():
    flags.DEFINE_integer("train", 12000, "Training images.")
    flags.DEFINE_integer("test", 10000, "Test images.")
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds (one epoch of each per round).")
    flags.DEFINE_integer("batch_size", 64, "Training batch size.")


def _dataset(rng):
    x = rng.integers(0, 256, (FLAGS.train + FLAGS.test, 28, 28, 1)).astype("uint8")
    y = rng.integers(0, 10, len(x))
    mean, std = data.channel_stats([x[:FLAGS.train]], 1)
    return data.Dataset("random28", data.ArrayReader(x[:FLAGS.train]),
                        data.ArrayReader(x[FLAGS.train:]), y[:FLAGS.train], y[FLAGS.train:],
                        10, [str(c) for c in range(10)], None, mean, std)


def main(_):
    dataset = _dataset(np.random.default_rng(0))
    noisy, _ = noise.corrupt_labels(dataset.y_train, 10, "symmetric", 0.4, 0)
    model = models.build_model("mlp", (28, 28, 1), 10, mean=dataset.mean, std=dataset.std,
                               seed=0)
    model.compile(keras.optimizers.Adam(1e-3), losses.DerivativeManipulation())
    train = data.train_dataset(dataset, noisy, dataset.y_train, batch_size=FLAGS.batch_size,
                               seed=0)
    monitor = training.fit_monitor(dataset, noisy, batch_size=FLAGS.batch_size)

    def epoch(with_monitor):
        start = time.perf_counter()
        model.fit(train, epochs=1, verbose=0, callbacks=[monitor] if with_monitor else [])
        return time.perf_counter() - start

    epoch(False), epoch(True)  # warm-up: tracing of the train and predict functions
    times = {False: [], True: []}
    for _ in range(FLAGS.rounds):
        for with_monitor in (False, True):
            times[with_monitor].append(epoch(with_monitor))
    plain, monitored = np.median(times[False]), np.median(times[True])
    print(f"{FLAGS.train} train + {FLAGS.test} test images (28x28), MLP, batch "
          f"{FLAGS.batch_size}, {FLAGS.rounds} interleaved rounds, median epoch time; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"without FitMonitor: {plain:.3f} s")
    print(f"with FitMonitor:    {monitored:.3f} s")
    ratio = monitored / plain
    print(f"ratio {ratio:.3f} (target <= {TARGET}): {'OK' if ratio <= TARGET else 'OVER'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
