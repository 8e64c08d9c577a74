r"""One fine-tuning epoch of a ``keras.applications`` backbone: keras_imae vs plain Keras.

The same network (``models.backbone_model``: resize, preprocessing, the backbone, a new
head) is trained one epoch on the same in-memory images, side by side, in each phase:

- **plain Keras**: a ``keras.Model`` over the same layers, cross-entropy, ``fit(x, y)``;
- **keras_imae**: the ``RobustModel`` a run trains, DM (the run's BatchNorm-network
  setting), ``fit(x, {"label": noisy, "clean_label": clean})`` with its fit metrics.

``head``: the backbone frozen (the first phase); ``finetune``: everything but BatchNorm. Each
configuration runs an untimed epoch (tracing) and then ``--repeats`` timed epochs,
interleaved; the fastest epoch of each is compared (on a shared machine the fastest is the
least disturbed one) and the ratio keras_imae / plain printed (target <= 1.1). The run's
per-epoch measurement passes (``FitMonitor``) are not in it: ``benchmarks/monitor_overhead.py``
measures them.

Usage::

    python benchmarks/finetune_epoch.py                       # MobileNetV3Small, 32x32
    python benchmarks/finetune_epoch.py --backbone=ResNet50 --image_size=64 --examples=512
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("backbone", "MobileNetV3Small", "keras.applications class name.")
flags.DEFINE_integer("image_size", 32, "Side of the random RGB images (and the backbone's).")
flags.DEFINE_integer("examples", 1024, "Training images per epoch.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("num_classes", 10, "Classes.")
flags.DEFINE_integer("repeats", 3, "Timed epochs per configuration (fastest reported).")


def main(argv):
    del argv
    import keras
    import numpy as np

    from keras_imae import losses, models
    from keras_imae.config import recipe

    rng = np.random.default_rng(0)
    side = FLAGS.image_size
    x = rng.uniform(0, 255, (FLAGS.examples, side, side, 3)).astype("float32")
    y = rng.integers(0, FLAGS.num_classes, FLAGS.examples)
    weights = "/tmp/finetune_epoch_backbone.weights.h5"
    getattr(keras.applications, FLAGS.backbone)(
        include_top=False, weights=None, input_shape=(side, side, 3),
        pooling="avg").save_weights(weights)
    dm = recipe.loss_settings("dm", {}, FLAGS.backbone)

    def build(kind, phase):
        model = models.backbone_model(FLAGS.backbone, x.shape[1:], FLAGS.num_classes,
                                      weights=weights)
        models.set_backbone_trainable(model, phase == "finetune")
        if kind == "plain":
            model = keras.Model(model.inputs, model.outputs)
            loss, targets = keras.losses.SparseCategoricalCrossentropy(from_logits=True), y
        else:
            loss, targets = losses.get("dm", **dm), {"label": y, "clean_label": y}
        model.compile(keras.optimizers.AdamW(1e-4), loss)
        model.fit(x, targets, batch_size=FLAGS.batch_size, epochs=1, verbose=0)  # tracing
        return model, targets

    print(f"{FLAGS.backbone} at {side}x{side}, {FLAGS.examples} images, batch "
          f"{FLAGS.batch_size}; fastest of {FLAGS.repeats} epochs, seconds")
    print("| phase | plain Keras | keras_imae (DM) | ratio |")
    print("|---|---|---|---|")
    for phase in ("head", "finetune"):
        built = {kind: build(kind, phase) for kind in ("plain", "imae")}
        times = {kind: [] for kind in built}
        for _ in range(FLAGS.repeats):
            for kind, (model, targets) in built.items():
                start = time.perf_counter()
                model.fit(x, targets, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
                times[kind].append(time.perf_counter() - start)
        plain, ours = min(times["plain"]), min(times["imae"])
        print(f"| {phase} | {plain:.2f} | {ours:.2f} | {ours / plain:.3f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
