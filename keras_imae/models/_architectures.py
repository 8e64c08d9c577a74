"""The architectures: MLP (also tabular), a small CNN and the CIFAR ResNets of He et al.

Each builder returns an uncompiled :class:`keras_imae.models.RobustModel` whose first layer is
``Normalization(mean, std**2)`` when the raw input's statistics are given (an exported model
takes raw pixels) and whose output is ``K`` float32 logits.

References:
    K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
"""

import keras
import numpy as np

from keras_imae import _checks as checks
from keras_imae.models._backbones import backbone_names, is_backbone
from keras_imae.models._robust import RobustModel

__all__ = ["ARCHITECTURES", "build_model", "check_input_dropout", "check_model_name", "cifar_resnet", "cnn", "mlp"]

ARCHITECTURES = ("mlp", "mlp_bn", "cnn", "resnet20", "resnet32", "resnet44", "resnet56")


class _Seeds:
    """Distinct per-layer initializer seeds derived from one seed (``None`` stays random)."""

    def __init__(self, seed):
        self._seed, self._n = seed, 0

    def __call__(self):
        if self._seed is None:
            return None
        self._n += 1
        return self._seed * 1000 + self._n


def _check_shape(name, input_shape, ranks):
    input_shape = tuple(input_shape)
    if len(input_shape) not in ranks or any(d is not None and d < 1 for d in input_shape):
        raise ValueError(
            f"Invalid value for argument `input_shape` of architecture '{name}'. Expected "
            f"{' or '.join(str(r) for r in ranks)} positive dimensions (no batch dimension). "
            f"Received: input_shape={input_shape}"
        )
    return input_shape


def _inputs(input_shape, mean, std):
    """``keras.Input`` followed by ``Normalization(mean, std**2)`` when given."""
    inputs = keras.Input(shape=input_shape, name="inputs")
    if mean is None and std is None:
        return inputs, inputs
    if mean is None or std is None:
        raise ValueError(
            "Arguments `mean` and `std` must be given together. "
            f"Received: mean={mean}, std={std}"
        )
    channels = input_shape[-1]
    mean = np.broadcast_to(np.asarray(mean, "float32"), (channels,))
    std = np.broadcast_to(np.asarray(std, "float32"), (channels,))
    if np.any(std <= 0):
        raise ValueError(f"Invalid value for argument `std`. Expected > 0. Received: std={std}")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="normalize")(inputs)
    return inputs, x


def _regularizer(weight_decay):
    # `weight_decay` is the coefficient of the papers' (Caffe/PyTorch) SGD weight decay,
    # grad += wd * w, i.e. the penalty (wd / 2) * ||w||^2 = keras L2(wd / 2).
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def _check_common(num_classes, weight_decay):
    checks.integer("num_classes", num_classes, low=2)
    checks.number("weight_decay", weight_decay)


def _logits(x, num_classes, reg, seeds):
    # float32 logits under mixed precision (the losses and metrics compute in float32).
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()),
        kernel_regularizer=reg,
        dtype="float32",
        name="logits",
    )(x)


def mlp(input_shape, num_classes, *, hidden_units=(256, 256), batch_norm=False,
        input_dropout=0.0, dropout=0.0, mean=None, std=None, weight_decay=0.0, seed=None):
    """Multi-layer perceptron: ``[Normalization] → Flatten → [Dropout] → (Dense [+ BN] + ReLU
    [+ Dropout])* → Dense(K)``.

    Works for tabular input (``input_shape=(features,)``, per-feature ``mean``/``std``) and
    for images (flattened after per-channel normalisation).

    Args:
        input_shape: Shape of one example, without the batch dimension.
        num_classes: Number of classes ``K >= 2``; the model outputs ``K`` logits.
        hidden_units: Widths of the hidden ReLU layers.
        batch_norm: ``BatchNormalization`` between each hidden ``Dense`` (then bias-free) and
            its ReLU (architecture ``"mlp_bn"``).
        input_dropout: Rate of ``Dropout`` on the normalised input features (Srivastava et
            al. 2014's input dropout; training only). An MLP's counterpart of the random
            translation a convolutional model gets: a wrong label can only be carved out if
            the exception holds for every mask (``scripts/train.py`` uses 0.2 for an MLP on
            images: ``keras_imae.config.recipe.DEFAULTS``).
        dropout: Rate of ``Dropout`` after each hidden ReLU (0: none).
        mean, std: Per-channel (last axis) statistics of the raw input, or ``None``.
        weight_decay: SGD weight-decay coefficient on kernels (``L2(weight_decay / 2)``).
        seed: Integer seed for the initializers, or ``None``.

    Returns:
        An uncompiled :class:`RobustModel`.
    """
    input_shape = _check_shape("mlp", input_shape, ranks=(1, 2, 3))
    _check_common(num_classes, weight_decay)
    seeds, reg = _Seeds(seed), _regularizer(weight_decay)
    inputs, x = _inputs(input_shape, mean, std)
    check_input_dropout(input_dropout, "mlp_bn" if batch_norm else "mlp")
    checks.number("dropout", dropout, high=1.0, high_open=True)
    if len(input_shape) > 1:
        x = keras.layers.Flatten()(x)
    if input_dropout:
        x = keras.layers.Dropout(input_dropout, seed=seeds(), name="input_dropout")(x)
    for units in hidden_units:
        x = keras.layers.Dense(
            units,
            use_bias=not batch_norm,
            kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
            kernel_regularizer=reg,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.ReLU()(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seeds())(x)
    name = "mlp_bn" if batch_norm else "mlp"
    return RobustModel(inputs, _logits(x, num_classes, reg, seeds), name=name)


def _conv_bn_relu(x, filters, *, strides=1, relu=True, reg, seeds):
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
        kernel_regularizer=reg,
    )(x)
    # momentum/epsilon as in the papers' (Caffe/PyTorch) CIFAR ResNets.
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    return keras.layers.ReLU()(x) if relu else x


def cnn(input_shape, num_classes, *, filters=(32, 64), mean=None, std=None, weight_decay=0.0,
        seed=None):
    """Small CNN: per stage two ``Conv3x3-BN-ReLU`` and a 2x2 max-pool; global average pool;
    ``Dense(K)``. Default ``filters=(32, 64)`` (two stages, ~66k parameters).

    Args: as :func:`mlp`, with ``filters`` the per-stage widths; ``input_shape`` is
    ``(H, W, C)``.

    Returns:
        An uncompiled :class:`RobustModel`.
    """
    input_shape = _check_shape("cnn", input_shape, ranks=(3,))
    _check_common(num_classes, weight_decay)
    seeds, reg = _Seeds(seed), _regularizer(weight_decay)
    inputs, x = _inputs(input_shape, mean, std)
    for f in filters:
        x = _conv_bn_relu(x, f, reg=reg, seeds=seeds)
        x = _conv_bn_relu(x, f, reg=reg, seeds=seeds)
        x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return RobustModel(inputs, _logits(x, num_classes, reg, seeds), name="cnn")


@keras.saving.register_keras_serializable(package="keras_imae")
class ShortcutA(keras.layers.Layer):
    """He et al. (2016) option-A shortcut: identity, subsampled by ``strides`` and zero-padded
    to ``filters`` channels (half of the new channels before, half after). Parameter-free."""

    def __init__(self, filters, *, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = int(filters), int(strides)

    def call(self, x):
        x = x[:, :: self.strides, :: self.strides, :]
        extra = self.filters - x.shape[-1]
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        ceil = lambda d: None if d is None else -(-d // self.strides)  # noqa: E731
        return (b, ceil(h), ceil(w), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


def cifar_resnet(depth, input_shape, num_classes, *, shortcut="A", mean=None, std=None,
                 weight_decay=0.0, seed=None):
    """CIFAR ResNet of He et al. (2016, §4.2): depth ``6n + 2``.

    ``Conv3x3(16)-BN-ReLU``, then 3 stages of ``n`` basic blocks with 16/32/64 filters (stride
    2 at the first block of stages 2 and 3), global average pool, ``Dense(K)``. A basic block
    is ``Conv3x3-BN-ReLU-Conv3x3-BN``, added to the shortcut, then ReLU. ``shortcut="A"`` (the
    paper's CIFAR choice, default): parameter-free identity, subsampled and zero-padded when
    the shape changes -- ResNet-20 has 0.27M parameters (269,722 trainable for K = 10).
    ``shortcut="B"``: ``Conv1x1-BN`` projection when the shape changes.

    Args:
        depth: ``20``, ``32``, ``44``, ``56``, ``110``, ... (``(depth - 2) % 6 == 0``).
        input_shape, num_classes, mean, std, weight_decay, seed: as :func:`mlp`.
        shortcut: ``"A"`` or ``"B"``.

    Returns:
        An uncompiled :class:`RobustModel`.

    References:
        K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition."
        CVPR 2016.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 8 or (
        (depth - 2) % 6
    ):
        raise ValueError(
            "Invalid value for argument `depth`. Expected 6n + 2 with n >= 1 (20, 32, 44, 56, "
            f"110, ...). Received: depth={depth}"
        )
    if shortcut not in ("A", "B"):
        raise ValueError(
            f"Invalid value for argument `shortcut`. Expected 'A' or 'B'. Received: "
            f"shortcut={shortcut!r}"
        )
    input_shape = _check_shape(f"resnet{depth}", input_shape, ranks=(3,))
    _check_common(num_classes, weight_decay)
    seeds, reg = _Seeds(seed), _regularizer(weight_decay)
    inputs, x = _inputs(input_shape, mean, std)
    x = _conv_bn_relu(x, 16, reg=reg, seeds=seeds)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range((depth - 2) // 6):
            strides = 2 if stage > 0 and block == 0 else 1
            y = _conv_bn_relu(x, filters, strides=strides, reg=reg, seeds=seeds)
            y = _conv_bn_relu(y, filters, relu=False, reg=reg, seeds=seeds)
            if strides == 1 and x.shape[-1] == filters:
                short = x
            elif shortcut == "A":
                short = ShortcutA(filters, strides=strides)(x)
            else:
                short = keras.layers.Conv2D(
                    filters,
                    1,
                    strides=strides,
                    use_bias=False,
                    kernel_initializer=keras.initializers.HeNormal(seed=seeds()),
                    kernel_regularizer=reg,
                )(x)
                short = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(short)
            x = keras.layers.ReLU()(keras.layers.Add()([y, short]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return RobustModel(inputs, _logits(x, num_classes, reg, seeds), name=f"resnet{depth}")


def check_input_dropout(rate, name=None):
    """``rate`` if it is an input dropout rate in ``[0, 1)`` that architecture ``name`` takes
    (``None``: not known yet), else ``ValueError``: only the MLPs take one, a convolutional
    model is translated instead (``augment``)."""
    rate = checks.number("input_dropout", rate, high=1.0, high_open=True)
    if rate and name is not None and name not in ("mlp", "mlp_bn"):
        raise ValueError(
            f"`input_dropout` is for the MLPs (mlp, mlp_bn); a convolutional model is "
            f"translated instead (`augment`). Received: input_dropout={rate}, model={name!r}")
    return rate


def build_model(name, input_shape, num_classes, *, mean=None, std=None, weight_decay=0.0,
                input_dropout=0.0, seed=None):
    """Builds one of :data:`ARCHITECTURES` as an uncompiled :class:`RobustModel`.

    ``"mlp"`` (:func:`mlp`, 2 x 256 hidden units; also for tabular ``(features,)`` input),
    ``"mlp_bn"`` (the same with BatchNormalization before each ReLU),
    ``"cnn"`` (:func:`cnn`), ``"resnet20|32|44|56"`` (:func:`cifar_resnet`, option-A
    shortcuts). The first layer is ``Normalization(mean, std**2)`` when ``mean``/``std`` are
    given, so the model takes raw pixels. Build it inside ``strategy.scope()`` to distribute.

    Args:
        name: Architecture name.
        input_shape: Shape of one example, without the batch dimension.
        num_classes: Number of classes (logits).
        mean, std: Per-channel statistics of the raw input, or ``None``.
        weight_decay: SGD weight decay on kernels (penalty ``weight_decay / 2 * ||W||^2``).
        input_dropout: The MLPs' input dropout rate (:func:`mlp`); a convolutional model
            takes none (it is translated instead: ``augment``), so a non-zero rate is an
            error there.
        seed: Integer initializer seed (same seed, same initial weights), or ``None``.

    Returns:
        A :class:`RobustModel` whose output is logits ``[B, num_classes]``.
    """
    kwargs = dict(mean=mean, std=std, weight_decay=weight_decay, seed=seed)
    if name in ("mlp", "mlp_bn"):
        return mlp(input_shape, num_classes, batch_norm=name == "mlp_bn",
                   input_dropout=input_dropout, **kwargs)
    if name in ARCHITECTURES:
        check_input_dropout(input_dropout, name)
    if name == "cnn":
        return cnn(input_shape, num_classes, **kwargs)
    if name in ARCHITECTURES:
        return cifar_resnet(int(name[len("resnet"):]), input_shape, num_classes, **kwargs)
    check_model_name(name)
    raise ValueError(f"{name!r} is a keras.applications backbone: build it with "
                     "keras_imae.models.backbone_model (it takes raw images, no mean/std).")


def check_model_name(name):
    """``name`` if it is one of :data:`ARCHITECTURES` or a ``keras.applications`` class name
    (:func:`keras_imae.models.backbone_names`), else ``ValueError`` listing both."""
    if name in ARCHITECTURES or is_backbone(name):
        return name
    raise ValueError(
        f"Invalid value for `model`. Expected one of {list(ARCHITECTURES)} or a "
        f"keras.applications class name ({', '.join(backbone_names())}). "
        f"Received: model={name!r}")
