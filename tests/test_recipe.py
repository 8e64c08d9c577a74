"""Tests for keras_imae.recipe: the run's loss defaults, weight decay and compiled model."""
import dataclasses
import math

import pytest

from keras_imae import losses, recipe, training


def test_weight_decay_default_is_adamw_normalised_and_explicit_values_win():
    # Loshchilov & Hutter (2019): decay = 15 * sqrt(batch / (examples * epochs)), AdamW only.
    config = training.RunConfig(batch_size=64, epochs=40)
    assert config.optimizer == "adamw"
    assert recipe.weight_decay(config, 1347) == pytest.approx(15 * (64 / (1347 * 40)) ** 0.5)
    assert recipe.weight_decay(config, 1347) == pytest.approx(0.5170, abs=1e-4)
    assert recipe.weight_decay(dataclasses.replace(config, epochs=160), 1347) == pytest.approx(
        recipe.weight_decay(config, 1347) / 2)
    assert recipe.weight_decay(dataclasses.replace(config, optimizer="sgd"), 1347) == 0.0
    assert recipe.weight_decay(dataclasses.replace(config, optimizer="adam"), 1347) == 0.0
    assert recipe.weight_decay(dataclasses.replace(config, weight_decay=5e-4), 1347) == 5e-4
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        training.validate(dataclasses.replace(config, optimizer="rmsprop"))


def test_compiled_model_applies_the_resolved_decay(digits):
    model = recipe.compiled_model(training.RunConfig(), digits, "sparse_categorical_crossentropy",
                                    1000)
    assert model.optimizer.weight_decay == pytest.approx(15 * (64 / (1000 * 40)) ** 0.5)
    sgd = recipe.compiled_model(training.RunConfig(optimizer="sgd", weight_decay=1e-3), digits,
                                  "sparse_categorical_crossentropy", 1000)
    assert sgd.optimizer.weight_decay is None  # coupled L2: a kernel regularizer instead
    assert any(getattr(layer, "kernel_regularizer", None) is not None for layer in sgd.layers)


def test_input_dropout_defaults_to_mlps_on_images_and_explicit_values_win(digits):
    config = training.RunConfig()
    for name, rate in (("mlp", 0.2), ("mlp_bn", 0.2), ("cnn", 0.0), ("resnet20", 0.0)):
        assert recipe.input_dropout(config, name, (8, 8, 1)) == rate, name
    assert recipe.input_dropout(config, "mlp", (40,)) == 0.0  # a feature vector: no mask
    explicit = dataclasses.replace(config, input_dropout=0.0)
    assert recipe.input_dropout(explicit, "mlp", (8, 8, 1)) == 0.0
    explicit = dataclasses.replace(config, input_dropout=0.3)
    assert recipe.input_dropout(explicit, "mlp", (40,)) == 0.3
    model = recipe.compiled_model(config, digits, "sparse_categorical_crossentropy", 1000)
    assert model.name == "mlp" and model.get_layer("input_dropout").rate == 0.2
    model = recipe.compiled_model(dataclasses.replace(config, input_dropout=0.0), digits,
                                  "sparse_categorical_crossentropy", 1000)
    assert "Dropout" not in [type(layer).__name__ for layer in model.layers]
    model = recipe.compiled_model(dataclasses.replace(config, model="cnn"), digits,
                                  "sparse_categorical_crossentropy", 1000)
    assert "Dropout" not in [type(layer).__name__ for layer in model.layers]
    with pytest.raises(ValueError, match=r"`input_dropout` is for the MLPs.*model='cnn'"):
        training.validate(dataclasses.replace(config, model="cnn", input_dropout=0.2))
    with pytest.raises(ValueError, match="input_dropout"):
        training.validate(dataclasses.replace(config, input_dropout=1.0))


def test_loss_from_config_uses_only_set_hyper_parameters():
    loss = recipe.loss_from_config(training.RunConfig(loss="gce", q=0.5))
    assert isinstance(loss, losses.GeneralizedCrossEntropy) and loss.q == 0.5
    with pytest.raises(ValueError, match=r"'imae' does not take `beta`.*temperature"):
        recipe.loss_from_config(training.RunConfig(loss="imae", beta=16.0))
    with pytest.raises(ValueError, match=r"'cce' does not take `lam`, `q`.*none"):
        recipe.loss_from_config(training.RunConfig(loss="cce", lam=1.0, q=0.3))
    dm = recipe.loss_from_config(training.RunConfig(loss="dm", beta=3.0, normalize="none"))
    # A run's DM defaults (lam=1, beta=16) fill in what was not set; the flags win.
    assert dm.beta == 3.0 and dm.lam == 1.0 and dm.normalize is None
    dm = recipe.loss_from_config(training.RunConfig(loss="dm"))
    assert (dm.beta, dm.lam, dm.max_margin) == (16.0, 1.0, recipe.MAX_MARGIN)
    # The margin cap is on in every run default (DM and IMAE); 0 gives the faithful gradient.
    for loss in ("dm", "imae"):
        for noise_type in ("symmetric", "pairflip"):
            for model in ("mlp", "cnn"):
                config = training.RunConfig(loss=loss, noise_type=noise_type)
                assert recipe.loss_from_config(config, model).max_margin == 16.0
                config = dataclasses.replace(config, max_margin=0.0)
                assert recipe.loss_from_config(config, model).max_margin is None
    with pytest.raises(ValueError, match="max_margin=-1"):
        recipe.loss_from_config(training.RunConfig(loss="dm", max_margin=-1.0))
    assert losses.DerivativeManipulation().max_margin is None  # the class stays faithful
    assert losses.DerivativeManipulation().lam == 0.5  # the class keeps the contract's default
    # Class-dependent and real noise put the emphasis mode higher: lam=2 (mode 2/3).
    for noise_type in ("pairflip", "asymmetric", "none"):
        dm = recipe.loss_from_config(training.RunConfig(loss="dm", noise_type=noise_type))
        assert (dm.beta, dm.lam) == (16.0, 2.0), noise_type
    dm = recipe.loss_from_config(training.RunConfig(loss="dm", noise_type="pairflip", lam=1.0))
    assert (dm.beta, dm.lam) == (16.0, 1.0)
    # beta=16 for the plain MLP (and before the model is known) under every noise type; the
    # BatchNorm architectures 8 under symmetric noise and 4 under class-dependent noise, where
    # (r / (1 - r)) * exp(2 beta / 27) < 1 at r = 0.4.
    for model, symmetric, class_dependent in (("mlp", 16.0, 16.0), (None, 16.0, 16.0),
                                              ("mlp_bn", 8.0, 4.0), ("cnn", 8.0, 4.0),
                                              ("resnet20", 8.0, 4.0)):
        dm = recipe.loss_from_config(training.RunConfig(loss="dm"), model)
        assert (dm.lam, dm.beta) == (1.0, symmetric), model
        dm = recipe.loss_from_config(training.RunConfig(loss="dm", noise_type="pairflip"), model)
        assert (dm.lam, dm.beta) == (2.0, class_dependent), model
        assert 0.4 / 0.6 * math.exp(2 * class_dependent / 27) < 1 or model in ("mlp", None)
    dm = recipe.loss_from_config(training.RunConfig(loss="dm", beta=16.0), "cnn")
    assert dm.beta == 16.0  # a set value wins
    with pytest.raises(ValueError, match="Valid names"):
        recipe.loss_from_config(training.RunConfig(loss="focal"))


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
])
def test_auto_augmentation_crops_images_for_convolutional_models(name, shape, model, expected):
    dataset = type("Dataset", (), {"name": name, "input_shape": shape})()
    config = training.RunConfig(model=model)
    assert recipe.augmentation(config, dataset) == expected
    for explicit, result in (("none", None), ("crop", "crop"), ("cifar", "cifar")):
        assert recipe.augmentation(dataclasses.replace(config, augment=explicit),
                                   dataset) == result
