"""Instance-dependent label noise: the wrong label depends on the example, not only its class.

Two published generators, both with the contract of :func:`corrupt_labels` (seeded, an exact
number of flips, a flip never lands on the clean class):

- ``"instance"`` (:func:`instance_noise`): Xia et al. 2020's part/instance-dependent noise,
  a per-example flip rate and flip targets from a random projection of the input.
- ``"confusion"`` (:func:`confusion_noise`): Chen et al. 2021's classifier-confusion noise, the
  examples a classifier trained on the clean labels finds hardest get its most likely wrong
  class (a sloppy 4 labelled 9). :func:`confusion_probabilities` gives such a classifier's
  out-of-fold probabilities from the inputs alone.

Neither has one transition matrix: the realised one (:func:`noise_summary`) is what to print.
"""

import numpy as np

from keras_imae import _checks as checks

__all__ = ["INSTANCE_NOISE_TYPES", "confusion_noise", "confusion_probabilities",
           "instance_noise"]

INSTANCE_NOISE_TYPES = ("instance", "confusion")
RATE_STD = 0.1  # Xia et al. 2020: per-example flip rates ~ N(rate, 0.1^2) truncated to [0, 1]
CONFUSION_FOLDS = 2  # each half of the data is scored by a classifier trained on the other
CONFUSION_STEPS = 300  # full-batch gradient steps of the softmax regression
CONFUSION_L2 = 1e-3


def _rng(seed):
    return np.random.Generator(np.random.PCG64(checks.integer("seed", seed, low=0)))


def _features(features, num_examples):
    x = np.asarray(features, np.float64)
    if x.ndim < 1 or len(x) != num_examples or not x.size or not np.isfinite(x).all():
        raise ValueError(
            "Invalid value for argument `features`. Expected one finite feature row per "
            f"label ({num_examples} rows). Received: features with shape "
            f"{np.shape(features)}")
    return x.reshape(num_examples, -1)


def _exact_choice(rng, weights, count):
    """``count`` distinct indices drawn without replacement with probability proportional to
    ``weights`` (Efraimidis & Spirakis 2006: the ``count`` largest ``log(u) / w``)."""
    keys = np.full(len(weights), -np.inf)
    positive = weights > 0
    keys[positive] = np.log(rng.uniform(size=int(positive.sum()))) / weights[positive]
    order = np.argsort(-keys, kind="stable")
    return np.sort(order[:count])


def _flip_count(rate, num_examples):
    return int(np.floor(checks.number("rate", rate, high=1.0) * num_examples + 0.5))


def instance_noise(labels, features, num_classes, rate, seed, *, rate_std=RATE_STD):
    """Xia et al. 2020's instance-dependent noise, with an exact number of flips.

    Each example ``i`` (clean class ``c``, flattened input ``x_i``, scaled to unit L2 norm)
    draws a flip rate ``q_i ~ N(rate, rate_std^2)`` truncated to ``[0, 1]``. Class ``c`` has a
    random projection ``W_c ~ N(0, 1)^{D x K}``; the example's wrong-class probabilities are

        P(noisy = j | x_i) = softmax_{j != c}(x_i W_c)_j          (j != c),

    so examples of one class that look alike flip alike. Xia et al. flip each example with
    probability ``q_i``; here exactly ``round(rate · N)`` examples are flipped, drawn without
    replacement with probability proportional to ``q_i``, so the realised rate is exact and
    the flipped examples are still those with the larger ``q_i``.

    Args:
        labels: 1-D integer clean labels in ``[0, K)``.
        features: the inputs, one row (any shape, flattened) per label.
        num_classes: ``K >= 2``.
        rate: fraction of labels to flip, in ``[0, 1]``.
        seed: integer seed (``numpy.random.Generator(PCG64(seed))``): the same inputs give the
            same labels.
        rate_std: the spread of the per-example flip rates (Xia et al.: 0.1).

    Returns:
        ``(noisy_labels, is_noisy)``.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(100, 5))
        >>> noisy, is_noisy = instance_noise(np.arange(100) % 4, x, 4, 0.3, seed=0)
        >>> int(is_noisy.sum())
        30

    References:
        Xia, Liu, Han, Wang, Gong, Liu, Liu, Tao, Sugiyama. Part-dependent Label Noise:
        Towards Instance-dependent Label Noise. NeurIPS 2020.
    """
    num_classes = checks.integer("num_classes", num_classes, low=2)
    labels = checks.label_ids(labels, num_classes)
    x = _features(features, len(labels))
    count = _flip_count(rate, len(labels))
    rate_std = checks.number("rate_std", rate_std)
    rng = _rng(seed)
    q = rng.normal(rate, rate_std, size=len(labels)) if rate_std else np.full(len(labels), rate)
    outside = (q < 0) | (q > 1)
    while outside.any():  # truncation by redrawing: the normal restricted to [0, 1]
        q[outside] = rng.normal(rate, rate_std, size=int(outside.sum()))
        outside = (q < 0) | (q > 1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    scores = np.empty((len(labels), num_classes))
    for c in range(num_classes):  # one D x K projection at a time
        projection = rng.standard_normal((x.shape[1], num_classes))
        members = labels == c
        scores[members] = x[members] @ projection
    flipped = _exact_choice(rng, q, count)
    return _draw_wrong(rng, labels, scores, flipped)


def _draw_wrong(rng, labels, scores, flipped):
    """Labels with each ``flipped`` example moved to a class drawn from ``softmax(scores)``
    over its *other* classes."""
    scores = scores[flipped].copy()
    scores[np.arange(len(flipped)), labels[flipped]] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.uniform(size=(len(flipped), 1))
    targets = np.minimum((cumulative < u).sum(axis=1), scores.shape[1] - 1)
    noisy = labels.copy()
    noisy[flipped] = targets
    return noisy, noisy != labels


def confusion_noise(labels, pred_probs, rate, seed):
    """Classifier-confusion noise: hard examples get the look-alike class.

    ``pred_probs[i]`` is a classifier's probability vector for example ``i``, from a model
    trained on the *clean* labels of other examples (:func:`confusion_probabilities`). The
    example's chance of being mislabelled is the mass on its wrong classes, ``m_i = 1 -
    pred_probs[i, c_i]``; exactly ``round(rate · N)`` examples are drawn without replacement
    with probability proportional to ``m_i``, and each gets its most likely *wrong* class
    ``argmax_{j != c_i} pred_probs[i, j]``. Chen et al. flip the top-``n`` by ``m_i``; drawing
    in proportion lets some easy examples be wrong too (as annotators' slips are), and with
    ``rate`` above the share of hard examples it still gives exactly the asked rate.

    Args:
        labels: 1-D integer clean labels in ``[0, K)``.
        pred_probs: ``[N, K]`` probabilities (rows non-negative, summing to 1).
        rate: fraction of labels to flip, in ``[0, 1]``.
        seed: integer seed.

    Returns:
        ``(noisy_labels, is_noisy)``.

    Example:
        >>> probs = np.array([[.9, .1, 0], [.5, .1, .4], [.2, .1, .7]])
        >>> confusion_noise([0, 1, 2], probs, 1 / 3, seed=0)[0]  # the 1 with p = .1 -> 0
        array([0, 0, 2])

    References:
        Chen, Shen, Ye, Lu, Chen, Wang, Zeng, Chen, Li, Tang. Beyond Class-Conditional
        Assumption: A Primary Attempt to Combat Instance-Dependent Label Noise. AAAI 2021.
    """
    probs, labels = checks.probability_rows(pred_probs, labels)
    count = _flip_count(rate, len(labels))
    rng = _rng(seed)
    rows = np.arange(len(labels))
    wrong_mass = np.clip(1.0 - probs[rows, labels], 0.0, 1.0)
    # an example the classifier is sure of can still be a slip, just rarely
    flipped = _exact_choice(rng, np.maximum(wrong_mass, 1e-12), count)
    others = probs.copy()
    others[rows, labels] = -np.inf
    noisy = labels.copy()
    noisy[flipped] = np.argmax(others[flipped], axis=1)
    return noisy, noisy != labels


def confusion_probabilities(features, labels, num_classes, seed, *, folds=CONFUSION_FOLDS,
                            steps=CONFUSION_STEPS, l2=CONFUSION_L2):
    """Out-of-fold probabilities of a softmax regression trained on the clean labels.

    The examples are split into ``folds`` seeded, stratified parts; each part is scored by a
    multinomial logistic regression (standardised inputs, L2 penalty ``l2``, ``steps``
    full-batch Adam steps) trained on the others: a simple classifier's view of which
    examples look like another class, never scored by a model that saw them. Numpy only; the
    cost is ``O(steps · N · D · K)``.

    Args:
        features: the inputs, one row (any shape, flattened) per label.
        labels: 1-D integer clean labels.
        num_classes: ``K``.
        seed: integer seed of the fold split.
        folds, steps, l2: the classifier's settings.

    Returns:
        float64 ``[N, K]``, rows summing to 1.
    """
    num_classes = checks.integer("num_classes", num_classes, low=2)
    labels = checks.label_ids(labels, num_classes)
    x = _features(features, len(labels))
    folds = checks.integer("folds", folds, low=2)
    steps = checks.integer("steps", steps, low=1)
    l2 = checks.number("l2", l2)
    rng = _rng(seed)
    fold = np.empty(len(labels), np.int64)
    for c in range(num_classes):  # stratified: each fold holds its share of every class
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = np.arange(len(members)) % folds
    probs = np.empty((len(labels), num_classes))
    for f in range(folds):
        held = fold == f
        probs[held] = _softmax_regression(x[~held], labels[~held], x[held], num_classes,
                                          steps, l2)
    return probs


def _softmax(logits):
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _softmax_regression(x, y, x_eval, num_classes, steps, l2, learning_rate=0.05):
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features carry nothing
    x, x_eval = (x - mean) / std, (x_eval - mean) / std
    onehot = np.eye(num_classes)[y]
    params = [np.zeros((x.shape[1], num_classes)), np.zeros(num_classes)]  # weights, bias
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for t in range(1, steps + 1):  # Adam (Kingma & Ba 2015) on the mean cross-entropy + L2
        error = (_softmax(x @ params[0] + params[1]) - onehot) / len(x)
        grads = [x.T @ error + l2 * params[0], error.sum(0)]
        for p, g, (m, v) in zip(params, grads, moments):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g ** 2
            p -= learning_rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return _softmax(x_eval @ params[0] + params[1])
