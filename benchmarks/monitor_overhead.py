r"""What the per-epoch exact measurement costs: epoch time with and without ``FitMonitor``.

    python benchmarks/monitor_overhead.py                  # 12,000 + 2,000 28x28 images, MLP
    python benchmarks/monitor_overhead.py --train=2000 --rounds=1   # smoke run

One model, one optimizer; epochs with and without the monitor alternate (interleaved rounds,
after a warm-up epoch of each), and the script prints the median epoch time of each and their
ratio (target: monitor / plain <= 1.15). The monitor measures clean fit, memorisation, test
accuracy, logit scale and emphasis bands exactly, on the whole un-augmented training set and
the test set, every epoch.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from absl import app, flags

from keras_imae import callbacks, data, losses, models, noise

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("train", 12000, "Training images.")
    flags.DEFINE_integer("test", 2000, "Test images.")
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds (one epoch of each per round).")
    flags.DEFINE_integer("batch_size", 64, "Training batch size.")


def main(_):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (FLAGS.train + FLAGS.test, 28, 28, 1)).astype("uint8")
    y = rng.integers(0, 10, len(x))
    x_train, y_train, x_test, y_test = x[:FLAGS.train], y[:FLAGS.train], x[FLAGS.train:], y[
        FLAGS.train:]
    noisy, _ = noise.corrupt_labels(y_train, 10, "symmetric", 0.4, 0)
    model = models.build_model("mlp", (28, 28, 1), 10, mean=127.5, std=73.9, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), losses.DerivativeManipulation())
    train = data.train_dataset(x_train, noisy, y_train, batch_size=FLAGS.batch_size, seed=0)
    monitor = callbacks.FitMonitor((x_train, noisy, y_train), (x_test, y_test))

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
          f"{FLAGS.batch_size}, {FLAGS.rounds} interleaved rounds, median epoch time")
    print(f"without FitMonitor: {plain:.3f} s")
    print(f"with FitMonitor:    {monitored:.3f} s")
    ratio = monitored / plain
    print(f"ratio {ratio:.3f} (target <= 1.15): {'OK' if ratio <= 1.15 else 'OVER'}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
