"""keras.applications backbones under a new head, and their two-phase fine-tuning in a run.

The "pretrained" weights are made here: a MobileNetV3Small trained three epochs on 400 digits
(32x32), its BatchNorm statistics then set to those of the whole set, saved without its top as
a user would save theirs.
"""

import dataclasses
import fcntl
import json
import os
import re

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import data, models, training
from keras_imae.models import _backbones

import same_run

NAME = "MobileNetV3Small"


@pytest.fixture(scope="module")
def small(tmp_path_factory, digits):
    """400 training and 100 test digits (a run's cost is the backbone's, not the data's)."""
    path = tmp_path_factory.mktemp("small") / "digits.npz"
    np.savez(path, x_train=digits.x_train[:400], y_train=digits.y_train[:400],
             x_test=digits.x_test[:100], y_test=digits.y_test[:100])
    return data.load(f"npz:{path}")


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, digits):
    """A MobileNetV3Small (no top, 32x32) trained on the raw digits of ``small``, saved as a
    user would. Made once per session: under pytest -n the first worker to ask trains under
    a lock in the workers' shared temporary folder, the others read the file (the tests only
    read it)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common folder, this session's only
    path = shared / "mobilenet_v3_small.weights.h5"
    with open(shared / "mobilenet_v3_small.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            _pretrain(digits.x_train[:400].astype("float32"), digits.y_train[:400], path)
    return str(path)


def _pretrain(x, y, path):
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                   input_shape=(32, 32, 3), pooling="avg")
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = keras.Input((8, 8, 1))
    sized = keras.layers.Resizing(32, 32)(inputs)
    rgb = keras.layers.Concatenate()([sized, sized, sized])
    model = keras.Model(inputs, keras.layers.Dense(10)(backbone(rgb)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    for layer in backbone.layers:  # BatchNorm statistics of the whole set, exactly
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    tmp = f"{path.parent}/.{os.getpid()}.weights.h5"  # complete before it has its name
    backbone.save_weights(tmp)
    os.replace(tmp, path)


def _backbone_weights(path):
    """Every array of a ``.weights.h5`` file, by its path in the file."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


# -- names, weights, preprocessing ---------------------------------------------------------------
def test_every_keras_application_is_a_model_name_and_others_are_refused():
    names = models.backbone_names()
    assert {"MobileNetV3Small", "ResNet50", "EfficientNetB0", "ConvNeXtTiny"} <= set(names)
    assert all(models.check_model_name(n) == n for n in ("mlp", "resnet20", "ResNet50"))
    with pytest.raises(ValueError, match="Received: model='ResNet5'.*") as err:
        models.check_model_name("ResNet5")
    assert "ResNet50" in str(err.value) and "resnet20" in str(err.value)


def test_imagenet_weights_come_from_keras_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(ValueError, match="downloads nothing") as err:
        models.backbone_model(NAME, (32, 32, 3), 10, weights="imagenet")
    missing = str(tmp_path / "keras_home" / "models")
    assert missing in str(err.value) and "https://" in str(err.value)
    # the file Keras would have downloaded, in the cache: it is read, nothing is fetched
    name = re.search(r"'([^']+)' is missing", str(err.value))[1]
    os.makedirs(os.path.dirname(name))
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                 input_shape=(224, 224, 3), pooling="avg")
    with h5py.File(name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    model = models.backbone_model(NAME, (28, 28, 1), 10, weights="imagenet")
    assert model.input_shape == (None, 28, 28, 1)  # resized inside to 224 (ImageNet's side)
    loaded = models.backbone_layer(model)
    for a, b in zip(loaded.weights, source.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_missing_or_foreign_weights_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="no weights file at 'nope.weights.h5'"):
        models.backbone_model(NAME, (32, 32, 3), 10, weights="nope.weights.h5")
    other = keras.applications.MobileNetV3Large(include_top=False, weights=None,
                                                input_shape=(32, 32, 3))
    path = str(tmp_path / "large.weights.h5")
    other.save_weights(path)
    with pytest.raises(ValueError, match=f"Cannot build backbone '{NAME}' with weights="):
        models.backbone_model(NAME, (32, 32, 3), 10, weights=path)


def test_preprocessing_is_the_applications_own_and_gray_becomes_rgb():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    # ResNet50's "caffe" preprocessing, written out: RGB -> BGR, minus the ImageNet means
    want = rgb[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32")
    layer = models.BackbonePreprocess("ResNet50")
    np.testing.assert_allclose(np.asarray(layer(rgb)), want, rtol=1e-6, atol=1e-4)
    gray = rgb[..., :1]
    np.testing.assert_allclose(np.asarray(layer(gray)),
                               np.repeat(gray, 3, -1) - [103.939, 116.779, 123.68], atol=1e-4)
    assert models.BackbonePreprocess.from_config(layer.get_config()).backbone == "ResNet50"


def test_backbone_model_takes_raw_images_keeps_batchnorm_in_inference_and_freezes(
        tmp_path, digits, weights_file):
    model = models.backbone_model(NAME, (8, 8, 1), 10, head_dropout=0.0, weights=weights_file)
    x = digits.x_test[:16].astype("float32")
    # a pretrained backbone runs its BatchNorm in inference mode even in training
    np.testing.assert_allclose(np.asarray(model(x, training=True)),
                               np.asarray(model(x, training=False)), atol=1e-5)
    everything = len(model.trainable_variables)
    assert models.set_backbone_trainable(model, False)
    assert len(model.trainable_variables) == 2  # the new logits' kernel and bias
    models.set_backbone_trainable(model, True)
    assert len(model.trainable_variables) == everything > 2
    batch_norm = [v for layer in models.backbone_layer(model).layers
                  if isinstance(layer, keras.layers.BatchNormalization) for v in layer.weights]
    assert batch_norm and not any(v.trainable for v in batch_norm)
    scratch = models.backbone_model(NAME, (8, 8, 1), 10, head_dropout=0.0)  # no weights
    assert len(scratch.trainable_variables) == everything + len(batch_norm) // 2
    assert not np.allclose(np.asarray(scratch(x, training=True)),
                           np.asarray(scratch(x, training=False)), atol=1e-5)

    def momenta(m):
        return {layer.momentum for layer in models.backbone_layer(m).layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    # Keras' own for pretrained statistics; a fast one for statistics made in a short run
    assert momenta(model) == {0.999} and momenta(scratch) == {_backbones.SCRATCH_BN_MOMENTUM}
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        models.backbone_model(NAME, (8, 8, 2), 10)
    assert not models.set_backbone_trainable(models.build_model("mlp", (4,), 2), False)


# -- runs -----------------------------------------------------------------------------------------
def _config(tmp_path, weights=None, **overrides):
    base = dict(model=NAME, weights=weights, epochs=3, head_epochs=1, verbose=0,
                noise_type="symmetric",
                model_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "export"))
    return training.RunConfig(**{**base, **overrides})


@pytest.mark.parametrize("overrides, message", [
    (dict(model="mlp"), "are for a keras.applications backbone"),
    (dict(head_epochs=3), r"head_epochs.*\[0, 2\]"),
    (dict(weights=None), "pass weights"),
    (dict(weights="missing.weights.h5"), "no weights file at 'missing.weights.h5'"),
    (dict(model="MobileNetV9"), "Received: model='MobileNetV9'"),
    (dict(image_size=8), "image_size"),
    (dict(finetune_learning_rate=0.0), "finetune_learning_rate"),
])
def test_bad_fine_tuning_settings_are_refused_before_any_work(tmp_path, overrides, message):
    open(tmp_path / "w.weights.h5", "w").close()
    config = _config(tmp_path, **{"weights": str(tmp_path / "w.weights.h5"), **overrides})
    with pytest.raises(ValueError, match=message):
        training.validate(config)
    assert not os.path.exists(config.model_dir)


class _Phases(keras.callbacks.Callback):
    """Per epoch: trainable variables, the optimizer's learning rate, the backbone's weights."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        backbone = models.backbone_layer(self.model)
        self.epochs.append((epoch, len(self.model.trainable_variables),
                            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                            [w.numpy().copy() for w in backbone.weights]))


@pytest.mark.slow
def test_a_run_trains_the_head_then_the_whole_network_and_exports_raw_image_model(
        tmp_path, small, weights_file, monkeypatch):
    spy = _Phases()
    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, spy], **k))
    config = _config(tmp_path, weights_file)
    results = training.run(config, dataset=small)
    resolved = results["resolved"]
    assert (resolved["head_epochs"], resolved["image_size"]) == (1, 32)
    assert resolved["finetune_learning_rate"] == pytest.approx(1e-4)  # a tenth of 1e-3
    (e0, n0, lr0, w0), (e1, n1, lr1, w1), (e2, n2, _, w2) = spy.epochs
    assert (e0, e1, e2) == (0, 1, 2)
    assert n0 == 2 and n1 == n2 > 2  # the head alone, then everything
    assert lr0 <= 1e-3 and lr1 <= 1e-4 + 1e-12  # each phase its own rate (cosine from it)
    stored = _backbone_weights(weights_file)
    # phase 1 leaves the pretrained backbone untouched, BatchNorm statistics included
    assert sum(a.size for a in w0) == sum(a.size for a in stored.values())
    assert sorted(np.concatenate([a.ravel() for a in w0]).tolist()) == sorted(
        np.concatenate([a.ravel() for a in stored.values()]).tolist())
    assert any(not np.array_equal(a, b) for a, b in zip(w0, w1))  # phase 2 trains it
    assert [r["epoch"] for r in training.read_log(config.model_dir)] == ["0", "1", "2"]
    # the export takes raw 8x8 digits and gives what the Keras model gives
    model = keras.models.load_model(results["model_keras"])
    x = small.x_test[:32].astype("float32")
    loaded = tf.saved_model.load(results["saved_model"])
    np.testing.assert_allclose(loaded.serve(x)["probabilities"].numpy(),
                               tf.nn.softmax(model(x, training=False)).numpy(), atol=1e-5)
    with open(os.path.join(config.model_dir, "config.json")) as f:
        recorded = json.load(f)["resolved"]
    assert recorded["weights_sha256"] == models.weights_digest(weights_file)


@pytest.mark.slow
def test_a_fine_tuning_run_trains_both_phases_in_mixed_float16(tmp_path, small, weights_file,
                                                               monkeypatch):
    seen = []
    fit = keras.Model.fit
    spy = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((
        epoch, type(spy.model.optimizer).__name__,
        models.backbone_layer(spy.model).compute_dtype, logs["loss"])))
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, spy], **k))
    try:
        results = training.run(_config(tmp_path, weights_file, precision="mixed_float16"),
                               dataset=small)
        model = keras.models.load_model(results["model_keras"])
        x = small.x_test[:32].astype("float32")
        expected = tf.nn.softmax(model(x, training=False)).numpy()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    # both phases: loss scaling, the backbone computing in float16, a finite loss
    assert [e for e, *_ in seen] == [0, 1, 2]
    assert all(o == "LossScaleOptimizer" and d == "float16" and np.isfinite(loss)
               for _, o, d, loss in seen)
    loaded = tf.saved_model.load(results["saved_model"])  # kept: it owns the variables
    probabilities = loaded.serve(x)["probabilities"]
    assert probabilities.dtype == tf.float32
    # float16 activations: the two graphs round differently (float16's epsilon is 2^-10)
    np.testing.assert_allclose(probabilities.numpy(), expected, atol=5e-3)


def _interrupted(config, digits, after_epoch, monkeypatch):
    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == after_epoch:
                raise KeyboardInterrupt

    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, Kill()], **k))
    with pytest.raises(KeyboardInterrupt):
        training.run(config, dataset=digits)
    monkeypatch.setattr(keras.Model, "fit", fit)


@pytest.mark.slow
def test_a_fine_tuning_run_resumes_in_its_phase_and_only_with_its_weights(
        tmp_path, small, weights_file, monkeypatch):
    # Killed at the end of the head phase; resumes in phase 2 only with the same backbone and
    # weights. (That a resume in either phase is the uninterrupted run: the bit-for-bit test.)
    after_epoch = 0
    path = str(tmp_path / "mine.weights.h5")
    with open(weights_file, "rb") as src:
        original = src.read()
    with open(path, "wb") as dst:
        dst.write(original)
    config = _config(tmp_path, path, export_dir="")
    _interrupted(config, small, after_epoch, monkeypatch)
    with pytest.raises(ValueError, match="Cannot resume.*model"):
        training.run(dataclasses.replace(config, model="MobileNetV3Large"), dataset=small)
    with h5py.File(path, "r+") as f:  # the same file name, other weights
        name = next(n for n in _backbone_weights(path) if n.endswith("vars/0"))
        f[name][...] = f[name][()] + 1.0
    with pytest.raises(ValueError, match="Cannot resume.*weights_sha256"):
        training.run(config, dataset=small)
    with open(path, "wb") as dst:  # the weights it started with
        dst.write(original)
    spy = _Phases()
    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, spy], **k))
    training.run(config, dataset=small)
    assert [e for e, *_ in spy.epochs] == list(range(after_epoch + 1, 3))
    assert all(n > 2 for _, n, _, _ in spy.epochs)  # every resumed epoch is of phase 2
    assert [r["epoch"] for r in training.read_log(config.model_dir)] == ["0", "1", "2"]


# SIGTERM in phase 2's first epoch and in its second; the uninterrupted run (argv: the
# weights file after the folder and the phase). Op determinism: these runs' own processes.
SAME_FINE_TUNING = """
    small = data.load("npz:" + os.path.join(folder, "small.npz"))

    def run(name, at=None):
        sigterm_at[:] = [at] if at else []
        config = training.RunConfig(model="MobileNetV3Small", weights=sys.argv[3], epochs=3,
                                    head_epochs=1, noise_type="symmetric", verbose=0,
                                    export_dir="", model_dir=os.path.join(folder, name))
        with signals.deferred():
            try:
                training.run(config, dataset=small)
            except signals.Stopped:
                print(name, "stopped")

    if phase == "first":
        run("into_phase_2", (1, 2))  # resumes from the head phase's backup
        run("in_phase_2", (2, 2))  # resumes from phase 2's backup, its optimizer's moments
        run("uninterrupted")
    else:
        run("into_phase_2")  # the same commands again, in a new process
        run("in_phase_2")
"""


@pytest.mark.slow
def test_a_fine_tuning_run_resumed_in_either_phase_is_the_uninterrupted_run_bit_for_bit(
        tmp_path, small, weights_file):
    # As test_reliability's check of a run from scratch, across the two phases: SIGTERM in
    # the first epoch of phase 2 (the backup is the head phase's: the resume must build the
    # whole-network phase from it) and in its second (the backup holds phase 2's optimizer).
    np.savez(tmp_path / "small.npz", x_train=small.x_train, y_train=small.y_train,
             x_test=small.x_test, y_test=small.y_test)
    outputs = same_run.first_then_resume(tmp_path, SAME_FINE_TUNING, weights_file, timeout=600)
    assert outputs == [["into_phase_2", "stopped", "in_phase_2", "stopped"], []]
    same_run.assert_same_runs(tmp_path, ["into_phase_2", "in_phase_2"])


def test_default_image_size_follows_the_weights():
    assert _backbones.default_image_size("ResNet50", "imagenet", (28, 28, 1)) == 224
    assert _backbones.default_image_size("EfficientNetB3", "imagenet", (28, 28, 1)) == 300
    assert _backbones.default_image_size("ResNet50", None, (8, 8, 1)) == 32
    assert _backbones.default_image_size("ResNet50", "w.h5", (96, 96, 3)) == 96


def test_recommended_for_a_pretrained_model_gives_both_phases_and_they_train(small,
                                                                             weights_file):
    import keras_imae

    model = models.backbone_model(NAME, (8, 8, 1), 10, weights=weights_file)
    r = keras_imae.recommended(model, num_examples=128, epochs=4, batch_size=64,
                               pretrained=True)
    assert (r.head_epochs, r.settings["head_epochs"]) == (1, 1)
    assert r.settings["finetune_learning_rate"] == pytest.approx(1e-4)
    assert float(r.finetune_optimizer.learning_rate) == pytest.approx(1e-4)  # step 0
    # the finetune recipe's cap and emphasis
    assert r.settings["loss_settings"] == {"lam": 0.5, "beta": 4.0, "max_margin": 4.0,
                                           "reject_margin": 3.0}
    assert (r.loss.lam, r.loss.max_margin) == (0.5, 4.0)
    scratch = keras_imae.recommended(model, num_examples=128)
    assert scratch.finetune_optimizer is None
    assert scratch.settings["loss_settings"] == {"lam": 2.0, "beta": 4.0, "max_margin": 16.0,
                                                 "reject_margin": 3.0}
    x, y = small.x_train[:128].astype("float32"), small.y_train[:128]
    backbone = models.backbone_layer(model)
    frozen = [w.numpy().copy() for w in backbone.weights]
    models.set_backbone_trainable(model, False)
    model.compile(optimizer=r.optimizer, loss=r.loss)
    model.fit(x, y, epochs=r.head_epochs, batch_size=r.batch_size, callbacks=r.callbacks,
              verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, backbone.weights))
    models.set_backbone_trainable(model, True)
    model.compile(optimizer=r.finetune_optimizer, loss=r.loss)
    model.fit(x, y, initial_epoch=r.head_epochs, epochs=2, batch_size=r.batch_size,
              callbacks=r.callbacks, verbose=0)
    assert not all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, backbone.weights))


def test_a_backbone_reads_image_files_at_the_size_it_sees(tmp_path):
    from keras_imae.config import recipe

    def size(**kw):
        return recipe.load_image_size(training.RunConfig(**kw))

    assert size(model="ResNet50", weights="imagenet", dataset="folder:photos") == (224, 224)
    assert size(model="InceptionV3", weights="imagenet", dataset="labels:d") == (299, 299)
    assert size(model="ResNet50", image_size=64, dataset="folder:photos") == (64, 64)
    assert size(model="ResNet50", dataset="folder:photos") is None  # the folder's default
    assert size(model="ResNet50", image_size=64, dataset="npz:x.npz") is None  # arrays as given
    assert size(model="cnn", dataset="folder:photos") is None
    for c in range(2):
        os.makedirs(tmp_path / "photos" / f"c{c}")
        for i in range(5):
            keras.utils.save_img(str(tmp_path / "photos" / f"c{c}" / f"{i}.png"),
                                 np.full((50, 70, 3), 40 * c + i, "uint8"))
    dataset = data.load(f"folder:{tmp_path / 'photos'}", image_size=size(
        model="ResNet50", image_size=64, dataset="folder:photos"))
    assert dataset.input_shape == (64, 64, 3)
