r"""Train-step throughput on the Keras JAX backend: DM vs CCE, and JAX vs TensorFlow.

A Keras process has one backend, so the driver starts one worker process per backend
(``KERAS_BACKEND=jax`` / ``tensorflow``). Each worker builds a CIFAR ResNet ``RobustModel``
(``keras_imae.models.build_model``) per loss -- keras_imae's ``DerivativeManipulation`` and
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` -- and, per TensorFlow
``jit_compile`` value, warms them up, then times ``fit`` on one cached random CIFAR-shaped batch
whenever the driver asks for a round. Rounds are interleaved across backends (JAX, TF, JAX,
TF, ...) and, inside a worker, across losses, so that load on a shared machine hits all
configurations alike. Prints images/s of the fastest round (the least disturbed one) and the
median, the DM/CCE step-time ratio per backend (target <= 1.03) and JAX's speed relative to
TensorFlow for the same model and loss. JAX always compiles the step with XLA
(``jit_compile=True``); TensorFlow is measured with the ``--tf_jit`` values.

Usage (defaults take a few minutes on 2 CPU cores)::

    python benchmarks/jax_train_step.py
    python benchmarks/jax_train_step.py --steps=10 --repeats=7 --tf_jit=true
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
_LOSSES = ("cce", "dm")


def define_flags():
    flags.DEFINE_integer("depth", 20, "CIFAR ResNet depth (6n + 2).")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    flags.DEFINE_integer("image_size", 32, "Height and width of the random images.")
    flags.DEFINE_integer("num_classes", 10, "Number of classes.")
    flags.DEFINE_integer("steps", 6, "Timed train steps per round.")
    flags.DEFINE_integer("warmup", 2, "Untimed steps (tracing/compilation) per model.")
    flags.DEFINE_integer("repeats", 5, "Rounds (fastest and median reported).")
    flags.DEFINE_list("tf_jit", ["false", "true"], "TensorFlow jit_compile values to time.")
    flags.DEFINE_float("beta", 8.0, "DM beta.")
    flags.DEFINE_float("lam", 0.5, "DM lambda.")
    flags.DEFINE_enum("worker", None, ["jax", "tensorflow"], "Internal: run as a worker.")


# -- worker (one backend) -------------------------------------------------------------------
def _worker():
    """Builds and warms up the models, then answers each ``round`` line with step times."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_imae import losses, models

    rng = np.random.default_rng(0)
    b, s = FLAGS.batch_size, FLAGS.image_size
    x = rng.uniform(-1, 1, (b, s, s, 3)).astype("float32")
    y = rng.integers(0, FLAGS.num_classes, b).astype("int32")
    dataset = tf.data.Dataset.from_tensors((x, {"label": y, "clean_label": y})).repeat()
    jits = [True] if FLAGS.worker == "jax" else [j.lower() in ("1", "true") for j in FLAGS.tf_jit]
    built = {}
    for jit in jits:
        for name in _LOSSES:
            loss = (losses.DerivativeManipulation(beta=FLAGS.beta, lam=FLAGS.lam) if name == "dm"
                    else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model = models.build_model(f"resnet{FLAGS.depth}", (s, s, 3), FLAGS.num_classes,
                                       weight_decay=1e-4, seed=0)
            model.compile(keras.optimizers.SGD(0.01, momentum=0.9), loss, jit_compile=jit)
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.warmup, shuffle=False,
                      verbose=0)
            built[f"{FLAGS.worker}/jit={jit}/{name}"] = model
    print("ready", flush=True)
    for _ in sys.stdin:  # one line per round
        times = {}
        for key, model in built.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=FLAGS.steps, shuffle=False,
                      verbose=0)
            times[key] = (time.perf_counter() - start) / FLAGS.steps
        print(json.dumps(times), flush=True)


# -- driver ---------------------------------------------------------------------------------
def _start(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    args = [a for a in sys.argv[1:] if not a.startswith("--worker")]
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--worker={backend}",
                             *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    _read(proc, "ready")
    return proc


def _read(proc, prefix):
    """The worker's next stdout line starting with ``prefix`` (libraries may print others)."""
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise RuntimeError("A benchmark worker exited early (see its stderr above).")


def run():
    """Interleaved rounds; returns ``{config_key: [seconds per step per round]}``."""
    workers = [_start(backend) for backend in ("jax", "tensorflow")]
    per_step = {}
    try:
        for _ in range(FLAGS.repeats):
            for proc in workers:
                proc.stdin.write("round\n")
                proc.stdin.flush()
                for key, seconds in json.loads(_read(proc, "{")).items():
                    per_step.setdefault(key, []).append(seconds)
    finally:
        for proc in workers:
            proc.stdin.close()
            proc.wait()
    return per_step


def main(_):
    if FLAGS.worker:
        return _worker()
    per_step = run()
    b = FLAGS.batch_size
    best = {k: min(v) for k, v in per_step.items()}
    median = {k: statistics.median(v) for k, v in per_step.items()}
    print(f"\nResNet-{FLAGS.depth}, batch {b}, {FLAGS.image_size}x{FLAGS.image_size}x3, "
          f"{FLAGS.steps} steps x {FLAGS.repeats} interleaved rounds, {os.cpu_count()} CPU "
          "cores; images/s of the fastest round (median round in brackets)")
    print(f"{'backend':<24} {'CCE img/s':>18} {'DM img/s':>18} {'DM/CCE time':>16}")
    configs = sorted({k.rsplit("/", 1)[0] for k in per_step})
    for config in configs:
        cce, dm = f"{config}/cce", f"{config}/dm"
        print(f"{config:<24} {b / best[cce]:>9.1f} ({b / median[cce]:>6.1f}) "
              f"{b / best[dm]:>9.1f} ({b / median[dm]:>6.1f}) "
              f"{best[dm] / best[cce]:>7.3f} ({median[dm] / median[cce]:.3f})")
    jax_config = "jax/jit=True"
    for config in configs:
        if config != jax_config:
            ratios = ", ".join(
                f"{name.upper()} {best[f'{config}/{name}'] / best[f'{jax_config}/{name}']:.2f}x"
                for name in _LOSSES)
            print(f"JAX speed relative to {config}: {ratios}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
