r"""Train-step throughput of a CIFAR ResNet with DM vs CCE, side by side.

For every (strategy, jit_compile) pair it times ``RobustModel.fit`` on one cached random
CIFAR-shaped batch (so input pipelines do not matter) with keras_imae's
``DerivativeManipulation`` and with ``keras.losses.SparseCategoricalCrossentropy(from_logits=
True)``, interleaving the two losses over ``--repeats`` rounds, and prints images/s of the
fastest round of each (on a shared machine the fastest round is the least disturbed one; a
median is printed too) and the DM/CCE step-time ratio (target <= 1.03).

``mirrored`` uses all GPUs, or -- on a GPU-less host -- the CPU split into two logical
devices (which share the same cores: it measures the strategy's overhead, not a speed-up).

Usage (defaults finish in a few minutes on 2 CPU cores)::

    python benchmarks/train_step.py
    python benchmarks/train_step.py --depth=56 --steps=50 --repeats=5 --batch_size=256
"""

import os
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_integer("depth", 20, "CIFAR ResNet depth (6n + 2).")
    flags.DEFINE_integer("batch_size", 128, "Global batch size.")
    flags.DEFINE_integer("image_size", 32, "Height and width of the random images.")
    flags.DEFINE_integer("num_classes", 10, "Number of classes.")
    flags.DEFINE_integer("steps", 8, "Timed train steps per round.")
    flags.DEFINE_integer("warmup", 2, "Untimed steps (tracing/compilation) per configuration.")
    flags.DEFINE_integer("repeats", 5, "Rounds per configuration (fastest and median reported).")
    flags.DEFINE_list("strategies", ["default", "mirrored"], "Strategies: default, mirrored.")
    flags.DEFINE_list("jit", ["false", "true"], "jit_compile values to try.")
    flags.DEFINE_float("beta", 8.0, "DM beta.")
    flags.DEFINE_float("lam", 0.5, "DM lambda.")
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16"],
                      "Keras dtype policy.")


def _split_cpu_if_no_gpu(tf):
    """Two logical CPUs for 'mirrored' on a GPU-less host; must run before any TF op."""
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )


def _strategy(name, tf, distribute):
    if name == "mirrored" and not tf.config.list_logical_devices("GPU"):
        return distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    return distribute.get_strategy(name)


def _build(strategy, loss, jit, keras, models):
    with strategy.scope():
        model = models.build_model(
            f"resnet{FLAGS.depth}", (FLAGS.image_size, FLAGS.image_size, 3), FLAGS.num_classes,
            weight_decay=1e-4, seed=0,
        )
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), loss, jit_compile=jit)
    return model


def _time_fit(model, dataset, steps):
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / steps


def run():
    """Runs the benchmark; rows ``(strategy, jit, cce_img_s, dm_img_s, ratio, median_ratio)``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_imae import losses, models
    from keras_imae.run import distribute

    def losses_factory():
        return {
            "cce": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "dm": losses.DerivativeManipulation(beta=FLAGS.beta, lam=FLAGS.lam),
        }

    distribute.set_precision(FLAGS.precision)
    rng = np.random.default_rng(0)
    b, s = FLAGS.batch_size, FLAGS.image_size
    x = rng.uniform(-1, 1, (b, s, s, 3)).astype("float32")
    y = rng.integers(0, FLAGS.num_classes, b).astype("int32")
    dataset = tf.data.Dataset.from_tensors((x, {"label": y, "clean_label": y})).repeat()
    rows = []
    for strategy_name in FLAGS.strategies:
        strategy = _strategy(strategy_name, tf, distribute)
        for jit in FLAGS.jit:
            jit_flag = jit.lower() in ("1", "true", "yes")
            per_step = {}
            try:
                built = {name: _build(strategy, loss, jit_flag, keras, models)
                         for name, loss in losses_factory().items()}
                for model in built.values():
                    _time_fit(model, dataset, FLAGS.warmup)
                for _ in range(FLAGS.repeats):  # interleaved: drift hits both losses alike
                    for name, model in built.items():
                        per_step.setdefault(name, []).append(
                            _time_fit(model, dataset, FLAGS.steps))
            except Exception as e:  # noqa: BLE001 -- report the configuration, go on
                lines = [line for line in str(e).splitlines() if line.strip()]
                reason = next((line for line in lines if "Trying to access" in line), lines[-1])
                print(f"[{strategy_name}, jit={jit_flag}] failed: {type(e).__name__}: "
                      + reason.strip()[:300])
                rows.append((strategy_name, jit_flag, None, None, None, None))
                continue
            cce, dm = (min(per_step[k]) for k in ("cce", "dm"))
            median = statistics.median(per_step["dm"]) / statistics.median(per_step["cce"])
            rows.append((strategy_name, jit_flag, b / cce, b / dm, dm / cce, median))
    return rows


def main(_):
    import tensorflow as tf

    _split_cpu_if_no_gpu(tf)
    devices = tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("CPU")
    rows = run()
    print(f"\nResNet-{FLAGS.depth}, batch {FLAGS.batch_size}, {FLAGS.image_size}x"
          f"{FLAGS.image_size}x3, {FLAGS.precision}, {FLAGS.steps} steps x {FLAGS.repeats} "
          f"rounds (fastest); devices: {[d.name for d in devices]}, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'strategy':<10} {'jit':<5} {'CCE img/s':>10} {'DM img/s':>10} {'DM/CCE time':>12} "
          f"{'(medians)':>10}")
    for strategy, jit, cce, dm, ratio, median in rows:
        if ratio is None:
            print(f"{strategy:<10} {str(jit):<5} {'failed (see above)':>34}")
            continue
        print(f"{strategy:<10} {str(jit):<5} {cce:>10.1f} {dm:>10.1f} {ratio:>12.3f} "
              f"{median:>10.3f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    define_flags()
    app.run(main)
