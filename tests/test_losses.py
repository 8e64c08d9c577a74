"""Tests for keras_imae.losses: gradients against closed forms written in numpy.

The numpy references never use the library's stable direction: they derive each gradient
through the chain rule over the probabilities, ``dL/dz = J^T dL/dp`` with the softmax
Jacobian ``J = diag(p) - p p^T`` (baselines), or from the papers' formula
``w(p_c) (p - y) / (2 (1 - p_c))`` (DM/IMAE), in float64.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_imae
from keras_imae import distribute, losses, weighting

# ----------------------------------------------------------------------------- references


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _chain(p, dl_dp):
    """``J^T dL/dp`` for the softmax Jacobian, per example."""
    return p * dl_dp - p * np.sum(p * dl_dp, -1, keepdims=True)


def _dm_weight(pc, beta, lam):
    return np.exp(beta * pc**lam * (1 - pc))


# name -> (kwargs, per-example value(p, y), per-example logit gradient(p, y))
def _ref_emphasis(weight):
    def grad(p, y):
        pc = np.sum(p * y, -1, keepdims=True)
        return weight(pc) * (p - y) / (2 * (1 - pc))

    return grad


def _ref_nce_rce(alpha, beta):
    def value(p, y):
        return alpha * np.log(np.sum(p * y, -1)) / np.log(p).sum(-1) + beta * 4 * (
            1 - np.sum(p * y, -1))

    def grad(p, y):
        a = np.log(np.sum(p * y, -1, keepdims=True))
        b = np.log(p).sum(-1, keepdims=True)
        dnce_dp = (y / p * b - a / p) / b**2
        return _chain(p, alpha * dnce_dp - 4 * beta * y)

    return value, grad


_NCE_VALUE, _NCE_GRAD = _ref_nce_rce(0.5, 2.0)

REFERENCES = {
    "cce": ({}, lambda p, y: -np.log(np.sum(p * y, -1)), lambda p, y: _chain(p, -y / p)),
    "mae": ({}, lambda p, y: np.abs(p - y).sum(-1), lambda p, y: _chain(p, np.sign(p - y))),
    "mse": ({}, lambda p, y: ((p - y) ** 2).sum(-1), lambda p, y: _chain(p, 2 * (p - y))),
    "gce": (
        {"q": 0.7},
        lambda p, y: (1 - np.sum(p * y, -1) ** 0.7) / 0.7,
        lambda p, y: _chain(p, -y * np.sum(p * y, -1, keepdims=True) ** (0.7 - 1)),
    ),
    "sce": (
        {"alpha": 0.1, "beta": 1.0},
        lambda p, y: -0.1 * np.log(np.sum(p * y, -1)) + 4 * (1 - np.sum(p * y, -1)),
        lambda p, y: _chain(p, -0.1 * y / p - 4 * y),
    ),
    "nce_rce": ({"alpha": 0.5, "beta": 2.0}, _NCE_VALUE, _NCE_GRAD),
    "dm": (
        {"beta": 6.0, "lam": 0.5},
        lambda p, y: -np.log(np.sum(p * y, -1)),
        _ref_emphasis(lambda pc: _dm_weight(pc, 6.0, 0.5)),
    ),
    "imae": (
        {"temperature": 8.0},
        lambda p, y: -np.log(np.sum(p * y, -1)),
        _ref_emphasis(lambda pc: _dm_weight(pc, 8.0, 1.0)),
    ),
}


def _reference_gradient(name, z, ids, normalize, sample_weight=None):
    """Gradient of the batch-mean loss w.r.t. the logits, float64."""
    _, _, grad = REFERENCES[name][0], REFERENCES[name][1], REFERENCES[name][2]
    p = _softmax(z.astype(np.float64))
    y = np.eye(z.shape[1])[ids]
    g = grad(p, y)
    if normalize == "batch":
        g = g / np.abs(g).sum(-1).mean()
    if sample_weight is not None:
        g = g * sample_weight[:, None]
    return g / z.shape[0]


def _gradient(loss, y_true, z, sample_weight=None):
    z = tf.convert_to_tensor(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y_true, z, sample_weight=sample_weight)
    return value, tape.gradient(value, z)


def _batch(batch, k, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((batch, k))).astype(np.float32)
    ids = rng.integers(0, k, size=batch)
    return z, ids


# ----------------------------------------------------------------------------- gradients

SHAPES = [(1, 2), (7, 3), (32, 10)]


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("normalize", [None, "batch"])
@pytest.mark.parametrize("batch,k", SHAPES)
@pytest.mark.parametrize("one_hot", [False, True])
def test_gradient_matches_closed_form(name, normalize, batch, k, one_hot):
    z, ids = _batch(batch, k, seed=batch * 100 + k)
    loss = losses.get(name, normalize=normalize, **REFERENCES[name][0])
    y_true = np.eye(k, dtype=np.float32)[ids] if one_hot else ids
    _, grad = _gradient(loss, y_true, z)
    np.testing.assert_allclose(
        grad.numpy(), _reference_gradient(name, z, ids, normalize), rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_value_matches_closed_form(name):
    z, ids = _batch(16, 5, seed=3)
    kwargs, value, _ = REFERENCES[name]
    got = getattr(losses, losses.LOSSES[name]._fn.__name__)(ids, z, **kwargs)
    want = value(_softmax(z.astype(np.float64)), np.eye(5)[ids])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_labels_as_column_and_float_ids_agree():
    z, ids = _batch(8, 4, seed=5)
    loss = losses.DerivativeManipulation(beta=6.0, lam=1.0)
    ref = _gradient(loss, ids, z)[1].numpy()
    for y in (ids[:, None], ids.astype(np.float32), ids.astype(np.int64)[:, None]):
        np.testing.assert_array_equal(_gradient(loss, y, z)[1].numpy(), ref)


def test_sample_weight_scales_gradient_after_normalisation():
    z, ids = _batch(6, 4, seed=6)
    sw = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0], np.float32)
    _, grad = _gradient(losses.DerivativeManipulation(beta=5.0, lam=0.5), ids, z, sw)
    # Normalisation by the unweighted batch mean of w, then the sample weight.
    p = _softmax(z.astype(np.float64))
    y = np.eye(4)[ids]
    pc = (p * y).sum(-1, keepdims=True)
    w = _dm_weight(pc, 5.0, 0.5)
    want = sw[:, None] * (w / w.mean()) * (p - y) / (2 * (1 - pc)) / 6
    np.testing.assert_allclose(grad.numpy(), want, rtol=2e-4, atol=1e-7)


def test_imae_equals_dm_with_lambda_one():
    z, ids = _batch(32, 10, seed=7)
    for normalize in (None, "batch"):
        a = _gradient(losses.IMAE(temperature=6.0, normalize=normalize), ids, z)
        b = _gradient(
            losses.DerivativeManipulation(beta=6.0, lam=1.0, normalize=normalize), ids, z)
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_every_emphasis_gradient_is_along_p_minus_y():
    z, ids = _batch(16, 6, seed=8)
    p = _softmax(z.astype(np.float64))
    direction = p - np.eye(6)[ids]
    for name in ("cce", "mae", "gce", "sce", "dm", "imae"):
        _, grad = _gradient(losses.get(name), ids, z)
        ratio = grad.numpy() / direction
        np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-4)
        assert np.all(ratio > 0)


# ----------------------------------------------------------------------------- Keras parity


def test_forward_values_equal_keras():
    z, ids = _batch(16, 5, seed=9)
    p = tf.nn.softmax(z)
    y = np.eye(5, dtype=np.float32)[ids]
    pairs = [
        (losses.CategoricalCrossentropy()(ids, z),
         keras.losses.SparseCategoricalCrossentropy(from_logits=True)(ids, z)),
        # Keras averages over classes where the papers sum: a factor K.
        (losses.MeanAbsoluteError(from_logits=False)(ids, p),
         5 * keras.losses.MeanAbsoluteError()(y, p)),
        (losses.MeanSquaredError(from_logits=False)(ids, p),
         5 * keras.losses.MeanSquaredError()(y, p)),
        (losses.GeneralizedCrossEntropy(q=0.7, from_logits=False)(ids, p),
         keras.losses.CategoricalGeneralizedCrossEntropy(q=0.7)(ids, p)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_from_logits_false_gives_same_logit_gradient(name):
    z, ids = _batch(16, 7, seed=10)
    kwargs = REFERENCES[name][0]
    z = tf.convert_to_tensor(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = losses.get(name, from_logits=False, **kwargs)(ids, tf.nn.softmax(z))
    via_probs = tape.gradient(value, z)
    _, via_logits = _gradient(losses.get(name, **kwargs), ids, z)
    np.testing.assert_allclose(via_probs.numpy(), via_logits.numpy(), rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- extremes


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_extreme_logits_give_finite_gradients(name):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 1e4], [30.0, 0.0, 0.0]],
                 np.float32)
    ids = np.array([0, 0, 1, 0])  # confident right, confident wrong, wrong, p_c == 1.0
    assert tf.nn.softmax(z)[3, 0].numpy() == 1.0
    for normalize in (None, "batch"):
        value, grad = _gradient(losses.get(name, normalize=normalize), ids, z)
        assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))


def test_extreme_logits_match_closed_form_where_defined():
    # p_c rounds to 1 in float32: DM's w -> exp(0) = 1 and u is still a unit direction.
    z = np.array([[30.0, 0.0, 0.0], [0.0, 20.0, -5.0]], np.float32)
    ids = np.array([0, 0])
    _, grad = _gradient(losses.DerivativeManipulation(beta=8.0, lam=0.5, normalize=None),
                        ids, z)
    p = _softmax(z.astype(np.float64))
    y = np.eye(3)[ids]
    pc = (p * y).sum(-1, keepdims=True)
    one_minus = (p * (1 - y)).sum(-1, keepdims=True)
    p_minus_y = p * (1 - y) - y * one_minus  # p_c - 1 written without cancellation
    want = _dm_weight(pc, 8.0, 0.5) * p_minus_y / (2 * one_minus) / 2
    np.testing.assert_allclose(grad.numpy(), want, rtol=1e-5, atol=1e-12)
    assert np.abs(grad.numpy()[0]).sum() == pytest.approx(0.5, rel=1e-6)  # ||u||_1 / B


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("name", ["dm", "cce", "nce_rce"])
def test_half_precision_inputs(dtype, name):
    z, ids = _batch(16, 10, seed=11)
    z_half = tf.cast(z, dtype)
    value, grad = _gradient(losses.get(name, normalize="batch", **REFERENCES[name][0]), ids,
                            z_half)
    assert value.dtype == tf.float32 and grad.dtype == dtype
    assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))
    want = _reference_gradient(name, tf.cast(z_half, tf.float32).numpy(), ids, "batch")
    tol = 1e-2 if dtype == tf.float16 else 3e-2
    np.testing.assert_allclose(tf.cast(grad, tf.float32).numpy(), want, rtol=tol, atol=1e-4)


def test_nan_logits_stay_nan():
    z = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]], np.float32)
    for name in REFERENCES:
        value, grad = _gradient(losses.get(name, reduction=None), [0, 1], z)
        assert np.isnan(value.numpy()[0]), name
        assert np.all(np.isnan(grad.numpy()[0])), name
    for name in ("dm", "cce"):
        _, grad = _gradient(losses.get(name, from_logits=False, reduction=None), [0, 1],
                            tf.nn.softmax(z))
        assert np.all(np.isnan(grad.numpy()[0]))


def test_xla_matches_eager():
    z, ids = _batch(32, 10, seed=12)
    loss = losses.DerivativeManipulation(beta=12.0, lam=0.5)

    @tf.function(jit_compile=True)
    def compiled(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = loss(ids, z)
        return value, tape.gradient(value, z)

    value, grad = compiled(tf.constant(z))
    ref_value, ref_grad = _gradient(loss, ids, z)
    np.testing.assert_allclose(value.numpy(), ref_value.numpy(), rtol=1e-5)
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=1e-4, atol=1e-8)


# ----------------------------------------------------------------------------- distribution


def test_batch_normalisation_uses_the_global_batch_under_mirrored_strategy():
    """2 replicas x 32 examples give the logit gradients of 1 device x 64.

    Keras' ``Loss.__call__`` divides each replica's loss by the number of replicas. Large
    logits spread the weights so that a per-replica mean would differ clearly.
    """
    z, ids = _batch(64, 10, seed=13, scale=6.0)
    loss = losses.DerivativeManipulation(beta=12.0, lam=0.5)
    _, single = _gradient(loss, ids, z)

    strategy = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    halves = [(z[:32], ids[:32]), (z[32:], ids[32:])]
    dataset = strategy.experimental_distribute_values_from_function(
        lambda ctx: halves[ctx.replica_id_in_sync_group])

    def replica_fn(inputs):
        z_local, ids_local = inputs
        with tf.GradientTape() as tape:
            tape.watch(z_local)
            value = loss(ids_local, z_local)
        return tape.gradient(value, z_local)

    per_replica = strategy.run(tf.function(replica_fn), args=(dataset,))
    distributed = np.concatenate([t.numpy() for t in strategy.experimental_local_results(
        per_replica)])
    np.testing.assert_allclose(distributed, single.numpy(), rtol=1e-5, atol=1e-9)

    # The test can tell: normalising each half by its own mean gives other gradients.
    local = np.concatenate([_gradient(loss, i, h)[1].numpy() / 2 for h, i in halves])
    assert np.max(np.abs(local - single.numpy())) > 1e-2 * np.max(np.abs(single.numpy()))


# ----------------------------------------------------------------------------- Keras usage


def _toy_data(seed=0, n=256, d=8, k=4):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y


@pytest.mark.parametrize("loss", [losses.DerivativeManipulation(beta=8.0, lam=0.5),
                                  losses.IMAE(temperature=8.0)])
def test_compile_fit_decreases_loss(loss):
    x, y = _toy_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    # Adam: with constant-rate SGD, DM's non-vanishing gradient grows the logits without
    # bound on this BatchNorm-free toy model (see README, known limitations).
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    x, y = _toy_data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd",
                  loss=losses.DerivativeManipulation(beta=12.0, lam=2.0, normalize=None))
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, losses.DerivativeManipulation)
    assert restored.loss.get_config() == model.loss.get_config()
    restored.fit(x, y, epochs=1, verbose=0)  # continues training with the DM loss


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_get_config_round_trip(name):
    loss = losses.get(name, normalize="batch", from_logits=False, reduction="sum",
                      name="custom")
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    assert keras.losses.deserialize(keras.losses.serialize(loss)).get_config() == config
    assert config["normalize"] == "batch" and config["from_logits"] is False


def test_reduction_none_and_binary_problems():
    z, ids = _batch(5, 2, seed=14)
    for name in losses.LOSSES:
        value = losses.get(name, reduction=None)(ids, z)
        assert value.shape == (5,)


def test_package_exports():
    assert keras_imae.losses is losses and keras_imae.weighting is weighting
    assert losses.get("DM").get_config()["beta"] == 8.0


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name,kwargs,match", [
    ("dm", {"beta": -1.0}, "beta"),
    ("dm", {"lam": -0.5}, "lam"),
    ("dm", {"beta": float("nan")}, "beta"),
    ("dm", {"beta": "8"}, "beta"),
    ("imae", {"temperature": -2.0}, "temperature"),
    ("gce", {"q": 0.0}, "q"),
    ("gce", {"q": 1.5}, "q"),
    ("sce", {"alpha": -1.0}, "alpha"),
    ("nce_rce", {"beta": -1.0}, "beta"),
    ("cce", {"normalize": "global"}, "normalize"),
])
def test_bad_hyper_parameters(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.get(name, **kwargs)


def test_normalize_none_string_is_accepted():
    assert losses.get("dm", normalize="none").normalize is None


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="dm, imae, cce, mae, mse, gce, sce, nce_rce"):
        losses.get("focal")
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get(3)
    with pytest.raises(ValueError, match="cannot be applied"):
        losses.get(losses.IMAE(), temperature=2.0)


def test_label_out_of_range_is_an_error():
    z, _ = _batch(4, 3, seed=15)
    for bad in ([0, 1, 3, 0], [0, -1, 2, 0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, num_classes\)"):
            losses.DerivativeManipulation()(np.array(bad), z)


def test_non_integer_and_soft_labels_are_errors():
    z, _ = _batch(2, 3, seed=16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="integers"):
        losses.CategoricalCrossentropy()(np.array([0.5, 1.0], np.float32), z)
    soft = np.array([[0.9, 0.05, 0.05], [0.0, 1.0, 0.0]], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one-hot"):
        losses.DerivativeManipulation()(soft, z)


def test_incompatible_shapes_are_errors():
    z, ids = _batch(4, 3, seed=17)
    with pytest.raises(ValueError, match="y_true.shape"):
        losses.DerivativeManipulation()(np.zeros((4, 2)), z)
    with pytest.raises(ValueError, match="y_pred"):
        losses.DerivativeManipulation()(ids, z[:, :, None])
    with pytest.raises(ValueError, match="at least 2 classes"):
        losses.DerivativeManipulation()(np.zeros(4), z[:, :1])


# ----------------------------------------------------------------------------- weighting


def test_weighting_closed_forms():
    p = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(weighting.cce(p), 2 * (1 - p), atol=1e-7)
    np.testing.assert_allclose(weighting.mae(p), 4 * p * (1 - p), atol=1e-7)
    np.testing.assert_allclose(weighting.gce(p, q=0.7), 2 * p**0.7 * (1 - p), atol=1e-6)
    np.testing.assert_allclose(weighting.sce(p, alpha=0.1, beta=1.0),
                               2 * (0.1 + 4 * p) * (1 - p), atol=1e-6)
    np.testing.assert_allclose(weighting.dm(p, beta=12.0, lam=2.0),
                               _dm_weight(p, 12.0, 2.0), rtol=1e-5)
    np.testing.assert_allclose(weighting.dm(p, beta=3.0, lam=0.0), np.exp(3 * (1 - p)),
                               rtol=1e-6)
    np.testing.assert_allclose(weighting.imae(p, temperature=8.0),
                               weighting.dm(p, beta=8.0, lam=1.0))
    np.testing.assert_allclose(weighting.normal(p, beta=4.0, psi=0.3),
                               np.exp(-4 * p * (p - 0.6)), rtol=1e-6)


def test_emphasis_modes():
    p = np.linspace(0.0, 1.0, 10001)
    for lam in (0.5, 1.0, 2.0):
        w = weighting.dm(p, beta=8.0, lam=lam).numpy()
        assert p[np.argmax(w)] == pytest.approx(weighting.mode(lam=lam), abs=1e-3)
    w = weighting.normal(p, beta=4.0, psi=0.3).numpy()
    assert p[np.argmax(w)] == pytest.approx(0.3, abs=1e-3)
    assert p[np.argmax(weighting.mae(p).numpy())] == pytest.approx(0.5, abs=1e-3)


def test_beta_density_recovers_cce_mae_gce():
    p = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(weighting.beta_density(p, alpha=1.0, eta=2.0),
                               weighting.cce(p) / 2, rtol=1e-6)
    np.testing.assert_allclose(weighting.beta_density(p, alpha=2.0, eta=2.0),
                               weighting.mae(p) / 4, rtol=1e-6)
    np.testing.assert_allclose(weighting.beta_density(p, alpha=1.7, eta=2.0),
                               weighting.gce(p, q=0.7) / 2, rtol=1e-5)


def test_one_minus_p_keeps_precision_near_one():
    tiny = np.float32(1e-12)
    w = weighting.cce(np.float32(1.0), one_minus_p=tiny)
    assert float(w) == pytest.approx(2e-12, rel=1e-6)


# ----------------------------------------------------------------------------- log domain


def _reference_dm_log_domain(z, ids, beta, lam, max_margin=None):
    """DM's batch-normalised gradient in float64, normalised via log-sum-exp (numpy)."""
    z = z.astype(np.float64)
    p = _softmax(z)
    y = np.eye(z.shape[1])[ids]
    pc = np.sum(p * y, -1)
    log_w = beta * pc**lam * (1 - pc)
    top = log_w.max()
    log_mean = top + np.log(np.mean(np.exp(log_w - top)))
    scale = np.exp(log_w - log_mean)
    if max_margin is not None:
        z_c = np.sum(z * y, -1)
        others = np.where(y > 0, -np.inf, z)
        margin = z_c - (others.max(-1) + np.log(np.exp(others - others.max(-1, keepdims=True))
                                                 .sum(-1)))
        scale = np.where(np.abs(margin) <= max_margin, scale, 0.0)
    direction = (p - y) / (2 * (1 - pc))[:, None]
    return scale[:, None] * direction / z.shape[0]


@pytest.mark.parametrize("beta", [500.0, 5000.0])
def test_batch_normalisation_is_exact_for_any_beta(beta):
    # exp(beta * p^lam * (1 - p)) overflows float32 past ~88: the normalisation must not.
    z, ids = _batch(16, 5, seed=11, scale=1.0)
    loss = losses.DerivativeManipulation(beta=beta, lam=0.5)
    value, grad = _gradient(loss, ids, z)
    assert np.all(np.isfinite(grad.numpy())) and np.isfinite(value.numpy())
    np.testing.assert_allclose(grad.numpy(), _reference_dm_log_domain(z, ids, beta, 0.5),
                               rtol=2e-3, atol=1e-7)
    _, grad_imae = _gradient(losses.IMAE(temperature=400.0), ids, z)
    np.testing.assert_allclose(grad_imae.numpy(), _reference_dm_log_domain(z, ids, 400.0, 1.0),
                               rtol=2e-3, atol=1e-7)


def test_normalize_none_refuses_a_beta_that_overflows():
    with pytest.raises(ValueError, match=r"`beta` with normalize=None.*beta=500"):
        losses.DerivativeManipulation(beta=500.0, normalize=None)
    with pytest.raises(ValueError, match="normalize=None"):
        losses.derivative_manipulation([0], np.zeros((1, 2), "float32"), beta=500.0,
                                       normalize=None)
    losses.DerivativeManipulation(beta=200.0, lam=0.5, normalize=None)  # exp(77) fits


def test_max_margin_silences_examples_outside_the_window():
    # Margins log(p / (1 - p)) of about -30, -2, 0, 3, 25: two lie outside [-16, 16].
    z = np.float32([[-30, 0, 0], [-2, 0, -50], [0, 0, -50], [3, 0, -50], [25, 0, -50]])
    ids = np.zeros(5, "int64")
    for normalize in ("batch", None):
        loss = losses.DerivativeManipulation(beta=8.0, lam=0.5, max_margin=16.0,
                                             normalize=normalize)
        _, grad = _gradient(loss, ids, z)
        grad = grad.numpy()
        assert np.all(grad[[0, 4]] == 0.0) and np.all(np.abs(grad[1:4]).sum(-1) > 0)
        if normalize == "batch":  # silenced examples still count in the batch mean
            np.testing.assert_allclose(
                grad, _reference_dm_log_domain(z, ids, 8.0, 0.5, max_margin=16.0),
                rtol=2e-4, atol=1e-8)
    # Without max_margin every example keeps DM's floor gradient w >= 1 (before normalising).
    _, faithful = _gradient(losses.DerivativeManipulation(beta=8.0, lam=0.5, normalize=None),
                            ids, z)
    np.testing.assert_allclose(np.abs(faithful.numpy()).sum(-1)[[0, 4]] * 5, 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="max_margin"):
        losses.DerivativeManipulation(max_margin=0.0)


def test_from_logits_must_be_a_bool():
    with pytest.raises(ValueError, match="from_logits='no'"):
        losses.DerivativeManipulation(from_logits="no")
    assert losses.get("cce", from_logits=np.bool_(False)).from_logits is False


@pytest.mark.parametrize("name,weight", [
    ("dm", lambda p: weighting.dm(p, beta=6.0, lam=0.5)),
    ("imae", lambda p: weighting.imae(p, temperature=8.0)),
    ("cce", weighting.cce), ("mae", weighting.mae),
    ("gce", lambda p: weighting.gce(p, q=0.7)),
    ("sce", lambda p: weighting.sce(p, alpha=0.1, beta=1.0)),
    ("mse", None), ("nce_rce", None),
])
def test_log_emphasis_is_the_log_of_the_weight(name, weight):
    loss = losses.get(name, **REFERENCES[name][0])
    p = np.float32([0.05, 0.3, 0.5, 0.9])
    log_w = loss.log_emphasis(p)
    if weight is None:
        assert log_w is None
    else:
        np.testing.assert_allclose(np.exp(keras.ops.convert_to_numpy(log_w)),
                                   keras.ops.convert_to_numpy(weight(p)), rtol=1e-5)


@pytest.mark.parametrize("fn,kwargs,match", [
    (losses.derivative_manipulation, dict(beta=-5.0), "beta=-5.0"),
    (losses.derivative_manipulation, dict(lam=-1.0), "lam=-1.0"),
    (losses.imae, dict(temperature=-1.0), "temperature=-1.0"),
    (losses.generalized_cross_entropy, dict(q=0.0), "q=0.0"),
    (losses.symmetric_cross_entropy, dict(alpha=-1.0), "alpha=-1.0"),
    (losses.normalized_cross_entropy_reverse, dict(beta=float("nan")), "beta=nan"),
])
def test_per_example_functions_validate_hyper_parameters(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn([0], np.zeros((1, 3), "float32"), **kwargs)


def test_eager_calls_of_new_shapes_do_not_retrace_per_shape(caplog):
    loss = losses.DerivativeManipulation()
    for batch in range(2, 9):
        z, ids = _batch(batch, 4, seed=batch)
        loss(ids, z)
    assert "retracing" not in caplog.text
    (traced,) = loss._eager_call.values()
    assert traced.experimental_get_tracing_count() <= 3


def test_one_nan_example_makes_the_batch_gradient_nan_not_zero():
    # The log-domain normaliser must not turn a NaN maximum into a silent zero gradient.
    z, ids = _batch(8, 4, seed=2)
    z[3, 1] = np.nan
    _, grad = _gradient(losses.DerivativeManipulation(), ids, z)
    assert np.isnan(grad.numpy()).all()
    zero = np.full((4, 3), -200.0, "float32")  # p_c underflows to 0: every MAE weight is 0
    zero[:, 0] = 0.0
    _, grad = _gradient(losses.MeanAbsoluteError(normalize="batch"), np.ones(4, "int64"), zero)
    np.testing.assert_array_equal(grad.numpy(), 0.0)


def test_log_mean_exp_across_replicas_with_an_all_zero_replica():
    # Replica 0's magnitudes are all 0 (log = -inf), replica 1's are 1 and 3: the global
    # mean of (0, 0, 1, 3) is 1. Gathering -inf maxima used to give 0 * -inf = NaN.
    strategy = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    per_replica = [np.float32([-np.inf, -np.inf]), np.log(np.float32([1.0, 3.0]))]
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(per_replica[ctx.replica_id_in_sync_group]))
    result = strategy.run(tf.function(losses._log_global_mean_exp), args=(values,))
    for shift in strategy.experimental_local_results(result):
        assert float(shift) == pytest.approx(0.0, abs=1e-6)  # log(mean) = log(1)
    everything_zero = strategy.run(tf.function(losses._log_global_mean_exp), args=(
        strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(np.float32([-np.inf, -np.inf]))),))
    assert all(np.isposinf(float(s)) for s in strategy.experimental_local_results(
        everything_zero))  # +inf: the normalised gradient is 0
