"""Pretrained backbones: any ``keras.applications`` network under a new classification head.

The model takes the *raw* images of the data (any side, 1 or 3 channels, pixel values as the
backbone's ImageNet weights expect them: 0-255) and does everything else itself, so its
SavedModel does too::

    inputs -> Resizing(image_size) -> BackbonePreprocess(name): gray to RGB, the
    application's own ``preprocess_input`` -> backbone(include_top=False, pooling="avg")
    -> Dropout(head_dropout) -> Dense(K) float32 logits

A pretrained backbone's BatchNormalization layers stay frozen in every phase, which in Keras 3
also runs them in inference mode: they keep their pretrained statistics and scales, as Keras'
fine-tuning examples do -- a few noisy batches would otherwise replace statistics learned on
far more data. (Calling the backbone with ``training=False`` would not do it: a Keras 3
functional model passes its own ``training`` to every layer.) A randomly initialised backbone
trains its BatchNorm as usual, with the momentum of the project's other networks
(:data:`SCRATCH_BN_MOMENTUM`). :func:`set_backbone_trainable` freezes and unfreezes the rest
(the two phases of :mod:`keras_imae.run`).

Weights come from a file of that backbone without its top (``backbone.save_weights`` of a
``keras.applications.NAME(include_top=False, ...)``), or ``"imagenet"``: Keras' own cache
(``~/.keras/models``, or ``$KERAS_HOME/models``) of the weights Keras downloads. Nothing is
downloaded here: without the cached file, :func:`backbone_model` raises a ``ValueError``
naming the file, where it comes from and where to put it.

References:
    F. Chollet. "Transfer learning & fine-tuning." keras.io guide (2020, Keras 3 version 2023).
"""

import contextlib
import hashlib
import importlib
import os

import keras

from keras_imae import _checks as checks
from keras_imae.models._robust import RobustModel

__all__ = ["BackbonePreprocess", "MIN_IMAGE_SIZE", "backbone_layer", "backbone_model",
           "backbone_names", "check_weights", "default_image_size", "is_backbone",
           "set_backbone_trainable", "weights_digest"]

BACKBONE_LAYER = "backbone"
MIN_IMAGE_SIZE = 32  # the smallest side most keras.applications accept without their top
# The side each family's ImageNet weights were trained at, where it is not 224 (Keras'
# applications documentation); a run resizes to it when it loads "imagenet" weights.
_IMAGENET_SIDES = {
    "EfficientNetB1": 240, "EfficientNetB2": 260, "EfficientNetB3": 300, "EfficientNetB4": 380,
    "EfficientNetB5": 456, "EfficientNetB6": 528, "EfficientNetB7": 600,
    "EfficientNetV2B1": 240, "EfficientNetV2B2": 260, "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384, "EfficientNetV2M": 480, "EfficientNetV2L": 480,
    "InceptionV3": 299, "InceptionResNetV2": 299, "Xception": 299, "NASNetLarge": 331,
}


def backbone_names():
    """Every ``keras.applications`` model constructor, by class name (``"ResNet50"``...)."""
    return tuple(sorted(name for name in dir(keras.applications)
                        if name[:1].isupper() and callable(getattr(keras.applications, name))))


def is_backbone(name):
    """Whether ``name`` is a ``keras.applications`` constructor (:func:`backbone_names`)."""
    return isinstance(name, str) and name in backbone_names()


def _constructor(name):
    if not is_backbone(name):
        raise ValueError(
            f"Invalid backbone {name!r}. Expected a keras.applications class name, one of "
            f"{', '.join(backbone_names())}.")
    return getattr(keras.applications, name)


def default_image_size(name, weights, input_shape):
    """The side a backbone sees: its ImageNet side for ``weights="imagenet"`` (224 unless
    Keras documents another), else the data's own side, at least :data:`MIN_IMAGE_SIZE`."""
    if weights == "imagenet":
        return _IMAGENET_SIDES.get(name, 224)
    return max(MIN_IMAGE_SIZE, *input_shape[:2])


def check_weights(weights):
    """``weights``: ``None`` (random), ``"imagenet"`` (Keras' cache) or an existing file.

    Raises:
        ValueError: a path that is not a file.
    """
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, str) or not os.path.isfile(weights):
        raise ValueError(
            f"Invalid value for `weights`: no weights file at {weights!r}. Expected 'imagenet' "
            "or the path of a .weights.h5 (or Keras applications .h5) file of the backbone "
            f"without its top. Received: weights={weights!r}")
    return weights


def weights_digest(weights):
    """The SHA-256 of a weights file (a resume with other weights is refused); ``weights``
    itself for ``None`` and ``"imagenet"``."""
    if weights is None or weights == "imagenet":
        return weights
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _cached_weights_only():
    """Within: Keras' ``get_file`` (which the applications call for ``"imagenet"``) returns
    the cached file or raises ``ValueError`` naming it: never a download."""
    from keras.src.utils import file_utils  # the module the applications call

    original = file_utils.get_file

    def cached(fname=None, origin=None, cache_subdir="datasets", cache_dir=None, **_):
        fname = fname or os.path.basename(origin)
        root = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(
            os.path.expanduser("~"), ".keras")
        path = os.path.join(root, cache_subdir, fname)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights='imagenet' reads Keras' cache and downloads nothing: {path!r} is "
                f"missing. Download {origin} on a machine with internet and put it there "
                "(or set KERAS_HOME), or pass --weights=PATH of your own file.")
        return path

    file_utils.get_file = cached
    try:
        yield
    finally:
        file_utils.get_file = original


@keras.saving.register_keras_serializable(package="keras_imae")
class BackbonePreprocess(keras.layers.Layer):
    """Raw images to what backbone ``backbone`` expects: one channel repeated to three, then
    the application's own ``preprocess_input`` (a no-op for the networks that preprocess
    inside themselves, e.g. EfficientNet, ConvNeXt, MobileNetV3)."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        constructor = _constructor(backbone)
        self._preprocess = importlib.import_module(constructor.__module__).preprocess_input

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        return self._preprocess(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def backbone_model(name, input_shape, num_classes, *, weights=None, image_size=None,
                   head_dropout=0.2, backbone_kwargs=None):
    """A ``keras.applications`` network ``name`` under a new head, as an uncompiled
    :class:`RobustModel` taking raw images (see the module docstring).

    Args:
        name: a class name of ``keras.applications`` (:func:`backbone_names`).
        input_shape: ``(H, W, C)`` of one raw image, ``C`` 1 or 3.
        num_classes: number of classes ``K >= 2`` (logits).
        weights: ``None`` (random initialisation), ``"imagenet"`` (Keras' cache, never
            downloaded) or the path of a weights file of the backbone without its top.
        image_size: the side the images are resized to; default
            :func:`default_image_size`.
        head_dropout: rate of ``Dropout`` before the new logits.
        backbone_kwargs: more keyword arguments of the application (e.g. ``alpha``).

    Raises:
        ValueError: an unknown name, a shape that is not an image of 1 or 3 channels, a
            missing weights file, weights that do not fit the backbone.
    """
    constructor = _constructor(name)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(
            f"Backbone {name!r} takes images of 1 or 3 channels. Received: "
            f"input_shape={input_shape}")
    checks.integer("num_classes", num_classes, low=2)
    checks.number("head_dropout", head_dropout, high=1.0, high_open=True)
    weights = check_weights(weights)
    size = image_size or default_image_size(name, weights, input_shape)
    checks.integer("image_size", size, low=MIN_IMAGE_SIZE)
    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    if tuple(input_shape[:2]) != (size, size):
        x = keras.layers.Resizing(size, size, name="resize")(x)
    x = BackbonePreprocess(name, name="preprocess")(x)
    try:
        with _cached_weights_only():
            backbone = constructor(include_top=False, weights=weights,
                                   input_shape=(size, size, 3), pooling="avg",
                                   **(backbone_kwargs or {}))
    except ValueError as err:
        if weights in (None, "imagenet") and "downloads nothing" in str(err):
            raise
        raise ValueError(f"Cannot build backbone {name!r} with weights={weights!r} at "
                         f"{size}x{size}: {err}") from None
    backbone.name = BACKBONE_LAYER
    set_backbone_trainable(backbone, True, batch_norm=weights is None)
    if weights is None:
        _fast_batch_norm(backbone)
    x = backbone(x)
    if head_dropout:
        x = keras.layers.Dropout(head_dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return RobustModel(inputs, logits, name=f"{name}_classifier")


def backbone_layer(model):
    """The backbone inside a model of :func:`backbone_model`, or ``None``."""
    for layer in model.layers:
        if layer.name == BACKBONE_LAYER:
            return layer
    return None


def _layers(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _layers(child)


SCRATCH_BN_MOMENTUM = 0.9


def _fast_batch_norm(backbone):
    """A randomly initialised backbone's BatchNorm averages its statistics with momentum
    :data:`SCRATCH_BN_MOMENTUM` (that of the project's other networks), not Keras' 0.99 or
    0.999, made for ImageNet's thousands of steps an epoch: with them, a run of a few hundred
    steps evaluates with statistics still near their initial values, and its predictions are
    constant until they settle."""
    for layer in _layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM


def set_backbone_trainable(model, trainable, *, batch_norm=False):
    """Freeze (``trainable=False``) or unfreeze the backbone of ``model`` (a model of
    :func:`backbone_model`, or the backbone itself); its BatchNormalization layers stay frozen
    (in inference mode) unless ``batch_norm``. Compile again afterwards: Keras fixes the
    trained variables at compile time. Returns whether ``model`` has a backbone."""
    backbone = model if model.name == BACKBONE_LAYER else backbone_layer(model)
    if backbone is None:
        return False
    backbone.trainable = bool(trainable)
    if trainable and not batch_norm:
        for layer in _layers(backbone):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return True
