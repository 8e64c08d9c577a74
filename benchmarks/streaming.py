"""Streamed image folders: memory that does not grow with the data, and a fast enough pipeline.

1. Writes ``--num_images`` random 32x32 RGB PNGs (10 class folders) into a temporary folder,
   and a second folder with 1/``--size_ratio`` of them (hard links, same files).
2. For each folder, in a fresh subprocess each (peak RSS = ``resource.getrusage``'s
   ``ru_maxrss`` of that process alone):
   - ``pipeline``: open the folder as a streamed source (file listing, labels, the exact
     mean/std pass) and read one shuffled, augmented epoch of the training pipeline with
     noisy labels looked up by id; prints the epoch's images/s;
   - ``run``: ``training.run`` for one epoch with ``--model`` (default ``mlp``: the
     measurement of issue #11: noise, training, FitMonitor passes, ranking), streamed
     (``streaming="on"``) and, with ``--in_memory``, in memory (``streaming="off"``) for
     contrast.
3. Times a training step of the model the pipeline feeds (batch ``--batch_size``, one
   in-memory batch repeated) in this process: ResNet-20 at 32x32, or ``--model`` when it is
   a ``keras.applications`` backbone; prints pipeline images/s / model images/s.

``--image_size=S`` decodes the folder at SxS, as a backbone run does (issue #30: data at the
backbone's resolution); the stored PNGs stay 32x32.

Targets (issue #11): streamed RSS growth <= 60 MB for ``size_ratio`` (8) x the images, and
pipeline >= 5x the model's step.

    python benchmarks/streaming.py                       # 100,000 images (a few minutes)
    python benchmarks/streaming.py --num_images=20000 --in_memory=false
    python benchmarks/streaming.py --model=MobileNetV3Small --image_size=224 \
        --num_images=8000 --in_memory=false --batch_size=32
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
TARGET_RSS_GROWTH_MB = 60.0
TARGET_RATIO = 5.0
NUM_CLASSES = 10


def define_flags():
    flags.DEFINE_integer("num_images", 100_000, "Images in the large folder.")
    flags.DEFINE_integer("size_ratio", 8, "The small folder holds num_images / size_ratio.")
    flags.DEFINE_integer("batch_size", 128, "Batch size of the pipeline and the model step.")
    flags.DEFINE_integer("steps", 30, "Timed ResNet-20 training steps (after a warm-up).")
    flags.DEFINE_boolean("in_memory", True, "Also measure the in-memory run for contrast.")
    flags.DEFINE_string("model", "mlp", "Architecture of the run (any --model of train.py; a "
                        "keras.applications backbone starts from random weights).")
    flags.DEFINE_integer("image_size", 0, "Decode the images at this side (0: as stored, "
                         "32), as a backbone run does.")
    flags.DEFINE_string("workdir", None, "Folder for the images (default: a temporary one, "
                                         "deleted at the end).")
    flags.DEFINE_string("child", None, "Internal: 'pipeline|run:MODE:DIR' in a subprocess.")


def _write_images(root, num_images, seed=0):
    """``num_images`` random 32x32 PNGs, spread evenly over 10 class folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(NUM_CLASSES):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(num_images):
        # Smooth-ish images (a random colour plus noise) compress like photos, not noise.
        base = rng.integers(0, 200, (1, 1, 3))
        pixels = (base + rng.integers(0, 56, (32, 32, 3))).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"class{i % NUM_CLASSES}",
                                                  f"{i:07d}.png"), compress_level=1)


def _link_subset(source, target, num_images):
    for c in range(NUM_CLASSES):
        os.makedirs(os.path.join(target, f"class{c}"), exist_ok=True)
    for i in range(num_images):
        name = os.path.join(f"class{i % NUM_CLASSES}", f"{i:07d}.png")
        os.link(os.path.join(source, name), os.path.join(target, name))


def _image_size():
    return (FLAGS.image_size, FLAGS.image_size) if FLAGS.image_size else None


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _child_pipeline(root, batch_size):
    from keras_imae import data, noise

    start = time.perf_counter()
    ds = data.load(f"folder:{root}", streaming="on", image_size=_image_size())
    opened = time.perf_counter() - start
    noisy, _ = noise.corrupt_labels(ds.y_train, ds.num_classes, "symmetric", 0.4, seed=0)
    pipeline = data.train_dataset(ds, noisy, ds.y_train, batch_size=batch_size,
                                       augment="cifar", seed=0)
    for _ in pipeline.take(20):  # warm-up: threads, autotuning
        pass
    count, start = 0, time.perf_counter()
    for images, _ in pipeline:
        count += int(images.shape[0])
    seconds = time.perf_counter() - start
    return {"images": len(ds.train), "open_s": opened, "images_per_s": count / seconds}


def _child_run(root, mode, workdir):
    from keras_imae import training

    # The collapse guard off (a DEFAULTS rule, not a flag): one epoch of a randomly
    # initialised backbone may well predict one class, and this run measures memory.
    training.recipe.DEFAULTS["max_top_class_fraction"] = None
    config = training.RunConfig(
        dataset=f"folder:{root}", noise_type="symmetric", model=FLAGS.model, epochs=1,
        verbose=0, streaming=mode, image_size=FLAGS.image_size or None,
        model_dir=os.path.join(workdir, f"run_{mode}_{os.path.basename(root)}"),
        export_dir="", overwrite=True)
    start = time.perf_counter()
    results = training.run(config)
    return {"seconds": time.perf_counter() - start,
            "test_accuracy": results["test_accuracy_final"]}


def _child(spec):
    kind, mode, root = spec.split(":", 2)
    if kind == "pipeline":
        out = _child_pipeline(root, FLAGS.batch_size)
    else:
        out = _child_run(root, mode, os.path.dirname(root))
    out["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(out))


def _measure(spec):
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--child={spec}",
         f"--batch_size={FLAGS.batch_size}", f"--model={FLAGS.model}",
         f"--image_size={FLAGS.image_size}"],
        capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{spec} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _model_images_per_second(batch_size, steps):
    import keras
    import tensorflow as tf

    from keras_imae import models

    side = FLAGS.image_size or 32
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size, side, side, 3)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
    if models.is_backbone(FLAGS.model):
        model = models.backbone_model(FLAGS.model, (side, side, 3), NUM_CLASSES)
    else:
        model = models.build_model("resnet20", (side, side, 3), NUM_CLASSES,
                                   mean=np.full(3, 127.5), std=np.full(3, 64.0), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensors((x, {"label": y})).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def _report(sizes, results):
    small, large = sizes
    print(f"{'measurement':<28}{small:>12,d} img{large:>12,d} img{'growth':>10}")
    for key, label in (("pipeline", "streamed pipeline epoch"),
                       ("run:on", f"streamed run ({FLAGS.model})"),
                       ("run:off", f"in-memory run ({FLAGS.model})")):
        if (key, small) not in results:
            continue
        a, b = results[(key, small)]["peak_rss_mb"], results[(key, large)]["peak_rss_mb"]
        print(f"{label + ' RSS MB':<28}{a:>16.0f}{b:>16.0f}{b - a:>10.0f}")
    growth = (results[("run:on", large)]["peak_rss_mb"]
              - results[("run:on", small)]["peak_rss_mb"])
    verdict = "OK" if growth <= TARGET_RSS_GROWTH_MB else "ABOVE TARGET"
    print(f"streamed run RSS growth for {large // small}x the images: {growth:.0f} MB "
          f"(target <= {TARGET_RSS_GROWTH_MB:.0f} MB): {verdict}")
    for size in sizes:
        r = results[("pipeline", size)]
        streamed = results[("run:on", size)]["seconds"]
        print(f"{size:,d} images: open (list + mean/std pass) {r['open_s']:.1f} s, pipeline "
              f"{r['images_per_s']:.0f} images/s; streamed run {streamed:.0f} s"
              + (f", in-memory run {results[('run:off', size)]['seconds']:.0f} s"
                 if ("run:off", size) in results else ""))


def main(_):
    if FLAGS.child:
        _child(FLAGS.child)
        return
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="keras_imae_streaming_")
    large_dir, small_dir = os.path.join(workdir, "large"), os.path.join(workdir, "small")
    sizes = (FLAGS.num_images // FLAGS.size_ratio, FLAGS.num_images)
    try:
        start = time.perf_counter()
        if not os.path.isdir(large_dir):
            _write_images(large_dir, FLAGS.num_images)
            _link_subset(large_dir, small_dir, sizes[0])
        print(f"{FLAGS.num_images:,d} PNGs (32x32, read at {FLAGS.image_size or 32}) in "
              f"{workdir} "
              f"({time.perf_counter() - start:.0f} s); load: {os.getloadavg()}")
        results = {}
        kinds = ["pipeline", "run:on"] + (["run:off"] if FLAGS.in_memory else [])
        for kind in kinds:
            for size, root in zip(sizes, (small_dir, large_dir)):
                spec = f"{kind}:{root}" if ":" in kind else f"{kind}:on:{root}"
                results[(kind, size)] = _measure(spec)
        model = _model_images_per_second(FLAGS.batch_size, FLAGS.steps)
        _report(sizes, results)
        pipeline = results[("pipeline", sizes[1])]["images_per_s"]
        ratio = pipeline / model
        from keras_imae import models

        stepped = FLAGS.model if models.is_backbone(FLAGS.model) else "resnet20"
        print(f"{stepped} train step at {FLAGS.image_size or 32}x{FLAGS.image_size or 32} "
              f"(batch {FLAGS.batch_size}, {FLAGS.steps} steps): {model:.0f} images/s")
        print(f"ratio streamed pipeline / model: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x): "
              + ("OK" if ratio >= TARGET_RATIO else "BELOW TARGET"))
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if FLAGS.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
