"""Float64 numpy references of the losses, shared by tests/test_losses.py (TensorFlow) and
tests/jax_checks.py (JAX). A helper module, not a test file.

The references never use the library's stable direction: they derive each gradient through
the chain rule over the probabilities, ``dL/dz = J^T dL/dp`` with the softmax Jacobian
``J = diag(p) - p p^T`` (baselines), or from the papers' formula
``w(p_c) (p - y) / (2 (1 - p_c))`` (DM/IMAE) -- except :func:`stable_reference`, which takes
their limits where they are 0/0 even in float64.
"""

import numpy as np


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def chain(p, dl_dp):
    """``J^T dL/dp`` for the softmax Jacobian, per example."""
    return p * dl_dp - p * np.sum(p * dl_dp, -1, keepdims=True)


def dm_weight(pc, beta, lam):
    return np.exp(beta * pc**lam * (1 - pc))


# name -> (kwargs, per-example value(p, y), per-example logit gradient(p, y))
def ref_emphasis(weight):
    def grad(p, y):
        pc = np.sum(p * y, -1, keepdims=True)
        return weight(pc) * (p - y) / (2 * (1 - pc))

    return grad


def ref_nce_rce(alpha, beta):
    def value(p, y):
        return alpha * np.log(np.sum(p * y, -1)) / np.log(p).sum(-1) + beta * 4 * (
            1 - np.sum(p * y, -1))

    def grad(p, y):
        a = np.log(np.sum(p * y, -1, keepdims=True))
        b = np.log(p).sum(-1, keepdims=True)
        dnce_dp = (y / p * b - a / p) / b**2
        return chain(p, alpha * dnce_dp - 4 * beta * y)

    return value, grad


NCE_VALUE, NCE_GRAD = ref_nce_rce(0.5, 2.0)

REFERENCES = {
    "cce": ({}, lambda p, y: -np.log(np.sum(p * y, -1)), lambda p, y: chain(p, -y / p)),
    "mae": ({}, lambda p, y: np.abs(p - y).sum(-1), lambda p, y: chain(p, np.sign(p - y))),
    "mse": ({}, lambda p, y: ((p - y) ** 2).sum(-1), lambda p, y: chain(p, 2 * (p - y))),
    "gce": (
        {"q": 0.7},
        lambda p, y: (1 - np.sum(p * y, -1) ** 0.7) / 0.7,
        lambda p, y: chain(p, -y * np.sum(p * y, -1, keepdims=True) ** (0.7 - 1)),
    ),
    "sce": (
        {"alpha": 0.1, "beta": 1.0},
        lambda p, y: -0.1 * np.log(np.sum(p * y, -1)) + 4 * (1 - np.sum(p * y, -1)),
        lambda p, y: chain(p, -0.1 * y / p - 4 * y),
    ),
    "nce_rce": ({"alpha": 0.5, "beta": 2.0}, NCE_VALUE, NCE_GRAD),
    "dm": (
        {"beta": 6.0, "lam": 0.5},
        lambda p, y: -np.log(np.sum(p * y, -1)),
        ref_emphasis(lambda pc: dm_weight(pc, 6.0, 0.5)),
    ),
    "imae": (
        {"temperature": 8.0},
        lambda p, y: -np.log(np.sum(p * y, -1)),
        ref_emphasis(lambda pc: dm_weight(pc, 8.0, 1.0)),
    ),
}


def reference_gradient(name, z, ids, normalize, sample_weight=None):
    """Gradient of the batch-mean loss w.r.t. the logits, float64."""
    _, _, grad = REFERENCES[name][0], REFERENCES[name][1], REFERENCES[name][2]
    p = softmax(z.astype(np.float64))
    y = np.eye(z.shape[1])[ids]
    g = grad(p, y)
    if normalize == "batch":
        g = g / np.abs(g).sum(-1).mean()
    if sample_weight is not None:
        g = g * sample_weight[:, None]
    return g / z.shape[0]


def random_logits(batch, k, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((batch, k))).astype(np.float32)
    ids = rng.integers(0, k, size=batch)
    return z, ids


def stable_reference(name, z, ids):
    """``(values, per-example logit gradients)`` in float64 at any logits.

    At extreme logits the closed forms above are 0/0 even in float64 (``1 - p_c`` and
    ``p - y`` both underflow), so this reference takes their limits: ``1 - p_c`` as
    ``exp(logsumexp_{k != c} z_k - logsumexp z)``, ``log p_c`` as ``-log(1 + e^-margin)`` with
    ``margin = z_c - logsumexp_{k != c} z_k`` (exact near ``p_c = 1``) and the direction
    ``(p - y) / (2 (1 - p_c))`` as ``softmax(z with z_c = -inf) / 2`` off the label, ``-1/2`` on
    it.
    """
    kwargs = REFERENCES[name][0]
    z = z.astype(np.float64)
    k = z.shape[1]
    y = np.eye(k)[ids]

    def lse(a):
        top = a.max(-1, keepdims=True)
        return (top + np.log(np.exp(a - top).sum(-1, keepdims=True)))[:, 0]

    log_p = z - lse(z)[:, None]
    p = np.exp(log_p)
    others = np.where(y > 0, -np.inf, z)
    log_p_c = -np.logaddexp(0.0, lse(others) - z[np.arange(len(z)), ids])  # -log(1 + e^-m)
    p_c, one_minus = np.exp(log_p_c), np.exp(lse(others) - lse(z))
    e = np.exp(others - others.max(-1, keepdims=True))
    u = 0.5 * (e / e.sum(-1, keepdims=True) - y)
    p_minus_y = 2 * one_minus[:, None] * u
    b = log_p.sum(-1)
    a_, b_ = kwargs.get("alpha"), kwargs.get("beta")
    if name in ("cce", "dm", "imae"):
        value = -log_p_c
    elif name == "mae":
        value = 2 * one_minus
    elif name == "mse":
        value = one_minus**2 + (p**2 * (1 - y)).sum(-1)
    elif name == "gce":
        value = -np.expm1(kwargs["q"] * log_p_c) / kwargs["q"]
    elif name == "sce":
        value = -a_ * log_p_c + 4 * b_ * one_minus
    else:
        value = a_ * log_p_c / b + 4 * b_ * one_minus
    weight = {
        "cce": lambda: 2 * one_minus,
        "mae": lambda: 4 * p_c * one_minus,
        "gce": lambda: 2 * p_c ** kwargs["q"] * one_minus,
        "sce": lambda: 2 * (a_ + 4 * b_ * p_c) * one_minus,
        "dm": lambda: dm_weight(p_c, kwargs["beta"], kwargs["lam"]),
        "imae": lambda: dm_weight(p_c, kwargs["temperature"], 1.0),
    }
    if name in weight:
        grad = weight[name]()[:, None] * u
    elif name == "mse":
        grad = 2 * p * (p_minus_y - (p * p_minus_y).sum(-1, keepdims=True))
    else:
        d_nce = (-p_minus_y * b[:, None] - log_p_c[:, None] * (1 - k * p)) / b[:, None] ** 2
        grad = a_ * d_nce + 4 * b_ * p_c[:, None] * p_minus_y
    return value, grad


# Confident right, confident wrong, wrong, p_c == 1.0 in float32, p_c == 0.0 in float32.
EXTREME_Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 1e4], [30.0, 0.0, 0.0],
                      [-60.0, 40.0, 0.0]], np.float32)
EXTREME_IDS = np.array([0, 0, 1, 0, 0])


def toy_data(seed=0, n=256, d=8, k=4):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y
