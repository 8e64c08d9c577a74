"""Tests for keras_imae.noise: label corruption, summaries, sharing the corruption."""
import os
import warnings

import numpy as np
import pytest

from keras_imae import noise

K = 10
N_PER_CLASS = 500
CLEAN = np.repeat(np.arange(K), N_PER_CLASS)


def _uneven_labels(seed=1):
    """Shuffled labels with uneven class sizes (37..200 examples)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), rng.integers(37, 201, size=K))
    return rng.permutation(labels)


class TestDeterminism:
    @pytest.mark.parametrize("noise_type", ["symmetric", "pairflip", "asymmetric"])
    def test_same_seed_identical_other_seed_differs(self, noise_type):
        labels = _uneven_labels()
        a, mask_a = noise.corrupt_labels(labels, K, noise_type, 0.3, 7, dataset="cifar10")
        b, mask_b = noise.corrupt_labels(labels, K, noise_type, 0.3, 7, dataset="cifar10")
        c, _ = noise.corrupt_labels(labels, K, noise_type, 0.3, 8, dataset="cifar10")
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(mask_a, mask_b)
        assert (a != c).any()
        assert a.dtype == labels.dtype and mask_a.dtype == bool
        np.testing.assert_array_equal(mask_a, a != labels)

    def test_pinned_output(self):
        # Guards the "bit-identical on every machine" promise against silent algorithm changes.
        noisy, _ = noise.corrupt_labels(np.repeat(np.arange(3), 4), 3, "symmetric", 0.5, 0)
        np.testing.assert_array_equal(noisy, [2, 0, 1, 0, 0, 1, 1, 2, 0, 2, 1, 2])

    def test_input_not_modified_and_column_labels_accepted(self):
        labels = _uneven_labels()
        copy = labels.copy()
        flat, _ = noise.corrupt_labels(labels, K, "symmetric", 0.4, 0)
        column, _ = noise.corrupt_labels(labels[:, None], K, "symmetric", 0.4, 0)
        np.testing.assert_array_equal(labels, copy)
        np.testing.assert_array_equal(flat, column)


class TestRealisedRate:
    # Exact per class: the realised flip count of class c is round(rate * n_c), so the
    # per-class realised rate is within 0.5 / n_c of nominal (tolerance stated in docstring).
    @pytest.mark.parametrize("rate", [0.0, 0.2, 0.45, 0.8])
    @pytest.mark.parametrize("noise_type", ["symmetric", "pairflip"])
    def test_per_class_rate_is_exact(self, noise_type, rate):
        labels = _uneven_labels()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noisy, is_noisy = noise.corrupt_labels(labels, K, noise_type, rate, 3)
        for c in range(K):
            n_c = np.sum(labels == c)
            assert abs(is_noisy[labels == c].mean() - rate) <= 0.5 / n_c + 1e-12

    def test_asymmetric_rate_on_mapped_classes_only(self):
        labels = _uneven_labels()
        noisy, is_noisy = noise.corrupt_labels(labels, K, "asymmetric", 0.3, 0, dataset="mnist")
        for c in range(K):
            expected = 0.3 if c in noise.MNIST_CLASS_MAP else 0.0
            assert abs(is_noisy[labels == c].mean() - expected) <= 0.5 / np.sum(labels == c)


class TestSymmetric:
    def test_never_maps_to_itself_and_targets_uniform(self):
        noisy, is_noisy = noise.corrupt_labels(CLEAN, K, "symmetric", 0.9 * (K - 1) / K, 0)
        flipped = is_noisy.nonzero()[0]
        assert (noisy[flipped] != CLEAN[flipped]).all()
        for c in range(K):
            targets = np.bincount(noisy[flipped][CLEAN[flipped] == c], minlength=K)
            assert targets[c] == 0
            others = np.delete(targets, c)
            assert others.max() - others.min() <= 1  # spread evenly over the other classes

    def test_binary(self):
        clean = np.repeat([0, 1], 10)
        noisy, is_noisy = noise.corrupt_labels(clean, 2, "symmetric", 0.3, 0)
        np.testing.assert_array_equal(noisy, np.where(is_noisy, 1 - clean, clean))
        assert is_noisy.sum() == 6

    def test_high_rate_warns(self):
        with pytest.warns(UserWarning, match=r"\(K-1\)/K"):
            noise.corrupt_labels(CLEAN, K, "symmetric", 0.9, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            noise.corrupt_labels(CLEAN, K, "symmetric", 0.89, 0)


class TestClassMaps:
    def test_pairflip_maps_to_next_class(self):
        noisy, is_noisy = noise.corrupt_labels(CLEAN, K, "pairflip", 0.3, 0)
        np.testing.assert_array_equal(noisy[is_noisy], (CLEAN[is_noisy] + 1) % K)
        assert is_noisy.sum() == 0.3 * len(CLEAN)

    @pytest.mark.parametrize("dataset,mapping", [
        ("cifar10", {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}),
        ("mnist", {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
        ("digits", {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
    ])
    def test_asymmetric_maps(self, dataset, mapping):
        noisy, is_noisy = noise.corrupt_labels(CLEAN, K, "asymmetric", 0.4, 0, dataset=dataset)
        for c in range(K):
            members = CLEAN == c
            if c in mapping:
                assert set(noisy[members]) == {c, mapping[c]}
                assert np.sum(noisy[members] == mapping[c]) == 0.4 * N_PER_CLASS
            else:
                assert (noisy[members] == c).all()

    def test_tfds_version_suffix_ignored(self):
        a, _ = noise.corrupt_labels(CLEAN, K, "asymmetric", 0.4, 0, dataset="cifar10:3.0.2")
        b, _ = noise.corrupt_labels(CLEAN, K, "asymmetric", 0.4, 0, dataset="cifar10")
        np.testing.assert_array_equal(a, b)

    def test_cifar100_cycles_within_superclass(self):
        rng = np.random.default_rng(0)
        superclasses = rng.permutation(np.repeat(np.arange(20), 5))  # made-up, not blocks
        labels = np.repeat(np.arange(100), 10)
        noisy, is_noisy = noise.corrupt_labels(labels, 100, "asymmetric", 0.2, 0,
                                               dataset="cifar100", superclasses=superclasses)
        assert is_noisy.sum() == 200
        for coarse in range(20):
            members = np.flatnonzero(superclasses == coarse)
            for i, fine in enumerate(members):
                flipped_to = set(noisy[(labels == fine) & is_noisy])
                assert flipped_to == {members[(i + 1) % 5]}

    def test_high_rate_warns(self):
        with pytest.warns(UserWarning, match="pairflip"):
            noise.corrupt_labels(CLEAN, K, "pairflip", 0.5, 0)


class TestTransitionMatrix:
    def test_matrix_is_realised(self):
        rng = np.random.default_rng(0)
        matrix = rng.dirichlet(np.ones(K), size=K) * 0.5 + np.eye(K) * 0.5
        labels = _uneven_labels()
        noisy, is_noisy = noise.corrupt_labels(labels, K, matrix, None, 0)
        summary = noise.noise_summary(labels, noisy, K, nominal=matrix)
        counts = np.bincount(labels, minlength=K)
        # Each realised entry is within 1.5 / n_c of the nominal one (docstring).
        assert (np.abs(summary.transition - matrix) <= 1.5 / counts[:, None]).all()
        assert abs(summary.nominal_rate - summary.realised_rate) <= 0.5 * K / len(labels)
        np.testing.assert_array_equal(is_noisy, noisy != labels)

    def test_named_types_match_their_matrices(self):
        sym = noise.transition_matrix(4, "symmetric", 0.3)
        np.testing.assert_allclose(sym, [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1],
                                         [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])
        pair = noise.transition_matrix(3, "pairflip", 0.2)
        np.testing.assert_allclose(pair, [[0.8, 0.2, 0], [0, 0.8, 0.2], [0.2, 0, 0.8]])
        asym = noise.transition_matrix(10, "asymmetric", 0.4, dataset="cifar10")
        assert asym[9, 1] == asym[3, 5] == asym[5, 3] == pytest.approx(0.4)
        assert asym[0, 0] == asym[1, 1] == 1.0
        np.testing.assert_allclose(asym.sum(1), 1.0)

    def test_identity_matrix_is_no_noise(self):
        noisy, is_noisy = noise.corrupt_labels(CLEAN, K, np.eye(K), None, 0)
        np.testing.assert_array_equal(noisy, CLEAN)
        assert not is_noisy.any()


class TestNoiseSummary:
    def test_hand_made_example(self):
        clean = np.array([0, 0, 0, 0, 1, 1, 2, 2])
        noisy = np.array([0, 1, 2, 0, 1, 1, 2, 0])
        s = noise.noise_summary(clean, noisy, 4, nominal=0.25)
        assert s.realised_rate == 3 / 8 and s.nominal_rate == 0.25 and s.num_noisy == 3
        np.testing.assert_array_equal(
            s.counts, [[2, 1, 1, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
        np.testing.assert_allclose(
            s.transition, [[0.5, 0.25, 0.25, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 0]])
        text = str(s)
        assert "nominal rate 0.2500, realised rate 0.3750" in text
        assert "    0      4 0.500 0.250 0.250 0.000" in text

    def test_nominal_matrix_gives_expected_rate(self):
        clean = np.repeat(np.arange(10), 10)
        matrix = noise.transition_matrix(10, "asymmetric", 0.4, dataset="cifar10")
        noisy, _ = noise.corrupt_labels(clean, 10, matrix, None, 0)
        s = noise.noise_summary(clean, noisy, 10, nominal=matrix)
        assert s.nominal_rate == pytest.approx(0.2) and s.realised_rate == 0.2
        assert "Largest |realised - nominal| transition entry: 0.0000" in str(s)

    def test_many_classes_prints_compact_table(self):
        clean = np.repeat(np.arange(20), 5)
        noisy, _ = noise.corrupt_labels(clean, 20, "pairflip", 0.4, 0)
        text = str(noise.noise_summary(clean, noisy, 20))
        assert "nominal rate n/a" in text
        assert "   19      5 0.600  0 (0.400)" in text

    def test_length_mismatch(self):
        with pytest.raises(ValueError, match="Expected as many labels as `clean`"):
            noise.noise_summary([0, 1], [0], 2)


class TestSaveLoad:
    def test_round_trip_directory(self, tmp_path):
        noisy, is_noisy = noise.corrupt_labels(CLEAN, K, "symmetric", 0.4, 5)
        path = noise.save_noisy_labels(tmp_path / "run", noisy, is_noisy, CLEAN,
                                       noise_type="symmetric", rate=0.4, seed=5,
                                       matrix=np.eye(2))
        assert path == os.path.join(tmp_path, "run", "noisy_labels.npz")
        assert os.listdir(tmp_path / "run") == ["noisy_labels.npz"]  # no temp file left
        got_noisy, got_mask, got_clean, meta = noise.load_noisy_labels(
            tmp_path / "run", clean_labels=CLEAN, num_classes=K)
        np.testing.assert_array_equal(got_noisy, noisy)
        np.testing.assert_array_equal(got_mask, is_noisy)
        np.testing.assert_array_equal(got_clean, CLEAN)
        assert meta == {"noise_type": "symmetric", "rate": 0.4, "seed": 5,
                        "matrix": [[1.0, 0.0], [0.0, 1.0]]}

    def test_round_trip_file_without_clean(self, tmp_path):
        file = str(tmp_path / "mine.npz")
        assert noise.save_noisy_labels(file, [1, 0], [True, True]) == file
        noisy, mask, clean, meta = noise.load_noisy_labels(file, clean_labels=[0, 1])
        np.testing.assert_array_equal(noisy, [1, 0])
        assert clean is None and meta == {}

    def test_failed_write_leaves_no_file(self, tmp_path, monkeypatch):
        with pytest.raises(TypeError, match="Metadata value .* is not JSON-serialisable"):
            noise.save_noisy_labels(tmp_path, [0], [False], bad=object())

        def failing_savez(file, **arrays):
            file.write(b"partial")
            raise OSError("disk full")

        monkeypatch.setattr(np, "savez", failing_savez)
        with pytest.raises(OSError, match="disk full"):
            noise.save_noisy_labels(tmp_path, [0], [False])
        assert os.listdir(tmp_path) == []

    def test_errors(self, tmp_path):
        with pytest.raises(ValueError, match="`is_noisy`.*Received: shape \\(3,\\)"):
            noise.save_noisy_labels(tmp_path, [0, 1], [True, False, True])
        with pytest.raises(FileNotFoundError, match="No noisy-label file"):
            noise.load_noisy_labels(tmp_path)
        np.savez(tmp_path / "other.npz", labels=[1])
        with pytest.raises(ValueError, match="missing \\['is_noisy', 'noisy_labels'\\]"):
            noise.load_noisy_labels(tmp_path / "other.npz")
        noise.save_noisy_labels(tmp_path, [1, 0, 1], [True, True, False], [0, 1, 1])
        with pytest.raises(ValueError, match="holds 3 labels but the training set has 2"):
            noise.load_noisy_labels(tmp_path, clean_labels=[0, 1])
        with pytest.raises(ValueError, match="1 clean labels differ"):
            noise.load_noisy_labels(tmp_path, clean_labels=[0, 1, 0])
        noise.save_noisy_labels(tmp_path / "big.npz", [5, 0], [True, False])
        with pytest.raises(ValueError, match="`noisy_labels`. Expected class ids in \\[0, 3\\)"):
            noise.load_noisy_labels(tmp_path / "big.npz", num_classes=3)


class TestErrors:
    @pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan"), "0.2", True, None])
    def test_rate(self, rate):
        with pytest.raises(ValueError, match=r"Invalid value for argument `rate`. Expected a "
                                             r"float in \[0, 1\]. Received: rate="):
            noise.corrupt_labels(CLEAN, K, "symmetric", rate, 0)

    @pytest.mark.parametrize("num_classes", [1, 0, 2.0, True, "10"])
    def test_num_classes(self, num_classes):
        with pytest.raises(ValueError, match=f"`num_classes`. Expected an integer >= 2. "
                                             f"Received: num_classes={num_classes!r}"):
            noise.corrupt_labels([0, 0], num_classes, "symmetric", 0.1, 0)

    @pytest.mark.parametrize("labels,match", [
        ([0, 1, 10], r"Expected class ids in \[0, 10\). Received: labels\[2\]=10"),
        ([0, -1], r"Received: labels\[1\]=-1"),
        ([0.0, 1.0], "integer class ids. Received: labels with shape \\(2,\\) and dtype float"),
        ([True, False], "dtype bool"),
        ([[0, 1], [1, 0]], "shape \\(2, 2\\)"),
    ])
    def test_labels(self, labels, match):
        with pytest.raises(ValueError, match=match):
            noise.corrupt_labels(labels, K, "symmetric", 0.1, 0)

    def test_unknown_noise_type(self):
        with pytest.raises(ValueError, match=r"Expected one of \('symmetric', 'pairflip', "
                                             r"'asymmetric'\) or a K x K transition matrix. "
                                             r"Received: noise_type='uniform'"):
            noise.corrupt_labels(CLEAN, K, "uniform", 0.1, 0)

    @pytest.mark.parametrize("dataset", [None, "svhn"])
    def test_asymmetric_unknown_dataset(self, dataset):
        with pytest.raises(ValueError, match=r"needs one of \('cifar10', 'cifar100', 'mnist', "
                                             rf"'digits'\).*Received: dataset={dataset!r}"):
            noise.corrupt_labels(CLEAN, K, "asymmetric", 0.1, 0, dataset=dataset)

    def test_asymmetric_wrong_num_classes(self):
        with pytest.raises(ValueError, match="'cifar100' needs 100 classes. Received: "
                                             "num_classes=10"):
            noise.corrupt_labels(CLEAN, K, "asymmetric", 0.1, 0, dataset="cifar100")

    def test_cifar100_superclasses(self):
        labels = np.arange(100)
        with pytest.raises(ValueError, match="needs `superclasses=`"):
            noise.corrupt_labels(labels, 100, "asymmetric", 0.1, 0, dataset="cifar100")
        for bad in (np.arange(20), np.full(100, -1), np.zeros(100)):
            with pytest.raises(ValueError, match="`superclasses`. Expected a length-100 array"):
                noise.corrupt_labels(labels, 100, "asymmetric", 0.1, 0, dataset="cifar100",
                                     superclasses=bad)

    @pytest.mark.parametrize("matrix,match", [
        (np.eye(3), r"Expected a finite 10x10 transition matrix.*Received: noise_type with "
                    r"shape \(3, 3\)"),
        (np.full((K, K), np.nan), "finite 10x10"),
        ({"a": 1}, "finite 10x10"),
        (np.eye(K) * 2 - np.roll(np.eye(K), 1, axis=1), r"non-negative entries. Received: "
                                                        r"noise_type\[0, 1\]=-1.0"),
        (np.eye(K) * 0.9, r"every row to sum to 1. Received: noise_type\[0\].sum\(\)=0.9"),
    ])
    def test_bad_matrix(self, matrix, match):
        with pytest.raises(ValueError, match=match):
            noise.corrupt_labels(CLEAN, K, matrix, None, 0)

    def test_bad_nominal_matrix_names_argument(self):
        with pytest.raises(ValueError, match="Received: nominal with shape"):
            noise.noise_summary([0, 1], [0, 1], 2, nominal=np.eye(3))

    def test_matrix_with_rate(self):
        with pytest.raises(ValueError, match="`rate` must be None. Received: rate=0.2"):
            noise.corrupt_labels(CLEAN, K, np.eye(K), 0.2, 0)


def test_noisy_labels_file_keeps_unverified_clean_labels(tmp_path):
    """Label files with a verified subset store -1 clean labels; a resumed run re-reads them."""
    noisy, clean = np.array([0, 2, 1, 1]), np.array([0, -1, 0, -1])
    is_noisy = (noisy != clean) & (clean >= 0)
    path = noise.save_noisy_labels(tmp_path, noisy, is_noisy, clean, labels="given by the source")
    assert os.path.basename(path) == noise.NOISY_LABELS_FILENAME
    got, got_mask, got_clean, meta = noise.load_noisy_labels(tmp_path, clean_labels=clean,
                                                             num_classes=3)
    np.testing.assert_array_equal(got_clean, clean)
    np.testing.assert_array_equal(got_mask, [False, False, True, False])
    assert meta == {"labels": "given by the source"}
    with pytest.raises(ValueError, match="1 clean labels differ"):
        noise.load_noisy_labels(tmp_path, clean_labels=np.array([0, -1, 0, 2]))


class TestCorrectedAccuracy:
    """``corrected_accuracy``: clean accuracy estimated from noisy labels and ``T``."""

    @pytest.mark.parametrize("noise_type", ["pairflip", "symmetric"])
    def test_unbiased_over_redrawn_noise(self, noise_type):
        # Monte Carlo: redraw the noisy labels from T row by row (plain numpy, not the
        # library's exact-count corruption); the mean estimate is the clean accuracy.
        rng = np.random.default_rng(0)
        k, n, draws = 4, 200, 4000
        t = noise.transition_matrix(k, noise_type, 0.3)
        clean = rng.integers(0, k, n)
        predicted = np.where(rng.random(n) < 0.7, clean, (clean + 1) % k)  # errors on the flip
        cumulative = t.cumsum(axis=1)[clean]
        estimates = []
        for _ in range(draws):
            noisy = (rng.random((n, 1)) > cumulative).sum(axis=1)
            estimates.append(noise.corrected_accuracy(noisy, predicted, t))
        clean_accuracy = np.mean(predicted == clean)
        standard_error = np.std(estimates) / np.sqrt(draws)
        assert abs(np.mean(estimates) - clean_accuracy) < 4 * standard_error

    def test_plain_noisy_accuracy_rewards_the_flip_corrected_does_not(self):
        # 40% pair-flip over 10 classes; two predictors with the same clean accuracy (0.6),
        # one erring towards the class the wrong labels name (c + 1), one elsewhere (c + 5).
        rng = np.random.default_rng(2)
        k, n, draws = 10, 500, 1000
        t = noise.transition_matrix(k, "pairflip", 0.4)
        clean = rng.integers(0, k, n)
        right = rng.random(n) < 0.6
        to_flip = np.where(right, clean, (clean + 1) % k)
        elsewhere = np.where(right, clean, (clean + 5) % k)
        noisy_draws = (clean + (rng.random((draws, n)) < 0.4)) % k
        plain = {name: np.mean([np.mean(p == y) for y in noisy_draws])
                 for name, p in (("to_flip", to_flip), ("elsewhere", elsewhere))}
        corrected = {name: np.mean([noise.corrected_accuracy(y, p, t) for y in noisy_draws])
                     for name, p in (("to_flip", to_flip), ("elsewhere", elsewhere))}
        # plain: 0.6 * 0.6 + 0.4 * 0.4 = 0.52 against 0.6 * 0.6 = 0.36
        assert plain["to_flip"] - plain["elsewhere"] > 0.14
        for name in corrected:
            assert corrected[name] == pytest.approx(np.mean(right), abs=0.01)

    def test_symmetric_is_affine_in_noisy_accuracy(self):
        rng = np.random.default_rng(1)
        k, r = 10, 0.4
        t = noise.transition_matrix(k, "symmetric", r)
        s = r / (k - 1)
        noisy = rng.integers(0, k, 300)
        for agreement in (0.2, 0.5, 0.9):
            predicted = np.where(rng.random(300) < agreement, noisy, rng.integers(0, k, 300))
            noisy_accuracy = np.mean(predicted == noisy)
            assert noise.corrected_accuracy(noisy, predicted, t) == pytest.approx(
                (noisy_accuracy - s) / (1 - r - s))

    def test_identity_is_plain_accuracy(self):
        assert noise.corrected_accuracy([0, 1, 2, 2], [0, 1, 1, 2], np.eye(3)) == 0.75

    @pytest.mark.parametrize("noisy, predicted, match", [
        ([0, 1], [0], "predictions"),
        (np.zeros(0, int), np.zeros(0, int), "predictions"),
        ([0, 3], [0, 1], "noisy_labels"),
        ([0, 1], [0, -1], "predictions"),
        ([0.0, 1.0], [0, 1], "noisy_labels"),
    ])
    def test_bad_labels(self, noisy, predicted, match):
        with pytest.raises(ValueError, match=match):
            noise.corrected_accuracy(noisy, predicted, noise.transition_matrix(3, "pairflip", 0.2))

    def test_singular_matrix_refused(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = noise.transition_matrix(4, "pairflip", 0.5)  # eigenvalue 1 - 2r = 0
        with pytest.raises(ValueError, match="condition number"):
            noise.corrected_accuracy([0, 1], [0, 1], t)
        with pytest.raises(ValueError, match="row to sum to 1"):
            noise.corrected_accuracy([0, 1], [0, 1], [[0.5, 0.4], [0.0, 1.0]])


def test_estimate_transition_from_right_predictions_is_the_realised_noise():
    # Predictions = the clean labels, all confident: T is the realised transition
    # counts(clean k, noisy c) / n_k, computed here directly.
    rng = np.random.default_rng(3)
    clean = rng.integers(0, 5, 2000)
    noisy = noise.corrupt_labels(clean, 5, "pairflip", 0.3, seed=1)[0]
    counts = np.zeros((5, 5))
    np.add.at(counts, (clean, noisy), 1)
    confident = np.full(2000, 0.95)
    estimate = noise.estimate_transition(noisy, clean, confident, np.where(
        noisy == clean, 0.95, 0.02), 5)
    np.testing.assert_allclose(estimate, counts / counts.sum(1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(estimate.sum(1), 1.0)


def test_estimate_transition_leaves_out_unsure_predictions():
    # Class 0 labelled 0 and predicted 0 with p 0.9; three examples labelled 0 predicted 1
    # with p 0.55, below class 1's threshold (mean p of its labels, 0.75): not counted.
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    predicted = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    p_predicted = np.array([0.9, 0.9, 0.55, 0.55, 0.55, 0.75, 0.75, 0.75])
    p_labelled = np.array([0.9, 0.9, 0.3, 0.3, 0.3, 0.75, 0.75, 0.75])
    estimate = noise.estimate_transition(labels, predicted, p_predicted, p_labelled, 3)
    np.testing.assert_array_equal(estimate, np.eye(3))  # class 2: no evidence, no noise
    p_predicted[2] = 0.85  # now confident: one of class 1's examples carries label 0
    estimate = noise.estimate_transition(labels, predicted, p_predicted, p_labelled, 3)
    # Row 0 of the joint (1 example of 0 counted as 1 in 3) rescaled to class 0's 5 labels.
    joint_01, joint_11 = 5 / 3, 3.0
    assert estimate[1, 0] == pytest.approx(joint_01 / (joint_01 + joint_11))
    with pytest.raises(ValueError, match="one entry per example"):
        noise.estimate_transition(labels, predicted[:-1], p_predicted, p_labelled, 3)
    with pytest.raises(ValueError, match="labels"):
        noise.estimate_transition(labels + 5, predicted, p_predicted, p_labelled, 3)
