"""Tests for keras_imae.noise.ranking_quality: how well a score finds the noisy examples."""

import itertools

import numpy as np
import pytest

from keras_imae import noise as ranking


def brute_force_auc(scores, is_noisy):
    pos, neg = scores[is_noisy], scores[~is_noisy]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_ranking_quality_hand_made():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3])
    is_noisy = np.array([1, 0, 0, 1, 0, 1], bool)
    q = ranking.ranking_quality(scores, is_noisy)
    # top-3 = examples 0, 1, 3 -> 2 noisy of 3.
    assert q["k"] == 3 and q["precision_at_k"] == pytest.approx(2 / 3)
    assert q["recall_at_k"] == pytest.approx(2 / 3)
    # Pairs (noisy, clean): 0.9 beats all 3; 0.7 beats 0.1, 0.2; 0.3 beats 0.1, 0.2 -> 7/9.
    assert q["roc_auc"] == pytest.approx(7 / 9)
    # The same ranking given as indices.
    q2 = ranking.ranking_quality(np.array([0, 1, 3, 5, 4, 2]), is_noisy)
    assert q2 == q


def test_ranking_quality_auc_with_ties_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 6, 40).astype("float64")  # many ties
        is_noisy = rng.uniform(size=40) < 0.3
        q = ranking.ranking_quality(scores, is_noisy)
        assert q["roc_auc"] == pytest.approx(brute_force_auc(scores, is_noisy), abs=1e-12)
    assert ranking.ranking_quality(np.zeros(4), np.array([1, 0, 1, 0]))["roc_auc"] == 0.5


@pytest.mark.parametrize(
    "scores,is_noisy,match",
    [
        (np.zeros(3), np.array([1, 0]), "same length"),
        (np.array([0, 0, 1]), np.array([1, 0, 0]), "permutation"),
        (np.ones(3), np.zeros(3), "both noisy and clean"),
    ],
)
def test_ranking_quality_errors(scores, is_noisy, match):
    with pytest.raises(ValueError, match=match):
        ranking.ranking_quality(scores, is_noisy)
