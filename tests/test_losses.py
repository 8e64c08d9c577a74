"""Tests for keras_imae.losses: values and gradients against float64 closed forms in numpy
(tests/loss_cases.py)."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_imae
from keras_imae import losses, noise
from keras_imae.losses import _core as _loss_core, weighting
from keras_imae.run import distribute

from loss_cases import (EXTREME_IDS, EXTREME_Z, REFERENCES, dm_weight, random_logits,
                        reference_gradient, softmax, stable_reference, toy_data)

def _gradient(loss, y_true, z, sample_weight=None):
    z = tf.convert_to_tensor(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y_true, z, sample_weight=sample_weight)
    return value, tape.gradient(value, z)


# ----------------------------------------------------------------------------- gradients

SHAPES = [(1, 2), (7, 3), (32, 10)]


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("normalize", [None, "batch"])
@pytest.mark.parametrize("batch,k", SHAPES)
@pytest.mark.parametrize("one_hot", [False, True])
def test_gradient_matches_closed_form(name, normalize, batch, k, one_hot):
    z, ids = random_logits(batch, k, seed=batch * 100 + k)
    loss = losses.get(name, normalize=normalize, **REFERENCES[name][0])
    y_true = np.eye(k, dtype=np.float32)[ids] if one_hot else ids
    _, grad = _gradient(loss, y_true, z)
    np.testing.assert_allclose(
        grad.numpy(), reference_gradient(name, z, ids, normalize), rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("k", [2, 5])  # K = 2: binary problems work with every loss
def test_value_matches_closed_form(name, k):
    z, ids = random_logits(16, k, seed=3)
    kwargs, value, _ = REFERENCES[name]
    want = value(softmax(z.astype(np.float64)), np.eye(k)[ids])
    got = getattr(losses, losses.LOSSES[name]._fn.__name__)(ids, z, **kwargs)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    per_example = losses.get(name, reduction=None, **kwargs)(ids, z)  # the Loss class
    np.testing.assert_allclose(np.asarray(per_example), want, rtol=1e-5, atol=1e-6)


def test_labels_as_column_and_float_ids_agree():
    z, ids = random_logits(8, 4, seed=5)
    loss = losses.DerivativeManipulation(beta=6.0, lam=1.0)
    ref = _gradient(loss, ids, z)[1].numpy()
    for y in (ids[:, None], ids.astype(np.float32), ids.astype(np.int64)[:, None]):
        np.testing.assert_array_equal(_gradient(loss, y, z)[1].numpy(), ref)


def test_sample_weight_scales_gradient_after_normalisation():
    z, ids = random_logits(6, 4, seed=6)
    sw = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0], np.float32)
    _, grad = _gradient(losses.DerivativeManipulation(beta=5.0, lam=0.5), ids, z, sw)
    # Normalisation by the unweighted batch mean of w, then the sample weight.
    p = softmax(z.astype(np.float64))
    y = np.eye(4)[ids]
    pc = (p * y).sum(-1, keepdims=True)
    w = dm_weight(pc, 5.0, 0.5)
    want = sw[:, None] * (w / w.mean()) * (p - y) / (2 * (1 - pc)) / 6
    np.testing.assert_allclose(grad.numpy(), want, rtol=2e-4, atol=1e-7)


def test_imae_equals_dm_with_lambda_one():
    z, ids = random_logits(32, 10, seed=7)
    for normalize in (None, "batch"):
        a = _gradient(losses.IMAE(temperature=6.0, normalize=normalize), ids, z)
        b = _gradient(
            losses.DerivativeManipulation(beta=6.0, lam=1.0, normalize=normalize), ids, z)
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_every_emphasis_gradient_is_along_p_minus_y():
    z, ids = random_logits(16, 6, seed=8)
    p = softmax(z.astype(np.float64))
    direction = p - np.eye(6)[ids]
    for name in ("cce", "mae", "gce", "sce", "dm", "imae"):
        _, grad = _gradient(losses.get(name), ids, z)
        ratio = grad.numpy() / direction
        np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-4)
        assert np.all(ratio > 0)


# ----------------------------------------------------------------------------- Keras parity


def test_forward_values_equal_keras():
    z, ids = random_logits(16, 5, seed=9)
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
    z, ids = random_logits(16, 7, seed=10)
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
@pytest.mark.parametrize("normalize", [None, "batch"])
def test_extreme_logits_match_float64_closed_forms(name, normalize):
    assert tf.nn.softmax(EXTREME_Z)[3, 0].numpy() == 1.0
    assert tf.nn.softmax(EXTREME_Z)[4, 0].numpy() == 0.0
    want_value, want_grad = stable_reference(name, EXTREME_Z, EXTREME_IDS)
    if normalize == "batch":
        want_grad = want_grad / np.abs(want_grad).sum(-1).mean()
    loss = losses.get(name, normalize=normalize, reduction=None, **REFERENCES[name][0])
    value, grad = _gradient(loss, EXTREME_IDS, EXTREME_Z)
    np.testing.assert_allclose(value.numpy(), want_value, rtol=1e-5, atol=1e-30)
    # Entries below 1e-6 of the largest may differ: float32 flushes p_c = e^-100 to 0 (GCE's
    # p_c^q) and cancels 1e-25-sized MSE terms.
    scale = np.abs(want_grad).max()
    assert scale > 0  # the extremes do get a gradient
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-5, atol=1e-6 * scale)


def test_stable_reference_equals_the_papers_formula_where_both_are_defined():
    z, ids = random_logits(16, 5, seed=21)
    p, y = softmax(z.astype(np.float64)), np.eye(5)[ids]
    for name in REFERENCES:
        value, grad = stable_reference(name, z, ids)
        np.testing.assert_allclose(value, REFERENCES[name][1](p, y), rtol=1e-10)
        np.testing.assert_allclose(grad, REFERENCES[name][2](p, y), rtol=1e-8, atol=1e-15)


# The gradient is computed in float32 and rounded once to the logits' dtype: half an ulp,
# 2^-11 = 4.9e-4 (float16) and 2^-8 = 3.9e-3 (bfloat16). Largest relative errors measured
# over these cases: 4.4e-4 and 3.7e-3. The tolerances sit just above; a gradient scaled by
# 1.02 fails them.
HALF_RTOL = {tf.float16: 5e-4, tf.bfloat16: 4e-3}


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_half_precision_logits(dtype, name):
    z, ids = random_logits(16, 10, seed=11)
    z_half = tf.cast(z, dtype)
    value, grad = _gradient(losses.get(name, normalize="batch", **REFERENCES[name][0]), ids,
                            z_half)
    assert value.dtype == tf.float32 and grad.dtype == dtype
    grad = tf.cast(grad, tf.float32).numpy()
    want = reference_gradient(name, tf.cast(z_half, tf.float32).numpy(), ids, "batch")
    rtol, atol = HALF_RTOL[dtype], 1e-7  # atol: float16's subnormal spacing is 6e-8
    np.testing.assert_allclose(grad, want, rtol=rtol, atol=atol)
    assert not np.allclose(grad, 1.02 * want, rtol=rtol, atol=atol)


def test_loss_dtype_is_the_output_dtype_only():
    # Keras' Loss.__call__ would round the logits -- and class id 301 -- to bfloat16 first.
    z, _ = random_logits(4, 512, seed=22)
    ids = np.array([301, 5, 257, 511])
    for name in ("dm", "cce", "mse"):
        exact = losses.get(name)
        half = losses.get(name, dtype="bfloat16")
        assert half.dtype == "bfloat16"
        value, grad = _gradient(half, ids, z)
        want_value, want_grad = _gradient(exact, ids, z)
        assert value.dtype == tf.bfloat16 and grad.dtype == tf.float32
        assert float(value) == float(tf.cast(want_value, tf.bfloat16))
        np.testing.assert_array_equal(grad.numpy(), want_grad.numpy())
        per_example = losses.get(name, dtype="bfloat16", reduction=None)(ids, z)
        np.testing.assert_array_equal(
            per_example.numpy(), tf.cast(exact.call(ids, z), tf.bfloat16).numpy())


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
    z, ids = random_logits(32, 10, seed=12)
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


@pytest.mark.parametrize("reject_margin", [None, 2.0])
def test_batch_normalisation_uses_the_global_batch_under_mirrored_strategy(reject_margin):
    """2 replicas x 32 examples give the logit gradients of 1 device x 64.

    Keras' ``Loss.__call__`` divides each replica's loss by the number of replicas. Large
    logits spread the weights so that a per-replica mean would differ clearly. With
    ``reject_margin`` the classes' alive test sums over the global batch too.
    """
    z, ids = random_logits(64, 10, seed=13, scale=6.0)
    loss = losses.DerivativeManipulation(beta=12.0, lam=0.5, reject_margin=reject_margin)
    _, single = _gradient(loss, ids, z)
    if reject_margin:  # some examples are rejected, so the test sees the alive test
        assert np.any(np.all(single.numpy() == 0, -1))

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


@pytest.mark.parametrize("name", ["dm", "imae", "gce"])
def test_one_fit_step_applies_the_closed_form_gradient(name):
    # compile + fit of a linear model: W <- W - lr * x^T dL/dz, with dL/dz the float64
    # closed form of the batch-mean loss (normalised over the batch for DM and IMAE).
    x, y = toy_data(n=32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, use_bias=False)])
    kernel = model.get_weights()[0]
    loss = losses.get(name, **REFERENCES[name][0])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    g = reference_gradient(name, (x @ kernel).astype(np.float32), y, loss.normalize)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.5 * x.T @ g, rtol=1e-4,
                               atol=1e-6)


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    x, y = toy_data()
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
                      name="custom", dtype="bfloat16")
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    assert keras.losses.deserialize(keras.losses.serialize(loss)).get_config() == config
    assert config["normalize"] == "batch" and config["from_logits"] is False
    assert clone.dtype == "bfloat16"


def test_package_exports():
    assert keras_imae.losses is losses and keras_imae.losses.weighting is weighting
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
    with pytest.raises(ValueError, match="dm, imae, cce, mae, mse, gce, sce, nce_rce, forward"):
        losses.get("focal")
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get(3)
    with pytest.raises(ValueError, match="cannot be applied"):
        losses.get(losses.IMAE(), temperature=2.0)


def test_label_out_of_range_is_an_error():
    z, _ = random_logits(4, 3, seed=15)
    for bad in ([0, 1, 3, 0], [0, -1, 2, 0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, num_classes\)"):
            losses.DerivativeManipulation()(np.array(bad), z)


def test_non_integer_and_soft_labels_are_errors():
    z, _ = random_logits(2, 3, seed=16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="integers"):
        losses.CategoricalCrossentropy()(np.array([0.5, 1.0], np.float32), z)
    soft = np.array([[0.9, 0.05, 0.05], [0.0, 1.0, 0.0]], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one-hot"):
        losses.DerivativeManipulation()(soft, z)


def test_incompatible_shapes_are_errors():
    z, ids = random_logits(4, 3, seed=17)
    with pytest.raises(ValueError, match="y_true.shape"):
        losses.DerivativeManipulation()(np.zeros((4, 2)), z)
    with pytest.raises(ValueError, match="y_pred"):
        losses.DerivativeManipulation()(ids, z[:, :, None])
    with pytest.raises(ValueError, match="at least 2 classes"):
        losses.DerivativeManipulation()(np.zeros(4), z[:, :1])


# ----------------------------------------------------------------------------- log domain


def _log_odds(z, k):
    """``log(p_k / (1 - p_k))`` of each row's class ``k`` (float64 numpy)."""
    chosen = np.eye(z.shape[1])[k] > 0
    others = np.where(chosen, -np.inf, z)
    top = others.max(-1)
    return z[chosen] - (top + np.log(np.exp(others - top[:, None]).sum(-1)))


def _reference_dm_log_domain(z, ids, beta, lam, max_margin=None, reject_margin=None):
    """DM's batch-normalised gradient in float64, normalised via log-sum-exp (numpy)."""
    z = z.astype(np.float64)
    p = softmax(z)
    y = np.eye(z.shape[1])[ids]
    pc = np.sum(p * y, -1)
    log_w = beta * pc**lam * (1 - pc)
    top = log_w.max()
    log_mean = top + np.log(np.mean(np.exp(log_w - top)))
    scale = np.exp(log_w - log_mean)
    if max_margin is not None:
        scale = np.where(np.abs(_log_odds(z, ids)) <= max_margin, scale, 0.0)
    if reject_margin is not None:
        predicted = z.argmax(-1)
        alive = p.sum(0) >= 0.5 * y.sum(0)  # the model's mass for a class vs its label count
        if np.ndim(reject_margin) == 2:  # R[label, predicted]
            reject_margin = np.asarray(reject_margin)[ids, predicted]
        rejected = ((predicted != ids) & alive[ids]
                    & (_log_odds(z, predicted) > reject_margin))
        scale = np.where(rejected, 0.0, scale)
    direction = (p - y) / (2 * (1 - pc))[:, None]
    return scale[:, None] * direction / z.shape[0]


@pytest.mark.parametrize("beta", [500.0, 5000.0])
def test_batch_normalisation_is_exact_for_any_beta(beta):
    # exp(beta * p^lam * (1 - p)) overflows float32 past ~88: the normalisation must not.
    z, ids = random_logits(16, 5, seed=11, scale=1.0)
    loss = losses.DerivativeManipulation(beta=beta, lam=0.5)
    value, grad = _gradient(loss, ids, z)
    assert np.all(np.isfinite(grad.numpy())) and np.isfinite(value.numpy())
    np.testing.assert_allclose(grad.numpy(), _reference_dm_log_domain(z, ids, beta, 0.5),
                               rtol=2e-3, atol=1e-7)
    _, grad_imae = _gradient(losses.IMAE(temperature=400.0), ids, z)
    np.testing.assert_allclose(grad_imae.numpy(), _reference_dm_log_domain(z, ids, 400.0, 1.0),
                               rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("loss", [
    losses.DerivativeManipulation(beta=16.0, lam=2.0, max_margin=4.0),
    losses.IMAE(temperature=8.0)])
def test_flat_emphasis_is_the_unit_weight_closed_form_and_switches_back(loss):
    # Flat: every example's gradient is the unit direction (p - y) / (2 (1 - p_c)) over B
    # (beta = 0, numpy), the margin cap still applied; then back to the configured loss.
    z, ids = random_logits(16, 5, seed=4, scale=3.0)
    lam = getattr(loss, "lam", 1.0)
    config = loss.get_config()
    _, configured = _gradient(loss, ids, z)
    loss.state.build(5)
    loss.state.assign(flat_emphasis=True)
    _, flat = _gradient(loss, ids, z)
    np.testing.assert_allclose(
        flat.numpy(), _reference_dm_log_domain(z, ids, 0.0, lam, loss.max_margin),
        rtol=2e-4, atol=1e-7)
    assert loss.get_config() == config  # a phase, not a hyper-parameter
    assert np.all(loss.log_emphasis(np.array([0.2, 0.7], "float32")).numpy() == 0.0)
    loss.state.assign(flat_emphasis=False)
    _, again = _gradient(loss, ids, z)
    np.testing.assert_array_equal(again.numpy(), configured.numpy())
    assert not np.allclose(flat.numpy(), configured.numpy())


@pytest.mark.parametrize("normalize", ["batch", None])
def test_the_state_gives_exactly_the_loss_of_the_phase_it_stands_for(normalize):
    # The warm-up's flat emphasis is DM with beta=0 and no rejection cap; the estimated noise
    # transition is DM with the pair margins as its reject_margin matrix: same values and
    # the same gradients, bit for bit, whether the phase is a Python bool (the function) or a
    # variable read in the step (the class).
    z, ids = random_logits(48, 4, seed=9, scale=6.0)
    t = noise.transition_matrix(4, "pairflip", 0.4)
    hp = dict(beta=8.0, lam=2.0, max_margin=8.0, normalize=normalize)
    loss = losses.DerivativeManipulation(reject_margin=2.0, **hp)
    loss.state.build(4)
    _, scalar = _gradient(losses.DerivativeManipulation(reject_margin=2.0, **hp), ids, z)
    _, unset = _gradient(loss, ids, z)  # T all zeros: R for every pair, the scalar rule
    np.testing.assert_array_equal(unset.numpy(), scalar.numpy())
    loss.state.assign(flat_emphasis=True)
    flat = losses.DerivativeManipulation(**{**hp, "beta": 0.0})
    for a, b in zip(_gradient(loss, ids, z), _gradient(flat, ids, z)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loss.state.assign(flat_emphasis=False, noise_transition=t)
    paired = losses.DerivativeManipulation(reject_margin=losses.pair_reject_margins(t, 2.0), **hp)
    (value, grad), (want_value, want) = _gradient(loss, ids, z), _gradient(paired, ids, z)
    np.testing.assert_array_equal(value.numpy(), want_value.numpy())
    np.testing.assert_array_equal(grad.numpy(), want.numpy())
    assert not np.array_equal(grad.numpy(), scalar.numpy())  # the pairs changed something
    z_t = tf.constant(z)
    with tf.GradientTape() as tape:  # the function, given the phase as data (reduced by
        tape.watch(z_t)                # reduce_mean, not Keras: equal to rounding)
        value = tf.reduce_mean(losses.derivative_manipulation(
            ids, z_t, reject_margin=2.0, noise_transition=t, **hp))
    np.testing.assert_allclose(tape.gradient(value, z_t).numpy(), want.numpy(), rtol=1e-6,
                               atol=1e-12)


@pytest.mark.parametrize("loss, scale", [
    (losses.DerivativeManipulation(beta=16.0, lam=2.0, max_margin=8.0), 0.25),
    (losses.IMAE(temperature=8.0), 0.5)])
def test_the_ramp_s_scale_is_the_loss_with_its_strength_scaled(loss, scale):
    # emphasis_scale s computes w = exp(s * beta * p^lam * (1 - p)): the closed form with
    # beta * s (numpy), the function given s as data, and the loss built with beta * s agree
    z, ids = random_logits(16, 5, seed=7, scale=3.0)
    lam, beta = getattr(loss, "lam", 1.0), getattr(loss, loss.EMPHASIS_STRENGTH)
    _, whole = _gradient(loss, ids, z)
    loss.state.build(5)
    loss.state.assign(emphasis_scale=scale)
    _, ramped = _gradient(loss, ids, z)
    np.testing.assert_allclose(
        ramped.numpy(), _reference_dm_log_domain(z, ids, beta * scale, lam, loss.max_margin),
        rtol=2e-4, atol=1e-7)
    _, scaled = _gradient(type(loss)(**{**loss.get_config(), loss.EMPHASIS_STRENGTH:
                                         beta * scale}), ids, z)
    np.testing.assert_allclose(ramped.numpy(), scaled.numpy(), rtol=1e-5, atol=1e-8)
    z_t = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z_t)
        value = tf.reduce_mean(losses.derivative_manipulation(
            ids, z_t, beta=beta, lam=lam, max_margin=loss.max_margin, emphasis_scale=scale))
    np.testing.assert_allclose(tape.gradient(value, z_t).numpy(), ramped.numpy(), rtol=1e-5,
                               atol=1e-8)
    np.testing.assert_allclose(loss.log_emphasis(np.float32([0.5])).numpy(),
                               scale * beta * 0.5 ** lam * 0.5, rtol=1e-6)
    assert not np.allclose(ramped.numpy(), whole.numpy())
    loss.state.assign(emphasis_scale=1.0)  # back to the whole emphasis, bit for bit
    np.testing.assert_array_equal(_gradient(loss, ids, z)[1].numpy(), whole.numpy())


def test_a_state_saved_before_the_ramp_loads_with_the_whole_emphasis():
    state = losses.DerivativeManipulation(reject_margin=3.0).state
    state.build(3)
    state.assign(emphasis_scale=0.5)
    state.load_own_variables({"flat_emphasis": np.bool_(True),
                              "noise_transition": np.eye(3, dtype="float32")})
    values = state.values()
    assert values["flat_emphasis"] and values["emphasis_scale"] == 1.0
    np.testing.assert_array_equal(values["noise_transition"], np.eye(3))
    with pytest.raises(ValueError, match="saved loss state holds"):  # another loss's state
        state.load_own_variables({"noise_transition": np.eye(3, dtype="float32")})


def test_only_losses_with_a_phase_have_a_state():
    assert losses.GeneralizedCrossEntropy().state is None
    assert losses.DerivativeManipulation().state.names == ("flat_emphasis", "emphasis_scale")
    assert losses.DerivativeManipulation(reject_margin=3.0).state.names == (
        "flat_emphasis", "emphasis_scale", "noise_transition")
    assert losses.ForwardCorrection().state.names == ("noise_transition",)
    assert losses.ForwardCorrection(transition=np.eye(3)).state is None
    with pytest.raises(ValueError, match="no state 'noise_transition'"):
        losses.DerivativeManipulation().state.variable("noise_transition")


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


def test_reject_margin_silences_examples_confidently_given_to_another_class():
    # Label 0. Rows: another class at log-odds ~5 (rejected with R=3), ~2 (kept), the label
    # itself the most probable at log-odds ~5 (kept: not another class), a near tie (kept),
    # two fitted rows (class 0's predicted mass 3.4 >= half its 6 labels: alive).
    z = np.float32([[0, 5, -50], [0, 2.2, -50], [5, 0, -50], [0, 0.1, 0], [9, 0, 0],
                    [9, 0, 0]])
    ids = np.zeros(6, "int64")
    loss = losses.DerivativeManipulation(beta=8.0, lam=2.0, reject_margin=3.0)
    _, grad = _gradient(loss, ids, z)
    grad = grad.numpy()
    assert np.all(grad[0] == 0.0) and np.all(np.abs(grad[1:4]).sum(-1) > 0)
    np.testing.assert_allclose(grad, _reference_dm_log_domain(z, ids, 8.0, 2.0,
                                                              reject_margin=3.0),
                               rtol=2e-4, atol=1e-8)
    # A class the model is losing (mass 1.0 < half its 6 labels) is never rejected: the
    # same confident-other rows keep their gradient.
    _, lost = _gradient(loss, ids, np.float32([[0, 5, -50]] * 5 + [[5, 0, -50]]))
    assert np.all(np.abs(lost.numpy()).sum(-1) > 0)
    # Random batches, both caps together and IMAE, against numpy.
    z, ids = random_logits(64, 6, seed=5, scale=6.0)
    both = losses.DerivativeManipulation(beta=16.0, lam=2.0, max_margin=4.0, reject_margin=2.0)
    _, grad = _gradient(both, ids, z)
    reference = _reference_dm_log_domain(z, ids, 16.0, 2.0, max_margin=4.0, reject_margin=2.0)
    assert 0 < np.sum(np.all(reference == 0, -1)) < 64  # some examples are capped, not all
    np.testing.assert_allclose(grad.numpy(), reference, rtol=2e-3, atol=1e-8)
    _, grad = _gradient(losses.IMAE(temperature=8.0, reject_margin=2.0), ids, z)
    np.testing.assert_allclose(grad.numpy(), _reference_dm_log_domain(
        z, ids, 8.0, 1.0, reject_margin=2.0), rtol=2e-3, atol=1e-8)
    # Off while the emphasis is flat (the warm-up): every example gets the unit direction.
    both.state.build(6)
    both.state.assign(flat_emphasis=True)
    _, flat = _gradient(both, ids, z)
    np.testing.assert_allclose(flat.numpy(), _reference_dm_log_domain(z, ids, 0.0, 2.0,
                                                                      max_margin=4.0),
                               rtol=2e-4, atol=1e-8)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="reject_margin"):
            losses.DerivativeManipulation(reject_margin=bad)


def test_pair_reject_margins_lower_r_by_how_far_a_pair_stands_above_its_column():
    # T[k, c] = P(label c | true class k): 40% pair-flip 0 -> 1 -> 2 -> 0 among 4 classes,
    # class 3 clean; column c's mean over j != c is T[c - 1, c] / 3.
    t = np.array([[0.6, 0.4, 0.0, 0.0],
                  [0.0, 0.6, 0.4, 0.0],
                  [0.4, 0.0, 0.6, 0.0],
                  [0.0, 0.0, 0.0, 1.0]])
    margins = losses.pair_reject_margins(t, 3.0)
    expected = np.full((4, 4), 3.0)
    for c in range(4):
        column_mean = np.mean([t[j, c] for j in range(4) if j != c])
        for k in range(4):
            if k != c and t[k, c] > 0:
                expected[c, k] = min(3.0, max(0.0, 3.0 - np.log(t[k, c] / column_mean)))
    np.testing.assert_allclose(margins, expected, rtol=1e-6)
    assert margins[1, 0] == pytest.approx(3.0 - np.log(3.0))  # label 1, predicted 0
    assert margins[0, 1] == 3.0 and margins[3, 2] == 3.0  # never seen, clean class
    # Even noise keeps R everywhere; pair-flip among 10 classes: R - log 9; clipped at 0.
    sym = losses.pair_reject_margins(noise.transition_matrix(10, "symmetric", 0.4), 3.0)
    np.testing.assert_allclose(sym, 3.0, rtol=1e-6)
    flip = losses.pair_reject_margins(noise.transition_matrix(10, "pairflip", 0.4), 3.0)
    assert flip[1, 0] == pytest.approx(3.0 - np.log(9.0), rel=1e-6)
    assert losses.pair_reject_margins(noise.transition_matrix(10, "pairflip", 0.4), 1.0)[
        1, 0] == 0.0
    with pytest.raises(ValueError, match="reject_margin"):
        losses.pair_reject_margins(t, 0.0)


def test_a_matrix_reject_margin_rejects_per_class_pair():
    z, ids = random_logits(64, 6, seed=5, scale=6.0)
    uniform = np.full((6, 6), 2.0, "float32")
    for loss in (losses.DerivativeManipulation(beta=16.0, lam=2.0, reject_margin=2.0),
                 losses.IMAE(temperature=8.0, reject_margin=2.0)):
        _, scalar = _gradient(loss, ids, z)
        fn = type(loss)._fn
        hparams = dict(loss._hparams, reject_margin=uniform)
        with tf.GradientTape() as tape:
            zt = tf.constant(z)
            tape.watch(zt)
            value = tf.reduce_mean(fn(ids, zt, **hparams))
        np.testing.assert_allclose(tape.gradient(value, zt).numpy(), scalar.numpy(),
                                   rtol=1e-6, atol=1e-9)
    # Pair margins: label 0 predicted 1 at 0.5, every other pair never: only those rejected.
    margins = np.full((6, 6), np.inf, "float32")
    margins[0, 1] = 0.5
    reference = _reference_dm_log_domain(z, ids, 16.0, 2.0, reject_margin=margins)
    with tf.GradientTape() as tape:
        zt = tf.constant(z)
        tape.watch(zt)
        value = tf.reduce_mean(losses.derivative_manipulation(ids, zt, beta=16.0, lam=2.0,
                                                              reject_margin=margins))
    grad = tape.gradient(value, zt).numpy()
    rejected = np.all(reference == 0, -1)
    assert rejected.any() and np.all(ids[rejected] == 0) and np.all(z[rejected].argmax(-1) == 1)
    np.testing.assert_allclose(grad, reference, rtol=2e-3, atol=1e-8)
    for bad in (np.full((6, 5), 1.0), np.full((6, 6), -1.0), np.full((6, 6), np.nan),
                np.full((5, 5), 1.0)):
        with pytest.raises(ValueError, match="reject_margin"):
            losses.derivative_manipulation(ids, z, reject_margin=bad)


def test_noise_transition_sets_the_pair_margins_while_the_emphasis_acts():
    t = noise.transition_matrix(4, "pairflip", 0.4)
    loss = losses.DerivativeManipulation(beta=8.0, lam=2.0, reject_margin=3.0)
    loss.state.build(4)
    config = loss.get_config()
    z, ids = random_logits(32, 4, seed=2, scale=6.0)
    _, before = _gradient(loss, ids, z)
    loss.state.assign(noise_transition=t)
    np.testing.assert_array_equal(
        losses.reject_margins(3.0, **loss.state_values()), losses.pair_reject_margins(t, 3.0))
    _, after = _gradient(loss, ids, z)
    np.testing.assert_allclose(after.numpy(), _reference_dm_log_domain(
        z, ids, 8.0, 2.0, reject_margin=losses.pair_reject_margins(t, 3.0)),
        rtol=2e-3, atol=1e-8)
    assert not np.allclose(before.numpy(), after.numpy())
    assert loss.get_config() == config  # a phase, not a hyper-parameter
    loss.state.assign(noise_transition=None)
    _, again = _gradient(loss, ids, z)
    np.testing.assert_array_equal(again.numpy(), before.numpy())


def test_reject_margins_is_the_one_decision_whether_rejection_acts():
    t = noise.transition_matrix(4, "pairflip", 0.4)
    assert losses.reject_margins(None, noise_transition=t) is None  # no cap configured
    assert losses.reject_margins(3.0, flat_emphasis=True, noise_transition=t) is None  # warm-up
    assert losses.reject_margins(3.0, flat_emphasis=np.bool_(False)) == 3.0
    np.testing.assert_array_equal(losses.reject_margins(3.0, noise_transition=np.zeros((4, 4))),
                                  np.full((4, 4), 3.0))  # no estimate yet: R everywhere
    flat = keras.ops.convert_to_tensor(True)  # a phase read in the step: +inf, none rejected
    assert np.all(np.isinf(keras.ops.convert_to_numpy(
        losses.reject_margins(3.0, flat_emphasis=flat, noise_transition=t))))
    with pytest.raises(ValueError, match="already a matrix"):
        losses.reject_margins(np.full((4, 4), 3.0), noise_transition=t)


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
        z, ids = random_logits(batch, 4, seed=batch)
        loss(ids, z)
    assert "retracing" not in caplog.text
    (traced,) = loss._eager_call.values()
    assert traced.experimental_get_tracing_count() <= 3


def test_one_nan_example_makes_the_batch_gradient_nan_not_zero():
    # The log-domain normaliser must not turn a NaN maximum into a silent zero gradient.
    z, ids = random_logits(8, 4, seed=2)
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
    result = strategy.run(tf.function(_loss_core.log_global_mean_exp), args=(values,))
    for shift in strategy.experimental_local_results(result):
        assert float(shift) == pytest.approx(0.0, abs=1e-6)  # log(mean) = log(1)
    everything_zero = strategy.run(tf.function(_loss_core.log_global_mean_exp), args=(
        strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(np.float32([-np.inf, -np.inf]))),))
    assert all(np.isposinf(float(s)) for s in strategy.experimental_local_results(
        everything_zero))  # +inf: the normalised gradient is 0


# ----------------------------------------------------------------------------- forward


def _random_transition(k, seed, noise_mass=0.4):
    rng = np.random.default_rng(seed)
    off = rng.dirichlet(np.ones(k - 1), size=k) * noise_mass
    matrix = np.zeros((k, k))
    for i in range(k):
        matrix[i, np.arange(k) != i] = off[i]
        matrix[i, i] = 1 - noise_mass
    return matrix


def _forward_reference(z, ids, matrix, normalize):
    """Value and batch-mean gradient through the chain rule: dL/dp_k = -T[k, c] / q_c."""
    p = softmax(z.astype(np.float64))
    column = matrix[:, ids].T  # [B, K]: T[k, c_i]
    q = (p * column).sum(-1, keepdims=True)
    g = (p * (-column / q) - p * (p * (-column / q)).sum(-1, keepdims=True))
    if normalize == "batch":
        g = g / np.abs(g).sum(-1).mean()
    return -np.log(q[:, 0]), g / len(z)


@pytest.mark.parametrize("normalize", [None, "batch"])
@pytest.mark.parametrize("batch,k", [(7, 3), (32, 10)])
def test_forward_correction_matches_the_chain_rule(normalize, batch, k):
    z, ids = random_logits(batch, k, seed=batch + k)
    matrix = _random_transition(k, seed=k)
    want_value, want_grad = _forward_reference(z, ids, matrix, normalize)
    loss = losses.ForwardCorrection(transition=matrix, normalize=normalize, reduction=None)
    np.testing.assert_allclose(np.asarray(loss(ids, z)), want_value, rtol=1e-5)
    _, grad = _gradient(losses.ForwardCorrection(transition=matrix, normalize=normalize),
                        ids, z)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=2e-4, atol=1e-7)


def test_forward_correction_with_identity_or_no_transition_is_cross_entropy():
    z, ids = random_logits(16, 5, seed=2)
    cce_value, cce_grad = _gradient(losses.CategoricalCrossentropy(), ids, z)
    for transition in (None, np.eye(5)):
        value, grad = _gradient(losses.ForwardCorrection(transition=transition), ids, z)
        np.testing.assert_allclose(value.numpy(), cce_value.numpy(), rtol=1e-6)
        np.testing.assert_allclose(grad.numpy(), cce_grad.numpy(), rtol=1e-5, atol=1e-8)


def test_forward_correction_is_finite_where_the_label_is_impossible():
    """The model puts all its mass on a class that never carries the label (T[k, c] = 0)."""
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.4], [0.0, 0.4, 0.6]])
    z = np.array([[1e4, 0.0, 0.0], [0.0, 50.0, 0.0], [-60.0, 40.0, 0.0]], np.float32)
    value, grad = _gradient(losses.ForwardCorrection(transition=matrix, reduction=None),
                            np.array([1, 0, 1]), z)
    assert np.isfinite(value.numpy()).all() and np.isfinite(grad.numpy()).all()


def test_forward_correction_config_keeps_its_transition(tmp_path):
    matrix = _random_transition(4, seed=0)
    loss = losses.get("forward", transition=matrix)
    config = loss.get_config()
    np.testing.assert_allclose(config["transition"], matrix)
    assert losses.ForwardCorrection.from_config(config).get_config() == config
    x, y = toy_data(k=4)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.loss.get_config()["transition"], matrix)


@pytest.mark.parametrize("transition, match", [
    (np.ones((3, 2)) / 2, r"K x K transition matrix \(K >= 2\)"),
    (np.array([[0.5, 0.6], [0.0, 1.0]]), r"transition\[0\]"),
    (np.array([[1.0, 0.0], [1.5, -0.5]]), r"transition\[1\]"),
    ([0.5, 0.5], "shape"),
])
def test_forward_correction_refuses_bad_transitions(transition, match):
    with pytest.raises(ValueError, match=match):
        losses.ForwardCorrection(transition=transition)


def test_forward_correction_refuses_a_transition_of_another_size():
    z, ids = random_logits(4, 3, seed=1)
    with pytest.raises(ValueError, match="a 2 x 2 matrix for logits of 3 classes"):
        losses.forward_correction(ids, z, transition=np.eye(2))


def test_forward_correction_takes_an_estimated_transition_as_its_phase():
    z, ids = random_logits(8, 4, seed=4)
    matrix = _random_transition(4, seed=1)
    loss = losses.ForwardCorrection()
    loss.state.build(4)  # no estimate yet (all zeros): exactly cross-entropy
    for a, b in zip(_gradient(loss, ids, z), _gradient(losses.CategoricalCrossentropy(), ids, z)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    loss.state.assign(noise_transition=matrix)  # what callbacks.PairMargins writes
    np.testing.assert_allclose(_gradient(loss, ids, z)[1].numpy(), _gradient(
        losses.ForwardCorrection(transition=matrix), ids, z)[1].numpy(), rtol=1e-6)
    assert loss.get_config()["transition"] is None  # a training phase, not the config
    with pytest.raises(ValueError, match="not both"):
        losses.forward_correction(ids, z, transition=matrix, noise_transition=matrix)
    with pytest.raises(ValueError, match="`noise_transition`: a 3 x 3 matrix"):
        losses.forward_correction(ids, z, noise_transition=np.eye(3))
