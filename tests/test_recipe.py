"""Tests for keras_imae.config.recipe: one table of defaults, resolved once per run."""
import dataclasses
import math

import keras
import numpy as np
import pytest

import keras_imae
from keras_imae import callbacks, losses, training
from keras_imae.config import build, recipe


def _dataset(name, shape):
    """A stand-in with what resolve() reads: a name and an input shape."""
    return type("Dataset", (), {"name": name, "input_shape": shape})()


def test_weight_decay_default_is_adamw_normalised_and_explicit_values_win():
    # Loshchilov & Hutter (2019): decay = 15 * sqrt(batch / (examples * epochs)), AdamW only.
    decay = recipe.weight_decay("adamw", None, 64, 1347, 40)
    assert decay == pytest.approx(15 * (64 / (1347 * 40)) ** 0.5)
    assert decay == pytest.approx(0.5170, abs=1e-4)
    assert recipe.weight_decay("adamw", None, 64, 1347, 160) == pytest.approx(decay / 2)
    assert recipe.weight_decay("sgd", None, 64, 1347, 40) == 0.0
    assert recipe.weight_decay("adam", None, 64, 1347, 40) == 0.0
    assert recipe.weight_decay("adamw", 5e-4, 64, 1347, 40) == 5e-4
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        training.validate(training.RunConfig(optimizer="rmsprop"))


def test_resolve_gives_every_setting_as_a_number(digits):
    resolved = recipe.resolve(training.RunConfig(), digits, 1347)
    assert resolved == {
        "recipe": "scratch", "noise_type": "symmetric", "noise_rate": 0.4, "checkpoint": "last",
        "validation_fraction": 0.0, "model": "mlp", "augment": None,
        "input_dropout": 0.2, "digits_test_size": 450, "stream_above_bytes": 256 * 2**20,
        "loss": "dm",
        "loss_settings": {"lam": 2.0, "beta": 16.0, "max_margin": 16.0, "reject_margin": 3.0},
        "reject_alive_share": 0.5,
        "warmup_epochs": 10, "emphasis_ramp": False, "ramp_epochs": 0,
        "pair_margins": recipe.DEFAULTS["pair_margins"],
        "pair_margin_epoch": 10,
        "optimizer": "adamw", "learning_rate": 1e-3, "lr_schedule": "cosine", "momentum": None,
        "weight_decay": pytest.approx(15 * math.sqrt(64 / (1347 * 40))),
        "epochs": 40, "batch_size": 64, "max_top_class_fraction": 0.98, "collapse_patience": 5}
    assert recipe.resolve(training.RunConfig(), digits) == resolved  # N less the split
    sgd = recipe.resolve(training.RunConfig(optimizer="sgd", loss="gce", q=0.5), digits, 100)
    assert sgd["momentum"] == recipe.DEFAULTS["sgd_momentum"] == 0.9
    assert sgd["loss_settings"] == {"q": 0.5} and sgd["warmup_epochs"] == 0
    assert sgd["weight_decay"] == 0.0
    assert "reject_alive_share" not in sgd and sgd["pair_margin_epoch"] is None


def test_a_named_recipe_per_use_chooses_dm_its_warmup_and_pair_margins(digits):
    # "scratch" is the table; "folds" (the label-issue fold models) overrides DM's setting,
    # the warm-up and the pair margins; a value set in RunConfig wins over either.
    assert recipe.table("scratch") == recipe.DEFAULTS
    assert recipe.RECIPES == ("scratch", "folds", "finetune")
    folds = recipe.resolve(training.RunConfig(recipe="folds"), digits, 100)
    assert folds["recipe"] == "folds" and folds["warmup_epochs"] == 0
    assert folds["loss_settings"] == {"lam": 2.0, "beta": 8.0, "max_margin": 16.0,
                                      "reject_margin": 3.0}
    assert folds["pair_margins"] is False and folds["pair_margin_epoch"] is None
    cnn = recipe.resolve(training.RunConfig(recipe="folds", model="cnn"), digits, 100)
    assert (cnn["loss_settings"]["lam"], cnn["loss_settings"]["beta"]) == (2.0, 8.0)
    assert recipe.resolve(training.RunConfig(recipe="folds", beta=3.0), digits, 100)[
        "loss_settings"]["beta"] == 3.0
    assert recipe.grid("dm", "mlp", 1e-3, "folds")[2] == {"lam": 2.0, "beta": 8.0}
    assert recipe.resolve(training.RunConfig(), digits, 100)["recipe"] == "scratch"
    # "finetune" (a pretrained backbone): DM's margin cap at 4, its emphasis peaking at
    # p = 1/3 (lam = 0.5) with the BatchNorm networks' beta, whatever the architecture
    finetune = recipe.resolve(training.RunConfig(recipe="finetune", model="MobileNetV3Small"),
                              digits, 100)
    assert finetune["loss_settings"] == {"lam": 0.5, "beta": 4.0, "max_margin": 4.0,
                                         "reject_margin": 3.0}
    assert recipe.resolve(training.RunConfig(recipe="finetune"), digits, 100)[
        "loss_settings"] == finetune["loss_settings"]  # the MLP too
    assert recipe.grid("dm", "MobileNetV3Small", 1e-3, "finetune")[2] == {"lam": 0.5,
                                                                       "beta": 4.0}
    assert recipe.resolve(training.RunConfig(recipe="finetune", model="MobileNetV3Small",
                                             max_margin=16.0), digits, 100)[
        "loss_settings"]["max_margin"] == 16.0
    with pytest.raises(ValueError, match=r"`recipe`.*'auto', 'scratch', 'folds', 'finetune'"
                                         r".*recipe='pretrained'"):
        training.validate(training.RunConfig(recipe="pretrained"))


@pytest.mark.parametrize("config, named, phases", [
    (dict(), "scratch", (0, 1e-3)),
    (dict(model="MobileNetV3Small"), "scratch", (0, 1e-3)),  # a backbone from scratch
    (dict(model="MobileNetV3Small", weights="imagenet"), "finetune", (10, 1e-4)),
    (dict(model="MobileNetV3Small", weights="imagenet", recipe="scratch"), "scratch", (0, 1e-3)),
    (dict(recipe="finetune"), "finetune", (10, 1e-4)),
    (dict(model="MobileNetV3Small", weights="imagenet", head_epochs=3), "finetune", (3, 1e-4)),
])
def test_auto_takes_the_fine_tuning_recipe_for_pretrained_weights_only(config, named, phases):
    # One place decides the phases: the named recipe's head_fraction and finetune_lr_factor
    # (40 epochs at 1e-3: a quarter and a tenth with "finetune"); a value set wins.
    config = training.RunConfig(learning_rate=1e-3, epochs=40, **config)
    assert recipe.named(config) == named
    resolved = recipe.finetune_phases(config, recipe.named(config))
    assert (resolved["head_epochs"], resolved["finetune_learning_rate"]) == pytest.approx(phases)


def test_the_rules_a_run_follows_are_resolved_once_and_applied_as_resolved(digits):
    # The rules outside RunConfig (the table's) are in the resolved settings of the runs they
    # apply to, and what the run builds follows the resolved values.
    config = training.RunConfig(optimizer="sgd", lr_schedule="step", epochs=8,
                                checkpoint="best")
    resolved = recipe.resolve(config, digits)
    assert resolved["lr_step_fractions"] == [0.5, 0.75] and resolved["lr_step_rate"] == 0.1
    split = keras_imae.data.split_ids(digits.y_train, resolved["validation_fraction"], 0)
    assert recipe.resolve(config, digits, len(split[0])) == resolved  # the run's split
    schedule = build.optimizer(resolved, 100).get_config()["learning_rate"]["config"]
    assert schedule["boundaries"] == [8, 12]  # 2 steps per epoch: /10 after epochs 4 and 6
    assert schedule["values"] == pytest.approx([1e-3, 1e-4, 1e-5])
    cnn = recipe.resolve(training.RunConfig(model="cnn"), digits, 100)
    assert cnn["augment"] == "crop" and cnn["augment_pad"] == 1 / 8
    folder = recipe.resolve(training.RunConfig(), _dataset("folder:/d", (32, 32, 3)), 100)
    assert folder["folder_image_size"] == (32, 32) and "digits_test_size" not in folder
    assert recipe.resolve(training.RunConfig(), _dataset("cifar10", (32, 32, 3)), 100)[
        "shuffle_buffer"] == recipe.DEFAULTS["shuffle_buffer"]
    forward = recipe.resolve(training.RunConfig(loss="forward", epochs=12), digits, 100)
    assert forward["pair_margin_epoch"] == 3 and forward["pair_margins"] is False
    assert recipe.resolve(training.RunConfig(pair_margins=False), digits, 100)[
        "pair_margin_epoch"] is None
    block = recipe.format_resolved(resolved, recipe.RULES)
    assert "* lr_step_fractions" in block and "* collapse_patience" in block


def test_no_loss_setting_depends_on_the_noise_flag(digits):
    """The noise a user names (synthetic or not) never changes a loss hyper-parameter."""
    settings = {recipe.resolve(training.RunConfig(noise_type=kind), digits, 1347)[
        "loss_settings"]["lam"] for kind in training.NOISE_TYPES}
    assert settings == {recipe.DEFAULTS["dm"]["lam"]}
    for kind in training.NOISE_TYPES:
        for model in ("mlp", "cnn"):
            config = training.RunConfig(noise_type=kind, model=model)
            assert recipe.resolve(config, digits, 1347)["loss_settings"] == recipe.resolve(
                training.RunConfig(model=model), digits, 1347)["loss_settings"]


def test_noise_auto_corrupts_only_the_embedded_demo():
    config = training.RunConfig()
    assert recipe.noise(config, _dataset("digits", (8, 8, 1))) == ("symmetric", 0.4)
    for name in ("npz:mine.npz", "folder:/data", "cifar10", "labels:/d"):
        assert recipe.noise(config, _dataset(name, (8, 8, 1))) == ("none", 0.0), name
    asked = dataclasses.replace(config, noise_type="pairflip", noise_rate=0.3)
    assert recipe.noise(asked, _dataset("npz:mine.npz", (8, 8, 1))) == ("pairflip", 0.3)
    none = dataclasses.replace(config, noise_type="none")
    assert recipe.noise(none, _dataset("digits", (8, 8, 1))) == ("none", 0.0)


def test_compiled_model_applies_the_resolved_decay_and_dropout(digits):
    resolved = recipe.resolve(training.RunConfig(), digits, 1000)
    model = build.compiled_model(resolved, digits, 1000, seed=0)
    assert model.optimizer.weight_decay == pytest.approx(15 * (64 / (1000 * 40)) ** 0.5)
    assert model.name == "mlp" and model.get_layer("input_dropout").rate == 0.2
    assert isinstance(model.loss, losses.DerivativeManipulation) and model.loss.lam == 2.0
    sgd = recipe.resolve(training.RunConfig(optimizer="sgd", weight_decay=1e-3), digits, 1000)
    sgd = build.compiled_model(sgd, digits, 1000, seed=0)
    assert sgd.optimizer.weight_decay is None  # coupled L2: a kernel regularizer instead
    assert any(getattr(layer, "kernel_regularizer", None) is not None for layer in sgd.layers)
    assert sgd.optimizer.momentum == 0.9
    cnn = build.compiled_model(recipe.resolve(training.RunConfig(model="cnn"), digits, 1000),
                                digits, 1000, seed=0)
    assert "Dropout" not in [type(layer).__name__ for layer in cnn.layers]
    with pytest.raises(ValueError, match=r"`input_dropout` is for the MLPs.*model='cnn'"):
        training.validate(training.RunConfig(model="cnn", input_dropout=0.2))
    with pytest.raises(ValueError, match="input_dropout"):
        training.validate(training.RunConfig(input_dropout=1.0))


def test_input_dropout_defaults_to_mlps_on_images():
    for name, shape, rate in (("mlp", (8, 8, 1), 0.2), ("mlp_bn", (8, 8, 1), 0.2),
                              ("cnn", (8, 8, 1), 0.0), ("resnet20", (8, 8, 3), 0.0),
                              ("mlp", (40,), 0.0)):
        resolved = recipe.resolve(training.RunConfig(model=name), _dataset("npz:x", shape), 100)
        assert resolved["input_dropout"] == rate, (name, shape)
    resolved = recipe.resolve(training.RunConfig(input_dropout=0.3), _dataset("npz:x", (40,)),
                              100)
    assert resolved["input_dropout"] == 0.3


def test_loss_settings_use_only_set_hyper_parameters():
    assert recipe.loss_settings("gce", {"q": 0.5}, "mlp") == {"q": 0.5}
    with pytest.raises(ValueError, match=r"'imae' does not take `beta`.*temperature"):
        recipe.loss_settings("imae", {"beta": 16.0}, "mlp")
    with pytest.raises(ValueError, match=r"'cce' does not take `lam`, `q`.*none"):
        recipe.loss_settings("cce", {"lam": 1.0, "q": 0.3}, "mlp")
    dm = recipe.loss_settings("dm", {"beta": 3.0}, "mlp", normalize="none")
    assert dm == {"lam": 2.0, "beta": 3.0, "max_margin": 16.0, "reject_margin": 3.0,
                  "normalize": None}
    # The margin caps are on in every run default (DM and IMAE); 0 gives the faithful gradient.
    for loss in ("dm", "imae"):
        for model in ("mlp", "cnn", None):
            for cap, default in (("max_margin", 16.0), ("reject_margin", 3.0)):
                assert recipe.loss_settings(loss, {}, model)[cap] == default
                assert recipe.loss_settings(loss, {cap: 0.0}, model)[cap] is None
    assert recipe.loss_settings("imae", {}, "mlp") == {"temperature": 8.0, "max_margin": 16.0,
                                                       "reject_margin": 3.0}
    faithful = losses.DerivativeManipulation()  # the class stays the papers' DM
    assert faithful.max_margin is None and faithful.reject_margin is None
    assert losses.DerivativeManipulation().lam == 0.5  # the class keeps the contract's default
    # The BatchNorm architectures get their own beta; a set value wins.
    for model in ("mlp_bn", "cnn", "resnet20"):
        assert recipe.loss_settings("dm", {}, model)["beta"] == recipe.DEFAULTS[
            "dm_batchnorm"]["beta"]
    assert recipe.loss_settings("dm", {"beta": 16.0}, "cnn")["beta"] == 16.0
    with pytest.raises(ValueError, match="Valid names"):
        recipe.loss_settings("focal", {}, "mlp")
    with pytest.raises(ValueError, match="max_margin=-1"):
        training.validate(training.RunConfig(max_margin=-1.0))
    with pytest.raises(ValueError, match="reject_margin=-1"):
        training.validate(training.RunConfig(reject_margin=-1.0))


def test_the_emphasis_ramp_is_opt_in_and_runs_to_the_last_epoch(digits):
    on = recipe.resolve(training.RunConfig(emphasis_ramp=True), digits, 1347)
    assert (on["warmup_epochs"], on["emphasis_ramp"], on["ramp_epochs"]) == (10, True, 30)
    short = recipe.resolve(training.RunConfig(emphasis_ramp=True, warmup_epochs=3, epochs=8),
                           digits, 1347)
    assert short["ramp_epochs"] == 5
    off = recipe.resolve(training.RunConfig(loss="imae"), digits, 1347)
    assert (off["emphasis_ramp"], off["ramp_epochs"]) == (False, 0)
    with pytest.raises(ValueError, match="no emphasis to ramp.*emphasis_ramp=True"):
        training.validate(training.RunConfig(loss="gce", emphasis_ramp=True))
    with pytest.raises(ValueError, match="faithful=True.*emphasis_ramp=True"):
        training.validate(training.RunConfig(faithful=True, emphasis_ramp=True))
    r = keras_imae.recommended(num_examples=1000, epochs=20, emphasis_ramp=True)
    warmup = [c for c in r.callbacks if isinstance(c, callbacks.EmphasisWarmup)][0]
    assert (warmup.epochs, warmup.ramp_epochs) == (5, 15)


def test_warmup_is_a_quarter_for_emphasis_losses_only():
    assert recipe.warmup_epochs("dm", 40) == 10 and recipe.warmup_epochs("imae", 6) == 1
    assert recipe.warmup_epochs("cce", 40) == 0
    assert recipe.warmup_epochs("dm", 40, 0) == 0
    with pytest.raises(ValueError, match="no emphasis to warm up"):
        recipe.warmup_epochs("gce", 40, 2)
    with pytest.raises(ValueError, match="Expected < epochs"):
        recipe.warmup_epochs("dm", 4, 4)


@pytest.mark.parametrize("name, shape, model, expected", [
    ("digits", (8, 8, 1), "auto", None),          # 8x8 -> the MLP: no translation invariance
    ("digits", (8, 8, 1), "cnn", "crop"),         # the CNN on the same images: pad 1 + crop
    ("npz:/d.npz", (28, 28, 1), "auto", "crop"),  # -> the CNN
    ("npz:/d.npz", (28, 28, 1), "mlp", None),
    ("npz:/d.npz", (28, 28, 1), "mlp_bn", None),
    ("folder:/d", (32, 32, 3), "auto", "crop"),   # -> ResNet-20; never flipped (not CIFAR)
    ("npz:/d.npz", (40,), "auto", None),          # feature vectors
    ("cifar10", (32, 32, 3), "auto", "cifar"),    # the papers' pad + crop + flip
    ("cifar10_n/aggre", (32, 32, 3), "mlp", "cifar"),
    ("svhn_cropped", (32, 32, 3), "auto", "crop"),
    ("cifar10:3.0.2", (32, 32, 3), "auto", "cifar"),
    ("cifar100_n", (32, 32, 3), "auto", "cifar"),
    ("mnist", (28, 28, 1), "mlp", None),
])
def test_auto_augmentation_crops_images_for_convolutional_models(name, shape, model, expected):
    config = training.RunConfig(model=model)
    assert recipe.resolve(config, _dataset(name, shape), 100)["augment"] == expected
    for explicit, result in (("none", None), ("crop", "crop"), ("cifar", "cifar")):
        config = dataclasses.replace(config, augment=explicit)
        assert recipe.resolve(config, _dataset(name, shape), 100)["augment"] == result


def test_recommended_is_the_run_recipe_for_your_own_model(digits):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(10)(x))
    r = keras_imae.recommended(plain, num_examples=1347)
    run = recipe.resolve(training.RunConfig(), digits, 1347)
    assert r.loss.get_config()["lam"] == run["loss_settings"]["lam"]
    assert r.loss.get_config()["beta"] == run["loss_settings"]["beta"]
    assert r.loss.max_margin == run["loss_settings"]["max_margin"]
    assert r.optimizer.weight_decay == pytest.approx(run["weight_decay"])
    assert (r.epochs, r.batch_size) == (40, 64)
    assert [type(c).__name__ for c in r.callbacks] == ["EmphasisWarmup"]
    assert r.callbacks[0].epochs == run["warmup_epochs"]
    assert "lam=2" in str(r) and "weight_decay" in str(r)
    assert "config.json" not in str(r)  # a run writes one; recommended() writes nothing
    bn = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.BatchNormalization()(x)))
    assert keras_imae.recommended(bn, num_examples=100).loss.beta == recipe.DEFAULTS[
        "dm_batchnorm"]["beta"]
    assert keras_imae.recommended(None, num_examples=100, beta=3.0).loss.beta == 3.0
    assert keras_imae.recommended(num_examples=100, loss="cce").callbacks == []
    with pytest.raises(ValueError, match="Unknown settings"):
        keras_imae.recommended(num_examples=100, gamma=1.0)
    # Pair margins need the training data (and a cap); with it, PairMargins after the warm-up.
    data = (digits.x_train.astype("float32"), digits.y_train)
    paired = keras_imae.recommended(num_examples=1347, train_data=data, pair_margins=True)
    assert [type(c).__name__ for c in paired.callbacks] == ["EmphasisWarmup", "PairMargins"]
    assert paired.callbacks[1].at_epoch == run["warmup_epochs"]
    assert paired.settings["pair_margins"] is True
    default = keras_imae.recommended(num_examples=1347, train_data=data)
    assert default.settings["pair_margins"] is recipe.DEFAULTS["pair_margins"]
    assert keras_imae.recommended(num_examples=1347).settings["pair_margins"] is False
    for bad in (dict(pair_margins=True), dict(pair_margins=True, train_data=data,
                                               reject_margin=0.0)):
        with pytest.raises(ValueError, match="pair_margins=True (needs|sets)"):
            keras_imae.recommended(num_examples=100, **bad)
    # It trains as given: one epoch of the recipe on digits.
    model = keras_imae.models.build_model("mlp", (8, 8, 1), 10, mean=digits.mean,
                                          std=digits.std, seed=0)
    r = keras_imae.recommended(model, num_examples=1347, epochs=2)
    model.compile(optimizer=r.optimizer, loss=r.loss)
    history = model.fit(digits.x_train.astype("float32"), digits.y_train, epochs=r.epochs,
                        batch_size=r.batch_size, callbacks=r.callbacks, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_faithful_is_the_papers_dm_in_one_setting(digits):
    faithful = recipe.resolve(training.RunConfig(faithful=True), digits, 1347)
    spelled = recipe.resolve(training.RunConfig(max_margin=0.0, reject_margin=0.0,
                                                warmup_epochs=0), digits, 1347)
    assert faithful == spelled
    assert faithful["loss_settings"] == {"lam": 2.0, "beta": 16.0, "max_margin": None,
                                         "reject_margin": None}
    assert faithful["warmup_epochs"] == 0
    assert build.build_loss(faithful).get_config() == losses.DerivativeManipulation(
        lam=2.0, beta=16.0).get_config()
    imae = recipe.resolve(training.RunConfig(loss="imae", faithful=True), digits, 1347)
    assert imae["loss_settings"] == {"temperature": 8.0, "max_margin": None,
                                     "reject_margin": None}
    cce = recipe.resolve(training.RunConfig(loss="cce", faithful=True), digits, 1347)
    assert cce["loss_settings"] == {} and cce["warmup_epochs"] == 0
    for contradiction in (dict(max_margin=16.0), dict(reject_margin=3.0),
                          dict(warmup_epochs=2)):
        (name, value), = contradiction.items()
        with pytest.raises(ValueError, match=f"contradicts {name}={value}"):
            training.validate(training.RunConfig(faithful=True, **contradiction))
