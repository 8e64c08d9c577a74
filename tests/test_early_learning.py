"""Tests for ELR (keras_imae.models.EarlyLearning) inside RobustModel's steps.

The gradient is checked through one SGD step of a model whose logits are its weights
(``x`` one-hot, ``logits = x @ W``): ``W`` moves by exactly minus the loss gradient of each
example's logits, compared with the closed form computed here in numpy. Backend-neutral:
tests/test_jax_backend.py re-runs the marked ones on JAX.
"""

import json

import keras
import numpy as np
import pytest

import keras_imae
from keras_imae import data, models

LOGITS = np.array([[2.0, 0.5, -1.0], [0.2, 0.1, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, -2.0]],
                  "float32")
LABELS = np.array([0, 2, 1, 1], "int32")
IDS = np.array([4, 0, 2, 5], "int64")  # rows 1 and 3 of the targets stay untouched
TARGETS = np.random.default_rng(0).dirichlet(np.ones(3), size=6).astype("float32")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _logit_model(early_learning=None, lr=1.0):
    n, k = LOGITS.shape
    inputs = keras.Input((n,))
    dense = keras.layers.Dense(k, use_bias=False)
    model = models.RobustModel(inputs, dense(inputs))
    dense.set_weights([LOGITS])
    model.compile(keras.optimizers.SGD(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  early_learning=early_learning)
    return model


def _expected_step(lam, momentum):
    """(new targets of IDS, gradient of the mean loss w.r.t. each example's logits)."""
    p = _softmax(LOGITS.astype("float64"))
    t = momentum * TARGETS[IDS] + (1 - momentum) * p
    s = (p * t).sum(-1, keepdims=True)
    n = len(LOGITS)
    cce = (p - np.eye(3)[LABELS]) / n
    elr = -lam / n * p * (t - s) / (1 - s)
    return t, cce + elr


@pytest.mark.parametrize("lam,momentum", [(3.0, 0.7), (7.0, 0.9), (0.5, 0.0)])
def test_one_step_moves_logits_by_the_closed_form_gradient(lam, momentum):
    early = models.EarlyLearning(num_examples=6, lam=lam, momentum=momentum)
    model = _logit_model(early)
    early.targets.assign(TARGETS)
    x = np.eye(len(LOGITS), dtype="float32")
    model.fit(x, {"label": LABELS, "id": IDS}, batch_size=len(x), shuffle=False, verbose=0)
    targets, gradient = _expected_step(lam, momentum)
    np.testing.assert_allclose(model.get_weights()[0], LOGITS - gradient, atol=2e-6)
    after = keras.ops.convert_to_numpy(early.targets)
    np.testing.assert_allclose(after[IDS], targets, atol=2e-6)
    untouched = [1, 3]
    np.testing.assert_array_equal(after[untouched], TARGETS[untouched])


def test_training_without_ids_is_an_error_and_evaluate_ignores_the_penalty():
    model = _logit_model(models.EarlyLearning(num_examples=6))
    x = np.eye(len(LOGITS), dtype="float32")
    with pytest.raises(ValueError, match="needs each training example's id"):
        model.fit(x, {"label": LABELS}, batch_size=4, verbose=0)
    # evaluate: the compiled loss alone, and the targets stay as they were
    plain = _logit_model()
    with_elr = _logit_model(models.EarlyLearning(num_examples=6))
    y = {"label": LABELS, "id": IDS}
    a = plain.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    b = with_elr.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    assert not np.any(keras.ops.convert_to_numpy(with_elr.early_learning.targets))


def test_keras_file_reloads_with_its_targets(tmp_path):
    model = _logit_model(models.EarlyLearning(num_examples=6, lam=2.0, momentum=0.5))
    x = np.eye(len(LOGITS), dtype="float32")
    model.fit(x, {"label": LABELS, "id": IDS}, batch_size=4, epochs=2, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras_imae.load_model(path)
    assert loaded.early_learning.get_config() == model.early_learning.get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.early_learning.targets),
                                  keras.ops.convert_to_numpy(model.early_learning.targets))
    # and both continue identically
    for m in (model, loaded):
        m.fit(x, {"label": LABELS, "id": IDS}, batch_size=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(loaded.get_weights()[0], model.get_weights()[0], atol=1e-6)


def test_the_serving_export_leaves_the_targets_out_and_serves_the_same(tmp_path):
    import tensorflow as tf

    from keras_imae.run_folder import export

    model = models.build_model("mlp", (6,), 3, seed=0)
    model.compile("adam", keras_imae.CategoricalCrossentropy(),
                  early_learning=models.EarlyLearning(num_examples=1000))
    path = str(tmp_path / "served")
    export.export_saved_model(model, path)
    loaded = tf.saved_model.load(path)
    shapes = sorted(tuple(v.shape) for v in loaded.variables)
    assert shapes == sorted(tuple(v.shape) for v in model.trainable_variables)  # no (1000, 3)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(loaded.serve(x)["probabilities"].numpy(),
                               keras.ops.convert_to_numpy(keras.ops.softmax(model(x))),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_examples": 0}, "num_examples"), ({"num_examples": 2.5}, "num_examples"),
    ({"num_examples": 4, "lam": 0}, "lam"), ({"num_examples": 4, "momentum": 1.0}, "momentum"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.EarlyLearning(**kwargs)


def test_compile_refuses_what_is_not_early_learning():
    with pytest.raises(ValueError, match="Expected a keras_imae.models.EarlyLearning"):
        _logit_model("elr")


def test_two_replicas_train_exactly_as_one():
    # 2 replicas x 2 examples: each replica must see the other's new targets (the step after
    # reads them) and the penalty must be scaled like the loss for the gradient sum.
    import tensorflow as tf

    x = np.eye(len(LOGITS), dtype="float32")
    y = {"label": LABELS, "id": IDS}
    results = []
    for strategy in (tf.distribute.get_strategy(),
                     tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
        with strategy.scope():
            early = models.EarlyLearning(num_examples=6)
            model = _logit_model(early, lr=0.5)
        early.targets.assign(TARGETS)
        history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history
        results.append((model.get_weights()[0], keras.ops.convert_to_numpy(early.targets),
                        history["loss"]))
    (w1, t1, loss1), (w2, t2, loss2) = results
    np.testing.assert_allclose(w2, w1, atol=1e-6)
    np.testing.assert_allclose(t2, t1, atol=1e-6)
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)


def test_train_dataset_with_ids_carries_each_examples_id():
    x = np.arange(10, dtype="float32")[:, None] * np.ones((1, 2), "float32")
    labels = np.arange(10) % 3
    subset = np.array([7, 2, 9, 4])
    batches = list(data.train_dataset(x, labels, ids=subset, batch_size=4, seed=3,
                                      with_ids=True))
    (xb, yb), = batches
    ids = yb["id"].numpy()
    assert sorted(ids) == sorted(subset)
    np.testing.assert_array_equal(xb.numpy()[:, 0], ids)  # the id is the example's own
    np.testing.assert_array_equal(yb["label"].numpy(), labels[ids])


# -- in a run ------------------------------------------------------------------------------
class _Targets(keras.callbacks.Callback):
    """Records the model's ELR targets at the first epoch start and at every epoch end."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_epoch_begin(self, epoch, logs=None):
        if not self.seen:
            self.seen.append(("begin", epoch, self._targets()))

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(("end", epoch, self._targets()))

    def _targets(self):
        return keras.ops.convert_to_numpy(self.model.early_learning.targets).copy()


def test_a_run_with_elr_records_it_and_resumes_with_its_targets(tmp_path, digits, monkeypatch):
    from keras_imae import training
    from fit_cases import KillAfter

    config = training.RunConfig(loss="cce", elr_lambda=3.0, epochs=3, verbose=0,
                                model_dir=str(tmp_path / "run"), export_dir="")
    fit = keras.Model.fit
    seen = {"killed": [], "resumed": []}

    def spied(name, kill):
        def spied_fit(self, *args, callbacks=(), **kwargs):
            extra = [_Targets(seen[name])] + ([KillAfter(2)] if kill else [])
            return fit(self, *args, callbacks=[*callbacks, *extra], **kwargs)
        return spied_fit

    monkeypatch.setattr(keras.Model, "fit", spied("killed", True))
    with pytest.raises(KeyboardInterrupt):
        training.run(config, dataset=digits)
    monkeypatch.setattr(keras.Model, "fit", spied("resumed", False))
    results = training.run(config, dataset=digits)
    (_, _, at_kill) = seen["killed"][-1]  # the end of epoch 2 (index 1), backed up
    kind, epoch, at_resume = seen["resumed"][0]
    assert (kind, epoch) == ("begin", 2)
    np.testing.assert_array_equal(at_resume, at_kill)
    # every training example has targets (a distribution), the test examples none
    assert at_kill.shape == (len(digits.y_train), digits.num_classes)
    np.testing.assert_allclose(at_kill.sum(-1), 1 - 0.7 ** 2, atol=1e-5)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert (resolved["elr_lambda"], resolved["elr_momentum"]) == (3.0, 0.7)
    assert results["test_accuracy_final"] > 0.5


@pytest.mark.parametrize("overrides,match", [
    (dict(elr_lambda=-1.0), "elr_lambda"), (dict(elr_lambda=3.0, elr_momentum=1.0), "elr_momentum"),
])
def test_bad_elr_settings_are_refused_before_any_work(tmp_path, overrides, match):
    from keras_imae import training

    with pytest.raises(ValueError, match=match):
        training.validate(training.RunConfig(model_dir=str(tmp_path / "r"), **overrides))


def test_compare_has_an_elr_baseline_tuned_over_lambda():
    from keras_imae import training
    from keras_imae.run import comparison

    base = comparison._for_loss(training.RunConfig(warmup_epochs=3), "elr")
    assert (base.loss, base.elr_lambda, base.warmup_epochs) == ("cce", 3.0, None)
    grid = comparison.grid_for("elr", base, "mlp")
    assert [point["elr_lambda"] for point in grid] == [1.0, 3.0, 5.0, 7.0]
    assert comparison._run_default(base, "mlp")["elr_lambda"] == 3.0  # ties go to 3
