"""keras_imae on the Keras JAX backend.

Run by ``tests/test_jax_backend.py`` in a subprocess with ``KERAS_BACKEND=jax`` and two host
CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``): a process cannot switch
Keras backends. Skipped on any other backend. Gradients are taken with ``jax.grad`` of the
reduced Keras loss and compared with the float64 numpy closed forms of ``loss_cases.py``;
``normalize="batch"`` and the RobustModel metrics are checked to be global under
``keras.distribution.DataParallel``. The backend-neutral tests of the other test files are
re-run in the same child process (``test_jax_backend.NEUTRAL``).
"""

import contextlib

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("needs KERAS_BACKEND=jax (run by tests/test_jax_backend.py)",
                allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from keras_imae import callbacks, losses, models, noise  # noqa: E402
from loss_cases import (EXTREME_IDS, EXTREME_Z, REFERENCES, random_logits,  # noqa: E402
                        reference_gradient, stable_reference, toy_data)
from fit_cases import CLEAN, EXPECTED, GIVEN, LOGITS, identity_model  # noqa: E402


def _jax_gradient(loss, y_true, z, *, from_logits=True, jit=False):
    """``(value, d value / d logits)`` of the reduced loss; probabilities if not from_logits."""

    def total(z, y_true):
        return loss(y_true, z if from_logits else keras.ops.softmax(z))

    fn = jax.value_and_grad(total)
    value, grad = (jax.jit(fn) if jit else fn)(jnp.asarray(z), y_true)
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("normalize", [None, "batch"])
@pytest.mark.parametrize("batch,k", [(7, 3), (32, 10)])
@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradient_matches_closed_form(name, normalize, batch, k, one_hot, from_logits):
    z, ids = random_logits(batch, k, seed=batch * 100 + k)
    loss = losses.get(name, normalize=normalize, from_logits=from_logits, **REFERENCES[name][0])
    y_true = np.eye(k, dtype=np.float32)[ids] if one_hot else ids
    _, grad = _jax_gradient(loss, y_true, z, from_logits=from_logits)
    np.testing.assert_allclose(
        grad, reference_gradient(name, z, ids, normalize), rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_jit_matches_eager(name):
    z, ids = random_logits(32, 10, seed=12)
    loss = losses.get(name, normalize="batch", **REFERENCES[name][0])
    for eager, jitted in zip(_jax_gradient(loss, ids, z), _jax_gradient(loss, ids, z, jit=True)):
        np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-8)


def test_imae_equals_dm_with_lambda_one():
    z, ids = random_logits(32, 10, seed=7)
    for normalize in (None, "batch"):
        imae = losses.IMAE(temperature=6.0, normalize=normalize)
        dm = losses.DerivativeManipulation(beta=6.0, lam=1.0, normalize=normalize)
        for a, b in zip(_jax_gradient(imae, ids, z), _jax_gradient(dm, ids, z)):  # value, grad
            np.testing.assert_array_equal(a, b)


def test_pair_margins_equal_a_uniform_scalar_margin_and_reject_per_pair():
    # Pair-flip c -> c + 1: the flipped pairs' margin 2 - log 5 rejects more than R = 2
    # everywhere; no noise seen is R itself.
    z, ids = random_logits(64, 6, seed=5, scale=6.0)
    scalar = losses.DerivativeManipulation(beta=16.0, lam=2.0, reject_margin=2.0)
    paired = losses.DerivativeManipulation(beta=16.0, lam=2.0, reject_margin=2.0)
    paired.state.build(6)
    paired.state.assign(noise_transition=noise.transition_matrix(6, "pairflip", 0.4))
    for jit in (False, True):
        _, a = _jax_gradient(scalar, ids, z, jit=jit)
        _, b = _jax_gradient(paired, ids, z, jit=jit)
        silenced_a, silenced_b = np.all(a == 0, -1), np.all(b == 0, -1)
        assert np.all(silenced_b[silenced_a]) and silenced_b.sum() > silenced_a.sum()
    paired.state.assign(noise_transition=np.eye(6))  # no noise seen: R for every pair
    for a, b in zip(_jax_gradient(scalar, ids, z), _jax_gradient(paired, ids, z)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)


def test_robust_model_steps_read_the_loss_state_without_a_rebuild(monkeypatch):
    # RobustModel tracks the loss's state: Keras' jitted JAX step receives it with the
    # model's variables, so the warm-up's switch and the estimate need no new step. The
    # warm-up epoch equals an epoch of DM with beta=0 (no cap), from the same start.
    x, y = toy_data()
    rebuilt = []
    original = models.RobustModel.make_train_function
    monkeypatch.setattr(models.RobustModel, "make_train_function", lambda self, force=False: (
        rebuilt.append(force), original(self, force))[1])

    def first_epoch(loss, epochs=1, extra=()):
        keras.utils.set_random_seed(0)
        model = models.build_model("mlp", x.shape[1:], 4, seed=0)
        model.compile(keras.optimizers.SGD(0.1), loss)
        weights = []
        record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: weights.append(
            [np.array(w) for w in model.trainable_weights]))
        model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=[*extra, record])
        return model, weights[0]

    model, warm = first_epoch(
        losses.DerivativeManipulation(beta=16.0, lam=2.0, reject_margin=2.0), epochs=2,
        extra=[callbacks.EmphasisWarmup(1), callbacks.PairMargins((x, y), 1)])
    assert True not in rebuilt
    assert model.loss.state_values()["noise_transition"].any()  # estimated at epoch 1
    _, flat = first_epoch(losses.DerivativeManipulation(beta=0.0, lam=2.0))
    for a, b in zip(warm, flat):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    _, plain = first_epoch(losses.DerivativeManipulation(beta=16.0, lam=2.0, reject_margin=2.0))
    assert not np.allclose(warm[0], plain[0])


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("normalize", [None, "batch"])
def test_extreme_logits_match_float64_closed_forms(name, normalize):
    want_value, want_grad = stable_reference(name, EXTREME_Z, EXTREME_IDS)
    if normalize == "batch":
        want_grad = want_grad / np.abs(want_grad).sum(-1).mean()
    loss = losses.get(name, normalize=normalize, **REFERENCES[name][0])
    value, grad = _jax_gradient(loss, EXTREME_IDS, EXTREME_Z)
    np.testing.assert_allclose(value, want_value.mean(), rtol=1e-5)
    scale = np.abs(want_grad).max()  # as in test_losses.py: tiny entries may flush to 0
    np.testing.assert_allclose(grad, want_grad / len(EXTREME_Z), rtol=1e-5,
                               atol=1e-6 * scale / len(EXTREME_Z))


@pytest.mark.parametrize("dtype,rtol", [("float16", 5e-4), ("bfloat16", 4e-3)])
def test_half_precision_inputs(dtype, rtol):
    # Tolerances: one rounding of a float32 gradient, as in test_losses.py; 1.02x fails.
    z, ids = random_logits(16, 10, seed=11)
    z_half = jnp.asarray(z, dtype)
    loss = losses.DerivativeManipulation(beta=6.0, lam=0.5)
    value, grad = jax.value_and_grad(lambda z: loss(ids, z))(z_half)
    assert value.dtype == jnp.float32 and grad.dtype == z_half.dtype
    want = reference_gradient("dm", np.asarray(z_half, np.float32), ids, "batch")
    grad = np.asarray(grad, np.float32)
    np.testing.assert_allclose(grad, want, rtol=rtol, atol=1e-7)
    assert not np.allclose(grad, 1.02 * want, rtol=rtol, atol=1e-7)


def test_label_values_checked_eagerly_not_under_jit():
    z, _ = random_logits(4, 3, seed=15)
    loss = losses.DerivativeManipulation()
    with pytest.raises(ValueError, match=r"\[0, num_classes\)"):
        loss(np.array([0, 1, 3, 0]), z)
    with pytest.raises(ValueError, match="integers"):
        loss(np.array([0.5, 1.0, 0.0, 2.0], np.float32), z)
    with pytest.raises(ValueError, match="one-hot"):
        loss(np.full((4, 3), 1 / 3, np.float32), z)
    # Documented limitation: values are abstract under jit, so no check (and no error).
    assert np.isfinite(jax.jit(loss)(jnp.array([0, 1, 3, 0]), z))


@pytest.mark.parametrize("name", ["dm", "imae"])
def test_robust_model_fit_with_dm_decreases_loss(name):
    x, y = toy_data()
    model = models.build_model("mlp", x.shape[1:], 4, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), losses.get(name))
    history = model.fit(x, {"label": y, "clean_label": y}, batch_size=32, epochs=3, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.5 * loss[0], loss
    assert history.history["clean_fit"][-1] > 0.9


def test_backbone_trains_its_head_frozen_then_the_whole_network(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    # the smallest application (XLA compiles each phase's step: seconds per layer on a CPU),
    # randomly initialised: its BatchNorm trains (untrained statistics saturate its ReLU6)
    model = models.backbone_model("MobileNet", (8, 8, 1), 3, backbone_kwargs=dict(alpha=0.25))
    backbone = models.backbone_layer(model)
    before = [np.asarray(w) for w in backbone.weights]
    for trainable, changed in ((False, False), (True, True)):
        models.set_backbone_trainable(model, trainable, batch_norm=True)
        model.compile(keras.optimizers.Adam(1e-3), losses.get("dm"))
        model.fit(x, {"label": y, "clean_label": y}, batch_size=16, epochs=1, verbose=0)
        moved = any(not np.array_equal(a, np.asarray(w)) for a, w in zip(before, backbone.weights))
        assert moved == changed
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.models.load_model(path)(x)),
                               np.asarray(model(x)), atol=1e-5)


def test_batch_normalisation_is_global_under_data_parallel():
    """One SGD step on 2 devices x 32 examples equals 1 device x 64 (``normalize="batch"``).

    The model is a bias-free identity ``Dense`` on logit inputs, so after one step of SGD(1)
    ``W = I - z^T G`` with ``G`` the logit gradient of the batch-mean loss. Normalising each
    half by its own mean would give other weights; the check tells them apart.
    """
    devices = keras.distribution.list_devices("cpu")
    assert len(devices) >= 2, "needs XLA_FLAGS=--xla_force_host_platform_device_count=2"
    z, ids = random_logits(64, 10, seed=13, scale=6.0)

    def one_step(distribution):
        with distribution.scope() if distribution else contextlib.nullcontext():
            inputs = keras.Input((10,))
            outputs = keras.layers.Dense(10, use_bias=False, kernel_initializer="identity")(
                inputs)
            model = keras.Model(inputs, outputs)
            model.compile(keras.optimizers.SGD(1.0),
                          losses.DerivativeManipulation(**REFERENCES["dm"][0]))
            model.fit(z, ids, batch_size=64, epochs=1, shuffle=False, verbose=0)
        return np.asarray(model.get_weights()[0], np.float64)

    single = one_step(None)
    parallel = one_step(keras.distribution.DataParallel(devices=devices[:2]))
    want = np.eye(10) - z.T.astype(np.float64) @ reference_gradient("dm", z, ids, "batch")
    np.testing.assert_allclose(single, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(parallel, single, rtol=1e-5, atol=1e-6)
    per_half = np.eye(10) - sum(
        z[s].T.astype(np.float64) @ reference_gradient("dm", z[s], ids[s], "batch") / 2
        for s in (slice(0, 32), slice(32, 64)))
    assert np.max(np.abs(per_half - single)) > 100 * np.max(np.abs(parallel - single))


def test_robust_model_metrics_exact_under_data_parallel():
    devices = keras.distribution.list_devices("cpu")[:2]
    with keras.distribution.DataParallel(devices=devices).scope():
        for method in ("fit", "evaluate"):  # batches of 6 and 4: even shards on 2 devices
            _fit_metrics_exact_over_two_batches(method)


def _fit_metrics_exact_over_two_batches(method):
    model = identity_model()
    y = {"label": GIVEN, "clean_label": CLEAN}
    if method == "fit":
        logs = model.fit(LOGITS, y, batch_size=6, shuffle=False, verbose=0).history
        logs = {k: v[-1] for k, v in logs.items()}
    else:
        logs = model.evaluate(LOGITS, y, batch_size=6, verbose=0, return_dict=True)
    for name, value in EXPECTED.items():
        assert logs[name] == pytest.approx(value, abs=1e-7), name
