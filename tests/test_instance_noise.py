"""Instance-dependent noise: Xia et al.'s "instance" and Chen et al.'s "confusion" types,
their contract (exact, seeded, never the clean class) and their use in a run."""
import numpy as np
import pytest

from keras_imae import data, noise, training
from keras_imae.run import _noise

from image_cases import image_folder

K = 4


def _clusters(n_per_class=60, seed=0):
    """Features of K classes, each made of two well separated clusters."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), n_per_class)
    centres = rng.normal(size=(K, 2, 8)) * 5
    half = np.tile(np.arange(n_per_class) % 2, K)
    features = centres[labels, half] + rng.normal(size=(len(labels), 8)) * 0.1
    return labels, features, half


@pytest.mark.parametrize("noise_type", noise.INSTANCE_NOISE_TYPES)
class TestContract:
    def test_exact_rate_never_the_clean_class(self, noise_type):
        labels, features, _ = _clusters()
        for rate in (0.0, 0.2, 0.4, 1.0):
            noisy, is_noisy = noise.corrupt_labels(labels, K, noise_type, rate, 3,
                                                   features=features)
            assert is_noisy.sum() == int(np.floor(rate * len(labels) + 0.5))
            np.testing.assert_array_equal(is_noisy, noisy != labels)

    def test_same_seed_identical_other_seed_differs(self, noise_type):
        labels, features, _ = _clusters()
        a, _ = noise.corrupt_labels(labels, K, noise_type, 0.3, 7, features=features)
        b, _ = noise.corrupt_labels(labels, K, noise_type, 0.3, 7, features=features)
        c, _ = noise.corrupt_labels(labels, K, noise_type, 0.3, 8, features=features)
        np.testing.assert_array_equal(a, b)
        assert (a != c).any()

    def test_features_are_required(self, noise_type):
        with pytest.raises(ValueError, match=f"noise_type='{noise_type}' needs `features`"):
            noise.corrupt_labels(np.arange(8) % K, K, noise_type, 0.3, 0)

    def test_features_of_another_length_are_refused(self, noise_type):
        with pytest.raises(ValueError, match=r"one finite feature row per label \(8 rows\)"):
            noise.corrupt_labels(np.arange(8) % K, K, noise_type, 0.3, 0,
                                 features=np.zeros((7, 3)))

    def test_no_single_transition_matrix(self, noise_type):
        with pytest.raises(ValueError, match="no single transition matrix"):
            noise.transition_matrix(K, noise_type, 0.3)


def test_instance_noise_flips_look_alike_examples_alike():
    """Within one class, each of two clusters' wrong labels follow its own projection: the
    flip targets of the two halves differ by far more than sampling noise (~0.05 a share; a
    class-conditional draw would give ~0.08 at most)."""
    labels, features, half = _clusters(n_per_class=400)
    noisy, is_noisy = noise.instance_noise(labels, features, K, 0.5, seed=0)
    gaps = []
    for c in range(K):
        targets = [np.bincount(noisy[is_noisy & (labels == c) & (half == h)], minlength=K)
                   for h in (0, 1)]
        gaps.append(np.abs(targets[0] / targets[0].sum() - targets[1] / targets[1].sum()).max())
    assert np.mean(gaps) > 0.15


def test_instance_noise_rates_spread_by_rate_std():
    """rate_std=0 gives every example the same flip rate: the flipped set is then a uniform
    draw (no cluster is favoured); the per-example rates are what varies otherwise."""
    labels, features, _ = _clusters(n_per_class=400)
    _, flat = noise.instance_noise(labels, features, K, 0.3, seed=0, rate_std=0.0)
    assert flat.sum() == 480
    with pytest.raises(ValueError, match="rate_std"):
        noise.instance_noise(labels, features, K, 0.3, seed=0, rate_std=-1.0)


def test_confusion_noise_flips_hard_examples_to_their_likeliest_wrong_class():
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.0)
    hard = np.arange(n) < 100
    probs[np.arange(n), labels] = np.where(hard, 0.3, 1.0)  # easy: no mass elsewhere
    likeliest = (labels + 2) % 3
    probs[hard, likeliest[hard]] = 0.6
    probs[hard, (labels[hard] + 1) % 3] = 0.1
    noisy, is_noisy = noise.confusion_noise(labels, probs, 0.25, seed=1)
    np.testing.assert_array_equal(is_noisy, hard)  # exactly the 100 hard ones
    np.testing.assert_array_equal(noisy[hard], likeliest[hard])


@pytest.mark.parametrize("probs, message", [
    (np.array([[0.5, 0.6], [1.0, 0.0]]), r"pred_probs\[0\]=\[0.5 0.6\] summing to 1.1"),
    (np.array([[-0.5, 1.5], [1.0, 0.0]]), "Expected finite non-negative probabilities"),
    (np.array([[1.0, 0.0]]), r"one label per row of `pred_probs` \(1\). Received: 2 labels"),
    (np.array([0.5, 0.5]), r"of shape \(N, K\), K >= 2"),
])
def test_confusion_noise_refuses_bad_probabilities(probs, message):
    with pytest.raises(ValueError, match=message):
        noise.confusion_noise([0, 1], probs, 0.5, seed=0)


def test_confusion_probabilities_are_out_of_fold_distributions():
    """Each example is scored by a classifier that did not see it: on separable clusters
    with one example per class relabelled, that example is still predicted as its cluster."""
    labels, features, _ = _clusters()
    probs = noise.confusion_probabilities(features, labels, K, seed=0)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert (probs.argmax(1) == labels).mean() > 0.95
    swapped = labels.copy()
    swapped[[0, 60]] = swapped[[60, 0]]  # a 0 labelled 1 and a 1 labelled 0
    probs = noise.confusion_probabilities(features, swapped, K, seed=0)
    assert probs[0].argmax() == 0 and probs[60].argmax() == 1


def test_streamed_and_in_memory_images_get_the_same_noise(tmp_path):
    image_folder(tmp_path, per_class=10, size=(40, 40))  # 4,800 values: resized to <= 3,072
    memory = data.load(f"folder:{tmp_path}", streaming="off")
    streamed = data.load(f"folder:{tmp_path}", streaming="on")
    rows = _noise.noise_features(memory)
    assert rows.shape[1] <= _noise.FEATURE_VALUES
    np.testing.assert_array_equal(rows, _noise.noise_features(streamed))
    for noise_type in noise.INSTANCE_NOISE_TYPES:
        a, _ = _noise.corrupt(memory, noise_type, 0.3, 0)
        b, _ = _noise.corrupt(streamed, noise_type, 0.3, 0)
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_run_draws_saves_and_reuses_confusion_noise(digits, tmp_path, capsys):
    config = training.RunConfig(epochs=1, verbose=1, model_dir=str(tmp_path / "run"),
                                export_dir="", noise_type="confusion", noise_rate=0.2)
    results = training.run(config, dataset=digits)
    out = capsys.readouterr().out
    assert "nominal rate 0.2000, realised rate 0.1997" in out
    assert "Realised transition matrix" in out
    noisy, is_noisy, _, meta = noise.load_noisy_labels(config.model_dir)
    assert meta["noise_type"] == "confusion" and is_noisy.sum() == 269
    expected, _ = _noise.corrupt(digits, "confusion", 0.2, config.noise_seed)
    np.testing.assert_array_equal(noisy, expected)
    assert results["noise_rate_realised"] == pytest.approx(269 / 1347)
    assert results.get("val_accuracy_corrected_final") is None  # no T for this noise


def test_transition_from_labels_finds_the_flips_without_clean_labels():
    """From inputs and pair-flipped labels alone: the largest off-diagonal entry of each row
    is the flip's target, and the diagonal is no higher than the real one plus sampling."""
    labels, features, _ = _clusters(n_per_class=200)
    noisy, _ = noise.corrupt_labels(labels, K, "pairflip", 0.3, seed=0)
    estimate = noise.transition_from_labels(features, noisy, K, seed=0)
    np.testing.assert_allclose(estimate.sum(1), 1.0)
    off = estimate - np.diag(np.diag(estimate))
    np.testing.assert_array_equal(off.argmax(1), (np.arange(K) + 1) % K)
    assert (np.diag(estimate) < 0.85).all()


def test_recommended_forward_estimates_its_transition():
    import keras

    import keras_imae

    labels, features, _ = _clusters()
    noisy, _ = noise.corrupt_labels(labels, K, "pairflip", 0.3, seed=0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(K)])
    r = keras_imae.recommended(model, num_examples=len(noisy), loss="forward",
                               train_data=(features, noisy))
    np.testing.assert_allclose(r.loss.get_config()["transition"],
                               noise.transition_from_labels(features, noisy, K))
    given = keras_imae.recommended(model, num_examples=10, loss="forward", transition=np.eye(K))
    np.testing.assert_array_equal(given.loss.get_config()["transition"], np.eye(K))
    with pytest.raises(ValueError, match="loss='forward' needs its transition matrix"):
        keras_imae.recommended(model, num_examples=10, loss="forward")
    with pytest.raises(ValueError, match="does not take `transition`"):
        keras_imae.recommended(model, num_examples=10, loss="cce", transition=np.eye(K))


@pytest.mark.slow
def test_a_forward_run_estimates_its_transition_from_its_own_model(digits, tmp_path):
    import json

    config = training.RunConfig(epochs=4, verbose=0, model_dir=str(tmp_path / "run"),
                                export_dir="", loss="forward", noise_type="pairflip")
    results = training.run(config, dataset=digits)
    with open(tmp_path / "run" / "pair_margins.json") as f:  # taken at epoch 1 of 4
        estimate = np.asarray(json.load(f)["transition"])
    np.testing.assert_allclose(estimate.sum(1), 1.0)
    off = estimate - np.diag(np.diag(estimate))
    assert (off.argmax(1) == (np.arange(10) + 1) % 10).mean() >= 0.8  # mostly the flips
    assert results["resolved"]["loss_settings"] == {}  # no T given: the estimate is a phase
