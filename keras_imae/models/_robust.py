"""``RobustModel``: a ``keras.Model`` that trains on noisy labels and reports what it fits.

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

from keras_imae import _backend
from keras_imae.losses import tensor_label_ids
from keras_imae.models._early_learning import EarlyLearning
from keras_imae.models._keras_compat import KerasHooks, multi_worker_logs

__all__ = ["FIT_METRICS", "RobustModel"]

FIT_METRICS = ("clean_fit", "noisy_fit", "noisy_correct")
_LABEL_KEYS = ("label", "clean_label", "id")


# --------------------------------------------------------------------------------------------
# RobustModel
# --------------------------------------------------------------------------------------------
def _unpack(data):
    """``data`` -> ``(x, given_label, clean_label_or_None, sample_weight)``."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    return (x, *_split_targets(y, sample_weight))


def _split_targets(y, sample_weight):
    """Labels or ``{"label", "clean_label", "id"}`` -> ``(given, clean_or_None,
    sample_weight)`` (the example ids: :func:`_example_ids`)."""
    if isinstance(y, dict):
        if "label" not in y or set(y) - set(_LABEL_KEYS):
            raise ValueError(
                "Invalid targets for `RobustModel`. Expected `y` to be labels or a dict with "
                "key 'label' and optionally 'clean_label' and 'id'. Received: y keys="
                f"{sorted(y)}"
            )
        if isinstance(sample_weight, dict):  # Keras maps a sample_weight array over dict targets.
            sample_weight = sample_weight.get("label")
        return y["label"], y.get("clean_label"), sample_weight
    return y, None, sample_weight


def _example_ids(y):
    """The batch's example ids (``y["id"]``), or ``None``."""
    return y.get("id") if isinstance(y, dict) else None


@keras.saving.register_keras_serializable(package="keras_imae")
class RobustModel(KerasHooks, keras.Model):
    """A classifier ``keras.Model`` that trains on noisy labels and reports how it fits them.

    Build it like any functional model, ``RobustModel(inputs, outputs)`` (or with
    :func:`build_model`), with outputs = logits ``[B, K]``; compile with any loss that takes
    the given labels (``keras_imae.losses.*`` or Keras' sparse/categorical losses,
    ``from_logits=True``). Data is ``(x, {"label": noisy, "clean_label": clean})``,
    ``(x, {"label": noisy})`` or ``(x, y)``, optionally with a third ``sample_weight`` element.
    Labels are integer ids ``[B]``/``[B, 1]`` or one-hot ``[B, K]``. ``compile(...,
    early_learning=EarlyLearning(N))`` adds ELR's penalty to the training loss
    (:class:`keras_imae.models.EarlyLearning`; the targets then carry ``"id"``).

    ``train_step``: forward, ``compute_loss`` on the given labels (compiled loss, sample
    weights, regularisation losses), ``optimizer.scale_loss`` (loss scaling under
    ``mixed_float16``), gradients, ``apply_gradients``; then updates ``loss``, the compiled
    metrics and the built-in metrics ``accuracy``, ``clean_fit``, ``noisy_fit``,
    ``noisy_correct`` (formulas in the module docstring; exact epoch ratios, also under
    ``tf.distribute``; the last three only when clean labels are given). ``accuracy`` is built
    in: do not also pass ``metrics=["accuracy"]`` to ``compile``.

    Create (and compile) it inside ``strategy.scope()`` to train under a strategy; it also
    works under ``MultiWorkerMirroredStrategy`` (see :mod:`keras_imae.models._keras_compat`).
    On the JAX backend, Keras' own stateless steps run (same metrics and logs) through the
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
        self._loss_states = []  # the compiled loss's state (a tracked list: see compile)
        self._early_learning = []  # ELR's per-example targets, when compiled with them

    def compile(self, *args, early_learning=None, **kwargs):
        """``keras.Model.compile``; then the compiled loss's training-phase state
        (``loss.state`` of a :mod:`keras_imae.losses` loss with a warm-up or an estimated
        noise transition) is built for this model's classes -- in the scope ``compile`` runs
        in, so its variables are mirrored under a ``tf.distribute`` strategy -- and tracked:
        its variables are the model's non-trainable variables (the state Keras' JAX steps
        receive), and ``save``/``save_weights`` keep them (as ``loss/state``).

        ``early_learning``: an :class:`keras_imae.models.EarlyLearning`, whose penalty every
        training step adds to the compiled loss; built here for this model's classes, owned
        and saved like the loss's state, and kept in the compile config (a ``.keras`` file
        reloads with it)."""
        super().compile(*args, **kwargs)
        self._set_early_learning(early_learning)
        self._loss_states.clear()  # untracks a previous loss's state
        state = getattr(self.loss, "state", None)
        if state is None:
            return
        num_classes = self.output_shape[-1]
        if not state.built:
            state.build(num_classes)
        elif "noise_transition" in state.names and state.num_classes != num_classes:
            raise ValueError(f"The loss's state was built for {state.num_classes} classes; "
                             f"this model predicts {num_classes}. Use a new loss.")
        self._loss_states.append(state)

    def _set_early_learning(self, early_learning):
        self._early_learning.clear()
        if early_learning is None:
            return
        if not isinstance(early_learning, EarlyLearning):
            raise ValueError("Invalid value for argument `early_learning`. Expected a "
                             "keras_imae.models.EarlyLearning. Received: "
                             f"early_learning={early_learning!r}")
        if not early_learning.built:
            early_learning.build(self.output_shape[-1])
        self._early_learning.append(early_learning)
        self._compile_config.config["early_learning"] = early_learning

    @property
    def early_learning(self):
        """The :class:`keras_imae.models.EarlyLearning` compiled with, or ``None``."""
        return self._early_learning[0] if self._early_learning else None

    def compile_from_config(self, config):
        """``keras.Model.compile_from_config`` through :meth:`compile` (Keras skips a custom
        ``compile`` when loading unless this is overridden too): a loaded model is compiled,
        its loss's state built, before its variables are read back."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # as Keras: before its variables load

    # -- steps -------------------------------------------------------------------------------
    # TensorFlow: the steps below. JAX: Keras' own stateless ``train_step(state, data)`` /
    # ``test_step(state, data)``, which reach this class through the ``compute_loss`` /
    # ``compute_metrics`` hooks further down.
    def train_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().train_step(*args)
        (data,) = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        given, clean, given_weight = _split_targets(y, sample_weight)
        with _backend.tf().GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(x, given, clean, y_pred, given_weight, loss)

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
        tf = _backend.tf()  # the TensorFlow steps only
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
        given_ids = tensor_label_ids(given, y_pred)
        hit = ops.cast(ops.equal(pred, given_ids), "float32")
        self.accuracy_tracker.update_state(hit)
        if clean is not None:
            clean_ids = tensor_label_ids(clean, y_pred)
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
        """Compiled loss of the *given* labels; ``y`` may be the ``{"label", ...}`` dict.
        In training, plus the ELR penalty of the batch's ``"id"``s when compiled with
        ``early_learning`` (which then updates their targets)."""
        given, _, given_weight = _split_targets(y, sample_weight)
        loss = super().compute_loss(
            x=x, y=given, y_pred=y_pred, sample_weight=given_weight, training=training
        )
        if not (training and self._early_learning):
            return loss
        ids = _example_ids(y)
        if ids is None:
            raise ValueError("This model was compiled with `early_learning`, which needs each "
                             "training example's id: targets {'label': ..., 'id': ...} "
                             "(keras_imae.data.train_dataset(..., with_ids=True)).")
        return loss + keras.ops.cast(self._early_learning[0].penalty(ids, y_pred), loss.dtype)

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
        if _backend.is_tensorflow() and not _backend.tf().executing_eagerly():
            return logs
        trackers = {"clean_fit": self.clean_fit_tracker, "noisy_fit": self.noisy_fit_tracker,
                    "noisy_correct": self.noisy_correct_tracker}
        for name, tracker in trackers.items():
            count = keras.ops.convert_to_tensor(tracker.count)
            # Always eager on JAX: there, skip tracers (calls inside a step).
            if not _backend.is_jax_tracer(count) and float(keras.ops.convert_to_numpy(count)) == 0:
                logs.pop(name, None)
        return logs

    def _symbolic_build_batch(self, batch):
        """``(x, given_label, sample_weight)``: what the compiled loss and metrics see (used by
        :class:`keras_imae.models._keras_compat.KerasHooks` to build them)."""
        x, given, _, sample_weight = _unpack(batch)
        return x, given, sample_weight
