"""Early-learning regularisation (ELR): per-example running targets the model owns.

Liu et al. (NeurIPS 2020) observe that a network first fits the clean labels (the "early
learning" phase) and only later memorises the wrong ones, so each example's *own early
predictions* are a better target than its label. ELR keeps, for every training example
``i``, a running average ``t_i`` of the model's predictions and adds to the loss of the batch
``B``::

    p_i  = clip(softmax(z_i), 1e-4, 1 - 1e-4)
    t_i <- β t_i + (1 - β) p_i / Σ_k p_ik          (a constant: no gradient flows into t)
    R    = λ / |B| Σ_{i ∈ B} log(1 - <p_i, t_i>)

``∂R/∂z_ij = -(λ / |B|) p_ij (t_ij - <p_i, t_i>) / (1 - <p_i, t_i>)`` (inside the clip): it
pulls ``p_i`` towards ``t_i``, and grows as ``<p_i, t_i>`` nears 1, so once an example's
targets settle on the class the model predicted early, the penalty resists the label's pull
towards another class. It is an *extra* term: unlike the losses of :mod:`keras_imae.losses`,
it does not push along ``p - y``. Defaults are the paper's CIFAR-10 settings (λ = 3,
β = 0.7); its CIFAR-100 setting is λ = 7, β = 0.9.

Where the targets live: :class:`EarlyLearning` is a ``keras.layers.Layer`` that
:class:`keras_imae.models.RobustModel` owns when compiled with ``early_learning=`` (an
``(N, K)`` float32 variable, N the number of training examples, zeros at first). They are a
non-trainable variable of the model: ``save_weights`` (the run's resumable backup) and
``.keras`` files keep them, and on JAX they are part of the state Keras' stateless step
returns. The training batches must carry each example's id (``"id"`` in the targets, e.g.
``keras_imae.data.train_dataset(..., with_ids=True)``); the id indexes the targets, so it
must be the same example's id in every epoch. Only training steps update and use them:
``evaluate`` and validation report the compiled loss alone. Under a ``tf.distribute``
strategy every replica gathers the whole global batch's ids and new targets
(``all_gather``) and writes the same update into its copy (a mirrored variable, aggregation
``only_first_replica``), so the targets stay identical everywhere, and the penalty is
scaled like Keras scales a loss for the cross-replica gradient sum: 2 replicas x 2 examples
train exactly as 1 x 4 (tested). On JAX the arrays are global. Memory: ``4 N K`` bytes on
every replica, rewritten in full by each step (``ops.scatter_update``): fine for 10^5
examples of 100 classes, not for ImageNet.

Reference:
    S. Liu, J. Niles-Weed, N. Razavian, C. Fernandez-Granda. "Early-Learning Regularization
    Prevents Memorization of Noisy Labels." NeurIPS 2020.
"""

import keras

from keras_imae import _backend
from keras_imae import _checks as checks

__all__ = ["EarlyLearning"]

_CLIP = 1e-4


@keras.saving.register_keras_serializable(package="keras_imae")
class EarlyLearning(keras.layers.Layer):
    """ELR's per-example targets and its penalty (formula in the module docstring).

    Args:
        num_examples: ``N``, one more than the largest example id the training data carries.
        lam: ``λ > 0``, the penalty's weight.
        momentum: ``β`` in ``[0, 1)``, the running average's momentum.

    Example:

    >>> model.compile("adam", keras_imae.CategoricalCrossentropy(),
    ...               early_learning=EarlyLearning(num_examples=len(x_train)))
    >>> model.fit(keras_imae.data.train_dataset(x_train, y_train, batch_size=128,
    ...                                         with_ids=True), epochs=40)
    """

    def __init__(self, num_examples, lam=3.0, momentum=0.7, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.num_examples = checks.integer("num_examples", num_examples, low=1)
        self.lam = checks.number("lam", lam, low_open=True)
        self.momentum = checks.number("momentum", momentum, high=1.0, high_open=True)
        self.targets = None

    def build(self, num_classes):
        """Creates the ``(num_examples, num_classes)`` targets, all zero."""
        self.targets = self.add_weight(shape=(self.num_examples, int(num_classes)),
                                       initializer="zeros", trainable=False, name="targets",
                                       aggregation="only_first_replica")

    def penalty(self, ids, logits):
        """Updates the targets of ``ids`` from ``logits`` and returns ``R`` (a scalar)."""
        ops = keras.ops
        ids = ops.reshape(ops.cast(ids, "int32"), (-1,))
        replica = None
        if _backend.is_tensorflow():
            tf = _backend.tf()
            with tf.control_dependencies([tf.debugging.assert_less(
                    ids, self.num_examples, message="EarlyLearning: an example id is >= "
                    "num_examples"), tf.debugging.assert_non_negative(ids)]):
                ids = tf.identity(ids)
            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync == 1:
                replica = None
        probs = ops.clip(ops.softmax(ops.cast(logits, "float32")), _CLIP, 1.0 - _CLIP)
        seen = ops.stop_gradient(probs / ops.sum(probs, axis=-1, keepdims=True))
        old = ops.take(self.targets, ids, axis=0)
        new = self.momentum * old + (1.0 - self.momentum) * seen
        rows, values = ids, new
        if replica is not None:  # every replica writes the whole global batch's rows
            rows, values = replica.all_gather(ids, axis=0), replica.all_gather(new, axis=0)
        self.targets.assign(ops.scatter_update(self.targets, ops.expand_dims(rows, -1), values))
        penalty = self.lam * ops.mean(ops.log(1.0 - ops.sum(new * probs, axis=-1)))
        if replica is not None:  # as Keras scales a loss for the cross-replica gradient sum
            penalty = penalty / replica.num_replicas_in_sync
        return penalty

    def get_config(self):
        return {**super().get_config(), "num_examples": self.num_examples, "lam": self.lam,
                "momentum": self.momentum}
