"""Tests for keras_imae.losses.weighting: the emphasis densities w(p) against their formulas."""

import numpy as np
import pytest

from keras_imae.losses import weighting


def _dm_weight(pc, beta, lam):
    return np.exp(beta * pc**lam * (1 - pc))


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


