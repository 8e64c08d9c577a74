"""One noisy-label training run, end to end: what ``scripts/train.py`` calls.

``run(config)`` loads the data, corrupts the training labels (or reuses a saved corruption),
builds and compiles the model under the requested strategy, trains with Keras' progress bars
while :class:`keras_imae.callbacks.FitMonitor` measures clean fit / noisy memorisation /
test accuracy after every epoch, then ranks the training examples by how likely their label
is wrong, writes ``metrics.json``, the Keras model and a serving SavedModel, and returns the
results as a dict.

Everything a run writes lives in ``model_dir``::

    model_dir/
      noisy_labels.npz   the exact corruption (reused on resume, shareable via noisy_labels=)
      config.json        the RunConfig
      log.csv            per-epoch History (CSVLogger, appended on resume)
      tensorboard/       TensorBoard logs
      backup/            BackupAndRestore state while training (deleted when fit completes)
      model.keras        the trained model, compiled with its loss (reloads, trains on)
      metrics.json       the results returned by run()

The SavedModel goes to ``export_dir`` (default ``saved_models/<run name>``).
"""

import csv
import dataclasses
import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_imae import callbacks, data, distribute, export, losses, models, noise

__all__ = ["RunConfig", "run", "loss_from_config", "format_results", "read_log", "write_json"]

# Hyper-parameters each loss takes; a RunConfig field left at None means "loss default".
LOSS_HPARAMS = {
    "dm": ("beta", "lam"),
    "imae": ("temperature",),
    "cce": (),
    "mae": (),
    "mse": (),
    "gce": ("q",),
    "sce": ("alpha", "beta"),
    "nce_rce": ("alpha", "beta"),
}
NOISE_TYPES = ("none", "symmetric", "pairflip", "asymmetric")


@dataclasses.dataclass
class RunConfig:
    """Every knob of a run. Defaults: DM on the embedded digits with 40% symmetric noise.

    The optimisation defaults (Adam 1e-3, 40 epochs, batch 64, no weight decay, the MLP) are
    the digits setting in which CCE memorises the noisy labels and DM does not (measured in
    tests/test_models.py). For CIFAR use the papers' recipe: ``optimizer="sgd",
    learning_rate=0.1, lr_schedule="step", weight_decay=5e-4`` and a ResNet.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    noise_type: str = "symmetric"
    noise_rate: float = 0.4
    noise_seed: int = 0
    noisy_labels: str | None = None  # reuse a saved noisy_labels.npz (file or folder)
    loss: str = "dm"
    beta: float | None = None
    lam: float | None = None
    temperature: float | None = None
    q: float | None = None
    alpha: float | None = None
    normalize: str = "default"  # "default" (the loss's own), "none" or "batch"
    model: str = "auto"
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    lr_schedule: str = "none"  # none | step | cosine
    weight_decay: float = 0.0
    augment: str = "auto"  # auto | none | cifar | crop
    validation_fraction: float = 0.0
    strategy: str = "default"
    tpu: str | None = None
    precision: str = "float32"
    jit_compile: bool = False
    seed: int = 0
    model_dir: str = "runs/digits_dm"
    export_dir: str | None = None  # default saved_models/<basename of model_dir>; "" = none
    verbose: int = 1


def loss_from_config(config):
    """The compiled loss: ``losses.get(config.loss, **hyper-parameters that were set)``."""
    if config.loss not in LOSS_HPARAMS:
        losses.get(config.loss)  # raises with the list of valid names
    kwargs = {k: getattr(config, k) for k in LOSS_HPARAMS[config.loss]
              if getattr(config, k) is not None}
    if config.normalize != "default":
        kwargs["normalize"] = config.normalize
    return losses.get(config.loss, **kwargs)


def _auto_model(input_shape):
    if len(input_shape) == 1 or input_shape[0] <= 8:
        return "mlp"
    if input_shape[-1] == 3:
        return "resnet20"
    return "cnn"


def _noisy_labels(config, dataset):
    """Draw the corruption once, or reuse it (explicit file, or a previous run's model_dir)."""
    y = dataset.y_train
    saved = os.path.join(config.model_dir, "noisy_labels.npz")
    source = config.noisy_labels or (saved if os.path.exists(saved) else None)
    if source is not None:
        noisy, is_noisy, _, _ = noise.load_noisy_labels(source, clean_labels=y,
                                                        num_classes=dataset.num_classes)
        return noisy, is_noisy, source
    if config.noise_type == "none" or config.noise_rate == 0:
        return y.copy(), np.zeros(len(y), bool), None
    noisy, is_noisy = noise.corrupt_labels(
        y, dataset.num_classes, config.noise_type, config.noise_rate, config.noise_seed,
        dataset=dataset.name, superclasses=dataset.superclasses)
    return noisy, is_noisy, None


def write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _check_config(config):
    if config.noise_type not in NOISE_TYPES:
        raise ValueError(
            f"Invalid value for `noise_type`. Expected one of {list(NOISE_TYPES)}. "
            f"Received: noise_type={config.noise_type!r}")
    for name in ("epochs", "batch_size"):
        if int(getattr(config, name)) <= 0:
            raise ValueError(f"Invalid value for `{name}`. Expected a positive integer. "
                             f"Received: {name}={getattr(config, name)!r}")
    if not 0.0 <= config.validation_fraction < 1.0:
        raise ValueError("Invalid value for `validation_fraction`. Expected a float in "
                         f"[0, 1). Received: validation_fraction={config.validation_fraction}")


def run(config, *, dataset=None, strategy=None):
    """Train one model on noisy labels and measure what it fits.

    Args:
        config: a :class:`RunConfig`.
        dataset: an already loaded :class:`keras_imae.data.Dataset` (tests, sweeps); default
            ``data.load_dataset(config.dataset, data_dir=config.data_dir)``.
        strategy: a ``tf.distribute.Strategy``; default ``distribute.get_strategy(
            config.strategy, tpu=config.tpu)``.

    Returns:
        A dict of results (also written to ``model_dir/metrics.json``): test accuracy best
        (and its epoch) and final, exact clean fit / noisy memorisation / noisy correction on
        the un-augmented training set, realised noise rate, mislabel-ranking quality, paths.
    """
    _check_config(config)
    loss = loss_from_config(config)  # validates the loss and its hyper-parameters early
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    distribute.set_precision(config.precision)
    if strategy is None:
        strategy = distribute.get_strategy(config.strategy, tpu=config.tpu)
    if dataset is None:
        dataset = data.load_dataset(config.dataset, data_dir=config.data_dir)
    os.makedirs(config.model_dir, exist_ok=True)
    write_json(os.path.join(config.model_dir, "config.json"), dataclasses.asdict(config))

    noisy, is_noisy, reused = _noisy_labels(config, dataset)
    clean = dataset.y_train
    nominal = None
    if not reused and config.noise_type != "none":
        nominal = noise.transition_matrix(dataset.num_classes, config.noise_type,
                                          config.noise_rate, dataset=dataset.name,
                                          superclasses=dataset.superclasses)
    summary = noise.noise_summary(clean, noisy, dataset.num_classes, nominal=nominal)
    if config.verbose:
        print(("Reusing the corruption in " + reused + "\n" if reused else "") + str(summary))
    noise.save_noisy_labels(config.model_dir, noisy, is_noisy, clean=clean,
                            noise_type=config.noise_type, noise_rate=config.noise_rate,
                            noise_seed=config.noise_seed, dataset=dataset.name)

    x_train, train_noisy, train_clean = dataset.x_train, noisy, clean
    validation = None
    if config.validation_fraction > 0:
        split = data.split_validation(dataset.x_train, noisy, config.validation_fraction,
                                      config.seed)
        x_train, train_noisy = split.x_train, split.y_train
        train_clean = clean[split.train_index]
        validation = data.eval_dataset(split.x_val, split.y_val, clean[split.val_index],
                                       batch_size=config.batch_size)

    augment = (data.default_augmentation(dataset.name) if config.augment == "auto"
               else None if config.augment == "none" else config.augment)
    train = data.train_dataset(x_train, train_noisy, train_clean,
                               batch_size=config.batch_size, augment=augment, seed=config.seed)
    steps_per_epoch = int(np.ceil(len(x_train) / config.batch_size))

    model_name = _auto_model(dataset.input_shape) if config.model == "auto" else config.model
    with strategy.scope():
        model = models.build_model(model_name, dataset.input_shape, dataset.num_classes,
                                   mean=dataset.mean, std=dataset.std,
                                   weight_decay=config.weight_decay, seed=config.seed)
        optimizer = models.make_optimizer(
            config.optimizer, learning_rate=config.learning_rate,
            momentum=config.momentum if config.optimizer == "sgd" else None,
            schedule=None if config.lr_schedule == "none" else config.lr_schedule,
            epochs=config.epochs, steps_per_epoch=steps_per_epoch)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)

    monitor = callbacks.FitMonitor(
        train=(x_train, train_noisy, train_clean), test=(dataset.x_test, dataset.y_test),
        batch_size=max(config.batch_size, 256))
    model_dir = config.model_dir
    history = model.fit(
        train, epochs=config.epochs, validation_data=validation, verbose=config.verbose,
        shuffle=False,  # the pipeline shuffles (seeded)
        callbacks=[
            monitor,  # first: writes its values into the logs the others record
            distribute.backup_and_restore(model_dir),
            keras.callbacks.CSVLogger(os.path.join(model_dir, "log.csv"), append=True),
            keras.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")),
        ])

    keras_path = os.path.join(model_dir, "model.keras")
    model.save(keras_path)
    ranking = models.rank_mislabelled(model, x_train, train_noisy)
    train_is_noisy = train_noisy != train_clean
    quality = (models.ranking_quality(ranking[1], train_is_noisy)
               if 0 < train_is_noisy.sum() < len(train_is_noisy) else {})
    results = {
        "dataset": dataset.name,
        "model": model_name,
        "loss": loss.get_config(),
        "noise_type": config.noise_type,
        "noise_rate_nominal": config.noise_rate,
        "noise_rate_realised": float(np.mean(is_noisy)),
        "epochs": config.epochs,
        **_epoch_results(model_dir, monitor.last),
        "mislabel_ranking": quality,
        "model_keras": os.path.abspath(keras_path),
        "seconds": round(time.time() - start, 1),
    }
    if validation is not None:  # accuracy on the held-out *noisy* labels: for model selection
        results["val_accuracy_final"] = float(history.history["val_accuracy"][-1])
    export_dir = config.export_dir
    if export_dir is None:
        export_dir = os.path.join("saved_models", os.path.basename(os.path.normpath(model_dir)))
    if export_dir:
        results["saved_model"] = export.export_saved_model(model, export_dir, overwrite=True)
    write_json(os.path.join(model_dir, "metrics.json"), results)
    return results


def read_log(model_dir):
    """The rows of ``model_dir/log.csv`` (one dict of strings per epoch, resumed runs
    included).

    Raises:
        FileNotFoundError: no ``log.csv`` in ``model_dir``.
    """
    log = os.path.join(model_dir, "log.csv")
    if not os.path.exists(log):
        raise FileNotFoundError(f"No training log at {log!r}: is {model_dir!r} a run folder "
                                "written by scripts/train.py?")
    with open(log) as f:
        return list(csv.DictReader(f))


def _epoch_results(model_dir, last):
    """Best/final test accuracy from the whole CSV log (complete across resumed runs) and
    the final exact training-set fit values measured by the FitMonitor."""
    rows = read_log(model_dir)
    test = [float(r["test_accuracy"]) for r in rows]
    best = int(np.argmax(test))
    return {
        "test_accuracy_best": test[best],
        "test_accuracy_best_epoch": int(rows[best]["epoch"]) + 1,
        "test_accuracy_final": test[-1],
        "train_accuracy": last.get("train_accuracy"),
        "clean_fit": last.get("train_clean_fit"),
        "noisy_fit": last.get("train_noisy_fit"),
        "noisy_correct": last.get("train_noisy_correct"),
        "history": {key: [float(r[key]) for r in rows] for key in _HISTORY_KEYS
                    if rows and key in rows[0]},
    }


_HISTORY_KEYS = ("test_accuracy", "train_clean_fit", "train_noisy_fit", "train_noisy_correct",
                 "loss")


def format_results(results):
    """The end-of-run table, as text."""
    rows = [
        ("test accuracy, best (epoch)",
         f"{results['test_accuracy_best']:.4f} ({results['test_accuracy_best_epoch']})"),
        ("test accuracy, final", f"{results['test_accuracy_final']:.4f}"),
    ]
    for name, key in (("clean fit (train, clean subset)", "clean_fit"),
                      ("noisy memorisation (train, noisy subset)", "noisy_fit"),
                      ("noisy correction (train, noisy subset)", "noisy_correct")):
        if results.get(key) is not None:
            rows.append((name, f"{results[key]:.4f}"))
    rows.append(("realised noise rate", f"{results['noise_rate_realised']:.4f}"))
    quality = results.get("mislabel_ranking") or {}
    if quality:
        rows.append(("mislabel ranking precision@k / ROC-AUC",
                     f"{quality['precision_at_k']:.4f} / {quality['roc_auc']:.4f}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
