"""Input pipeline vs model: can the CIFAR tf.data pipeline keep a ResNet-20 busy?

Measured side by side in one process on the same machine:

1. images/s of ``keras_imae.data.train_dataset`` on ``--num_images`` random uint8 32x32x3
   images (CIFAR-10 scale by default) with ``augment="cifar"`` (pad 4, random crop, flip),
   shuffling, batch ``--batch_size``, over ``--epochs`` full epochs after a warm-up;
2. images/s of a ``model.fit`` training step of ``keras_imae.models.build_model(--model)``
   on one in-memory batch repeated (so no input pipeline is in the way), ``--steps`` steps
   after a warm-up epoch.

Prints both and their ratio. Target (issue #4): pipeline >= 5x model, so the input side never
starves training.

    python benchmarks/pipeline_throughput.py
    python benchmarks/pipeline_throughput.py --num_images=10000 --epochs=1 --steps=10
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import keras  # noqa: E402
from keras_imae import data, models  # noqa: E402

FLAGS = flags.FLAGS
TARGET_RATIO = 5.0


def define_flags():
    flags.DEFINE_integer("num_images", 50_000, "Images in the synthetic CIFAR-shaped set.")
    flags.DEFINE_integer("batch_size", 128, "Global batch size of both measurements.")
    flags.DEFINE_integer("epochs", 2, "Timed pipeline epochs (after a warm-up).")
    flags.DEFINE_integer("warmup_batches", 50, "Pipeline batches read before timing.")
    flags.DEFINE_string("augment", "cifar", "Augmentation of the pipeline: cifar | crop | none.")
    flags.DEFINE_string("model", "resnet20", "Architecture for keras_imae.models.build_model.")
    flags.DEFINE_integer("steps", 30, "Timed training steps (after a warm-up epoch).")
    flags.DEFINE_integer("num_classes", 10, "Classes of the synthetic labels.")


def pipeline_images_per_second(x, labels, *, batch_size, epochs, warmup_batches, augment):
    ds = data.train_dataset(x, labels, labels, batch_size=batch_size, augment=augment, seed=0)
    for _ in ds.take(warmup_batches):
        pass
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for images, _ in ds:  # a new iterator per epoch, as in Keras' fit
            count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def model_images_per_second(x, labels, *, model_name, num_classes, batch_size, steps):
    sample = x[:5000].reshape(-1, x.shape[-1]).astype(np.float32)
    mean, std = sample.mean(axis=0), sample.std(axis=0)
    model = models.build_model(model_name, x.shape[1:], num_classes, mean=mean, std=std, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batch = (tf.constant(x[:batch_size], tf.float32), {"label": tf.constant(labels[:batch_size])})
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # trace, compile, warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps * batch_size / (time.perf_counter() - start)


def main(_):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (FLAGS.num_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, FLAGS.num_classes, FLAGS.num_images).astype(np.int32)
    augment = None if FLAGS.augment == "none" else FLAGS.augment
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"devices: {[d.name for d in tf.config.list_logical_devices()]}, "
          f"CPU cores: {os.cpu_count()}")
    pipeline = pipeline_images_per_second(
        x, labels, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        warmup_batches=FLAGS.warmup_batches, augment=augment)
    print(f"pipeline  ({FLAGS.num_images} images, augment={augment}, batch "
          f"{FLAGS.batch_size}, {FLAGS.epochs} epochs): {pipeline:10.0f} images/s")
    model = model_images_per_second(
        x, labels, model_name=FLAGS.model, num_classes=FLAGS.num_classes,
        batch_size=FLAGS.batch_size, steps=FLAGS.steps)
    print(f"{FLAGS.model} train step (batch {FLAGS.batch_size}, {FLAGS.steps} steps):"
          f" {model:10.0f} images/s")
    ratio = pipeline / model
    verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"ratio pipeline / model: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x): {verdict}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
