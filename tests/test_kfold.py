"""Tests for keras_imae.kfold: stratified seeded folds and out-of-sample probabilities.
(The real fold models are exercised end to end in tests/test_label_issues.py.)"""
import numpy as np
import pytest

from keras_imae.label_issues import _kfold as kfold


# -- folds ------------------------------------------------------------------------------------
def test_folds_are_stratified_balanced_and_seeded():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    folds = kfold.assign_folds(labels, 4, seed=3)
    assert np.array_equal(folds, kfold.assign_folds(labels, 4, seed=3))
    assert not np.array_equal(folds, kfold.assign_folds(labels, 4, seed=4))
    sizes = np.bincount(folds, minlength=4)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(labels)
    for c in range(3):  # every class spread evenly over the folds
        per_fold = np.bincount(folds[labels == c], minlength=4)
        assert per_fold.max() - per_fold.min() <= 1


@pytest.mark.parametrize("folds", [1, True, 2.0, 5])
def test_bad_folds_raise(folds):
    with pytest.raises(ValueError, match="Invalid value for argument `folds`"):
        kfold.assign_folds([0, 1, 0, 1], folds, seed=0)


def test_no_example_is_scored_by_a_model_that_saw_it():
    """A spy model records what it trained on and what it scored; inputs carry their index."""
    n, k = 53, 10
    labels = np.arange(n) % k
    x = np.arange(n, dtype="float64")[:, None]
    seen, scored = {}, {}

    def spy_fit(x_train, y_train, fold):
        seen[fold] = set(x_train[:, 0].astype(int))

        def predict(x_held):
            scored[fold] = list(x_held[:, 0].astype(int))
            return np.zeros((len(x_held), k))

        return predict

    probs, fold_of = kfold.cross_val_probabilities(x, labels, k, fit=spy_fit, folds=4)
    assert sorted(seen) == sorted(scored) == [0, 1, 2, 3]
    for fold in range(4):
        assert seen[fold].isdisjoint(scored[fold])
        assert seen[fold] | set(scored[fold]) == set(range(n))
        assert np.all(fold_of[scored[fold]] == fold)
    assert sorted(i for fold in scored.values() for i in fold) == list(range(n))
    np.testing.assert_allclose(probs, 1.0 / k)


def test_cross_val_checks_inputs_and_the_predictor():
    x, labels = np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="one label per example"):
        # refused before any fit:
        kfold.cross_val_probabilities(x[:5], labels, 2, fit=lambda *_: None)
    with pytest.raises(ValueError, match="Expected logits of shape"):
        kfold.cross_val_probabilities(
            x, labels, 2, folds=2, fit=lambda *_: (lambda z: np.zeros((len(z), 3))))
