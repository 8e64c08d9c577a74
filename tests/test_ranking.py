"""Tests for keras_imae.ranking: mislabel scores and ranking quality."""

import itertools

import numpy as np
import pytest

from keras_imae.label_issues import _ranking as ranking

from fit_cases import GIVEN, LOGITS, identity_model


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


def test_rank_mislabelled_prob_and_loss():
    model = identity_model()
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25],
                              [0.1, 0.1, 0.8]], "float32"))
    labels = np.array([0, 1, 1, 0])  # p(given) = 0.7, 0.8, 0.25, 0.1
    idx, scores = ranking.rank_mislabelled(model, logits, labels)
    np.testing.assert_array_equal(idx, [3, 2, 0, 1])
    np.testing.assert_allclose(scores, 1 - np.array([0.7, 0.8, 0.25, 0.1]), rtol=1e-6)
    idx_l, loss = ranking.rank_mislabelled(model, logits, np.eye(3)[labels], score="loss")
    np.testing.assert_array_equal(idx_l, idx)
    np.testing.assert_allclose(loss, -np.log([0.7, 0.8, 0.25, 0.1]), rtol=1e-6)
    with pytest.raises(ValueError, match="score"):
        ranking.rank_mislabelled(model, logits, labels, score="dm")
    with pytest.raises(ValueError, match="one label per example"):
        ranking.rank_mislabelled(model, logits, labels[:3])


def test_mislabel_scores_from_logits_equal_rank_mislabelled():
    model = identity_model()
    for score in ("prob", "loss"):
        by_model = ranking.rank_mislabelled(model, LOGITS, GIVEN, score=score)
        by_logits = ranking.mislabel_scores(LOGITS, GIVEN, score=score)
        np.testing.assert_array_equal(by_model[0], by_logits[0])
        np.testing.assert_allclose(by_model[1], by_logits[1], rtol=1e-12)
    with pytest.raises(ValueError, match="score='rank'"):
        ranking.mislabel_scores(LOGITS, GIVEN, score="rank")
