"""``RobustModel`` and its training-fit metrics, and the architectures (MLP, CNN, CIFAR ResNet).

``RobustModel`` is a ``keras.Model`` (TensorFlow or JAX backend) whose training/test steps
read ``(x, {"label": noisy, "clean_label": clean})`` -- or plain ``(x, y)`` -- train on the
given (noisy) labels with whatever loss was compiled, and report claim 4 of the papers: *a
robust model fits the clean training examples and does not fit the noisy ones*. With ``ŷ`` the
arg-max prediction, ``y`` the given label and ``c`` the clean label of each example:

====================  ==============================================================
``accuracy``          ``Σ 1[ŷ = y] / N``                  (fit to the given labels)
``clean_fit``         ``Σ_{y = c} 1[ŷ = y] / #{y = c}``   (fit of the clean subset)
``noisy_fit``         ``Σ_{y ≠ c} 1[ŷ = y] / #{y ≠ c}``   (memorisation of wrong labels)
``noisy_correct``     ``Σ_{y ≠ c} 1[ŷ = c] / #{y ≠ c}``   (noisy examples predicted right)
====================  ==============================================================

Each is an exact ratio over the epoch (a count-weighted ``keras.metrics.Mean``: Σhits/Σcount,
never a mean of batch means), also across replicas under ``tf.distribute`` and, on JAX, under
``keras.distribution.DataParallel`` (whose arrays are global). A ratio over an empty subset is
absent from the epoch logs: all three clean-label metrics when the data carries no clean
labels, ``noisy_fit`` and ``noisy_correct`` in an epoch without noisy examples. They are counts:
``sample_weight`` weights the loss, not these metrics. During ``fit`` they describe the
(augmented) batches as trained; :class:`keras_imae.callbacks.FitMonitor` measures them on the
un-augmented training set at each epoch end.

References:
    K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
    X. Wang, Y. Hua, E. Kodirov, N. M. Robertson. "IMAE for Noise-Robust Learning: Mean
    Absolute Error Does Not Treat Examples Equally and Gradient Magnitude's Variance
    Matters." arXiv:1903.12141, 2019.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_imae import checks
from keras_imae.keras_compat import KerasHooks, multi_worker_logs

__all__ = [
    "ARCHITECTURES",
    "FIT_METRICS",
    "RobustModel",
    "build_model",
    "check_input_dropout",
    "cifar_resnet",
    "cnn",
    "mlp",
]

FIT_METRICS = ("clean_fit", "noisy_fit", "noisy_correct")
ARCHITECTURES = ("mlp", "mlp_bn", "cnn", "resnet20", "resnet32", "resnet44", "resnet56")
_LABEL_KEYS = ("label", "clean_label")


# --------------------------------------------------------------------------------------------
# RobustModel
# --------------------------------------------------------------------------------------------
def _unpack(data):
    """``data`` -> ``(x, given_label, clean_label_or_None, sample_weight)``."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    return (x, *_split_targets(y, sample_weight))


def _split_targets(y, sample_weight):
    """Labels or ``{"label", "clean_label"}`` -> ``(given, clean_or_None, sample_weight)``."""
    if isinstance(y, dict):
        if "label" not in y or set(y) - set(_LABEL_KEYS):
            raise ValueError(
                "Invalid targets for `RobustModel`. Expected `y` to be labels or a dict with "
                f"key 'label' and optionally 'clean_label'. Received: y keys={sorted(y)}"
            )
        if isinstance(sample_weight, dict):  # Keras maps a sample_weight array over dict targets.
            sample_weight = sample_weight.get("label")
        return y["label"], y.get("clean_label"), sample_weight
    return y, None, sample_weight


@keras.saving.register_keras_serializable(package="keras_imae")
class RobustModel(KerasHooks, keras.Model):
    """A classifier ``keras.Model`` that trains on noisy labels and reports how it fits them.

    Build it like any functional model, ``RobustModel(inputs, outputs)`` (or with
    :func:`build_model`), with outputs = logits ``[B, K]``; compile with any loss that takes
    the given labels (``keras_imae.losses.*`` or Keras' sparse/categorical losses,
    ``from_logits=True``). Data is ``(x, {"label": noisy, "clean_label": clean})``,
    ``(x, {"label": noisy})`` or ``(x, y)``, optionally with a third ``sample_weight`` element.
    Labels are integer ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]``.

    ``train_step``: forward, ``compute_loss`` on the given labels (compiled loss, sample
    weights, regularisation losses), ``optimizer.scale_loss`` (loss scaling under
    ``mixed_float16``), gradients, ``apply_gradients``; then updates ``loss``, the compiled
    metrics and the built-in metrics ``accuracy``, ``clean_fit``, ``noisy_fit``,
    ``noisy_correct`` (formulas in the module docstring; exact epoch ratios, also under
    ``tf.distribute``; the last three only when clean labels are given). ``accuracy`` is built
    in: do not also pass ``metrics=["accuracy"]`` to ``compile``.

    Create (and compile) it inside ``strategy.scope()`` to train under a strategy; it also
    works under ``MultiWorkerMirroredStrategy`` (see :mod:`keras_imae.keras_compat`). On the JAX
    backend, Keras' own stateless steps run (same metrics and logs) through the
    ``compute_loss``/``compute_metrics`` overrides.

    Example:

    >>> inputs = keras.Input((4,))
    >>> model = RobustModel(inputs, keras.layers.Dense(3)(inputs))
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x = np.zeros((8, 4), "float32"); y = np.zeros(8, "int32")
    >>> logs = model.fit(x, {"label": y, "clean_label": y}, verbose=0).history
    >>> sorted(logs)
    ['accuracy', 'clean_fit', 'loss', 'noisy_correct', 'noisy_fit']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.clean_fit_tracker = keras.metrics.Mean(name="clean_fit")
        self.noisy_fit_tracker = keras.metrics.Mean(name="noisy_fit")
        self.noisy_correct_tracker = keras.metrics.Mean(name="noisy_correct")

    # -- steps -------------------------------------------------------------------------------
    # TensorFlow: the steps below. JAX: Keras' own stateless ``train_step(state, data)`` /
    # ``test_step(state, data)``, which reach this class through the ``compute_loss`` /
    # ``compute_metrics`` hooks further down.
    def train_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().train_step(*args)
        (data,) = args
        x, given, clean, sample_weight = _unpack(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=given, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(x, given, clean, y_pred, sample_weight, loss)

    def test_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().test_step(*args)
        (data,) = args
        x, given, clean, sample_weight = _unpack(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(
            x=x, y=given, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        return self._update_metrics(x, given, clean, y_pred, sample_weight, loss)

    def _update_metrics(self, x, given, clean, y_pred, sample_weight, loss):
        # Loss: Keras' tracker (the metric named "loss"); `compute_loss` divided the loss by
        # the number of replicas for the cross-replica gradient sum, undo that for display.
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * tf.cast(replicas, loss.dtype), sample_weight=batch_size)
                break
        return multi_worker_logs(self._metric_logs(x, given, clean, y_pred, sample_weight))

    def _metric_logs(self, x, given, clean, y_pred, sample_weight):
        """Updates ``accuracy``, the fit metrics and the compiled metrics; returns the logs."""
        ops = keras.ops
        pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        given_ids = checks.tensor_label_ids(given, y_pred)
        hit = ops.cast(ops.equal(pred, given_ids), "float32")
        self.accuracy_tracker.update_state(hit)
        if clean is not None:
            clean_ids = checks.tensor_label_ids(clean, y_pred)
            is_noisy = ops.cast(ops.not_equal(given_ids, clean_ids), "float32")
            self.clean_fit_tracker.update_state(hit, sample_weight=1.0 - is_noisy)
            self.noisy_fit_tracker.update_state(hit, sample_weight=is_noisy)
            self.noisy_correct_tracker.update_state(
                ops.cast(ops.equal(pred, clean_ids), "float32"), sample_weight=is_noisy
            )
        # Updates the compiled metrics; the dict it returns is rebuilt below.
        super().compute_metrics(x, given, y_pred, sample_weight=sample_weight)
        logs = keras.Model.get_metrics_result(self)
        if clean is None:
            for name in FIT_METRICS:
                logs.pop(name, None)
        return logs

    # -- Keras hooks used by the JAX backend -------------------------------------------------
    # Keras' own stateless ``JAXTrainer.train_step``/``test_step`` (``compute_loss_and_updates``
    # under ``jax.value_and_grad``, ``optimizer.stateless_apply``, metric updates in a
    # ``StatelessScope``; jit, loss scaling and ``keras.distribution`` shardings included) pass
    # the full targets ``y`` to these two public hooks, which split off the clean label. The
    # TensorFlow steps above call ``compute_loss`` with the given label only.
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Compiled loss of the *given* labels; ``y`` may be the ``{"label", ...}`` dict."""
        given, _, sample_weight = _split_targets(y, sample_weight)
        return super().compute_loss(
            x=x, y=given, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates all metrics (see :meth:`_metric_logs`); ``y`` may be the target dict."""
        given, clean, sample_weight = _split_targets(y, sample_weight)
        return self._metric_logs(x, given, clean, y_pred, sample_weight)

    def get_metrics_result(self):
        """Metric values, without a fit ratio whose subset was empty all epoch.

        ``clean_fit`` is omitted when no clean example was seen, ``noisy_fit`` and
        ``noisy_correct`` when no noisy one was (an undefined 0/0, not 0%; as
        :func:`keras_imae.callbacks.fit_statistics`), so all three are absent without clean
        labels. Called eagerly (cross-replica) at the end of each epoch / evaluation, so values
        are exact global ratios under any strategy.
        """
        logs = super().get_metrics_result()
        if not tf.executing_eagerly():
            return logs
        trackers = {"clean_fit": self.clean_fit_tracker, "noisy_fit": self.noisy_fit_tracker,
                    "noisy_correct": self.noisy_correct_tracker}
        for name, tracker in trackers.items():
            count = keras.ops.convert_to_tensor(tracker.count)
            # Always eager on JAX: there, skip tracers (calls inside a step).
            if not checks.is_jax_tracer(count) and float(keras.ops.convert_to_numpy(count)) == 0:
                logs.pop(name, None)
        return logs

    def _symbolic_build_batch(self, batch):
        """``(x, given_label, sample_weight)``: what the compiled loss and metrics see (used by
        :class:`keras_imae.keras_compat.KerasHooks` to build them)."""
        x, given, _, sample_weight = _unpack(batch)
        return x, given, sample_weight


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------
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
            images: :func:`keras_imae.recipe.input_dropout`).
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
    raise ValueError(
        f"Invalid value for argument `name`. Expected one of {list(ARCHITECTURES)}. "
        f"Received: name={name!r}"
    )
