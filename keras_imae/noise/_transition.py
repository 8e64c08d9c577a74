"""Label corruption: symmetric, pair-flip, asymmetric (class maps) and transition-matrix noise."""


import warnings

import numpy as np

from keras_imae import _checks as checks
from keras_imae.noise._instance import (INSTANCE_NOISE_TYPES, confusion_noise,
                                        confusion_probabilities, instance_noise)

# --- Constants: asymmetric class maps (clean class -> noisy class) ---------------------------
# Zhang & Sabuncu 2018 / Wang et al. 2019 (SCE) / Ma et al. 2020 (APL) use exactly these maps.
# Classes not listed are never corrupted.
CIFAR10_CLASS_MAP = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}  # truck->automobile, bird->airplane,
#                                                      deer->horse, cat<->dog
MNIST_CLASS_MAP = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}  # 2->7, 3->8, 5<->6, 7->1
ASYMMETRIC_CLASS_MAPS = {
    "cifar10": CIFAR10_CLASS_MAP,
    "mnist": MNIST_CLASS_MAP,
    "digits": MNIST_CLASS_MAP,  # scikit-learn's 8x8 digits: same digits 0-9 as MNIST
}
# CIFAR-100 has no fixed map: the next fine class within the same real superclass (needs the
# fine -> coarse map, `superclasses=`, which `keras_imae.data.load("cifar100")` gives).
ASYMMETRIC_DATASETS = ("cifar10", "cifar100", "mnist", "digits")
CLASS_NOISE_TYPES = ("symmetric", "pairflip", "asymmetric")  # one transition matrix each
NOISE_TYPES = (*CLASS_NOISE_TYPES, *INSTANCE_NOISE_TYPES)
__all__ = ["ASYMMETRIC_CLASS_MAPS", "ASYMMETRIC_DATASETS", "CLASS_NOISE_TYPES", "NOISE_TYPES",
           "check_labels", "check_num_classes", "corrupt_labels", "largest_remainder",
           "transition_matrix"]
_ROW_SUM_ATOL = 1e-6


def check_num_classes(num_classes):
    """``num_classes`` as an int >= 2, or ``ValueError``."""
    return checks.integer("num_classes", num_classes, low=2)


# ``labels`` as a 1-D integer array ([N, 1] squeezed), ids in [0, num_classes) when given.
check_labels = checks.label_ids


def _check_rate(rate, name="rate"):
    return checks.number(name, rate, high=1.0)


def _check_matrix(matrix, num_classes, name="noise_type"):
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.full((0,), np.nan)
    if matrix.shape != (num_classes, num_classes) or not np.isfinite(matrix).all():
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite {num_classes}x{num_classes} "
            f"transition matrix (or, for `noise_type`, one of {NOISE_TYPES}). "
            f"Received: {name} with shape {matrix.shape}"
        )
    if (matrix < 0).any():
        i, j = np.argwhere(matrix < 0)[0]
        raise ValueError(
            "Invalid transition matrix. Expected non-negative entries. "
            f"Received: {name}[{i}, {j}]={matrix[i, j]}"
        )
    row_sums = matrix.sum(axis=1)
    bad = np.abs(row_sums - 1.0) > _ROW_SUM_ATOL
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            "Invalid transition matrix. Expected every row to sum to 1. "
            f"Received: {name}[{i}].sum()={row_sums[i]}"
        )
    return matrix


def _class_map(num_classes, noise_type, dataset, superclasses):
    """Returns `target` with `target[c]` the class that `c` flips to (`c` itself: never)."""
    target = np.arange(num_classes)
    if noise_type == "pairflip":
        return (target + 1) % num_classes
    if isinstance(dataset, str):
        dataset = dataset.split(":")[0]  # TFDS version suffix, e.g. "cifar10:3.0.2"
    if dataset not in ASYMMETRIC_DATASETS:
        raise ValueError(
            "Invalid value for argument `dataset`. Asymmetric noise needs one of "
            f"{ASYMMETRIC_DATASETS} (or pass a transition matrix as `noise_type`). "
            f"Received: dataset={dataset!r}"
        )
    expected_k = 100 if dataset == "cifar100" else 10
    if num_classes != expected_k:
        raise ValueError(
            f"Invalid value for argument `num_classes`. Asymmetric noise for {dataset!r} "
            f"needs {expected_k} classes. Received: num_classes={num_classes}"
        )
    if dataset != "cifar100":
        for clean, noisy in ASYMMETRIC_CLASS_MAPS[dataset].items():
            target[clean] = noisy
        return target
    if superclasses is None:
        raise ValueError(
            "Asymmetric noise for 'cifar100' needs `superclasses=` (the fine -> coarse label "
            "map of length 100, e.g. `keras_imae.data.load('cifar100').superclasses`). "
            "Received: superclasses=None"
        )
    superclasses = np.asarray(superclasses)
    if (
        superclasses.shape != (num_classes,)
        or not np.issubdtype(superclasses.dtype, np.integer)
        or (superclasses < 0).any()
    ):
        raise ValueError(
            "Invalid value for argument `superclasses`. Expected a length-100 array of "
            "non-negative integer superclass ids. Received: superclasses with shape "
            f"{superclasses.shape} and dtype {superclasses.dtype}: {superclasses!r:.80}"
        )
    for coarse in np.unique(superclasses):
        members = np.flatnonzero(superclasses == coarse)  # sorted fine ids
        target[members] = np.roll(members, -1)
    return target


def transition_matrix(num_classes, noise_type, rate, *, dataset=None, superclasses=None):
    """Nominal transition matrix `T[i, j] = P(noisy = j | clean = i)` of a noise model.

    - ``"symmetric"``: ``T[i, i] = 1 - rate`` and ``T[i, j] = rate / (K - 1)`` for ``j != i``
      (a flip goes to a uniformly chosen *other* class).
    - ``"pairflip"``: ``T[i, i] = 1 - rate``, ``T[i, (i + 1) mod K] = rate`` (Han et al. 2018).
    - ``"asymmetric"``: ``T[i, i] = 1 - rate``, ``T[i, map(i)] = rate`` for the mapped classes
      of ``dataset`` (:data:`ASYMMETRIC_CLASS_MAPS`; Zhang & Sabuncu 2018), identity rows
      elsewhere. ``"cifar100"``: ``map(i)`` is the next fine class (by id, cyclically) of the
      same *real* superclass, given as ``superclasses`` (fine -> coarse map, length 100). Peers'
      code flips within blocks of 5 consecutive ids, which are not the real superclasses (fine
      labels are alphabetical); this one uses TFDS's ``coarse_label``.
    - A ``K x K`` array: returned as float64 after validation (``rate`` must be ``None``).

    Args:
        num_classes: ``K >= 2``.
        noise_type: ``"symmetric"``, ``"pairflip"``, ``"asymmetric"`` or a row-stochastic
            ``K x K`` array.
        rate: flip probability in [0, 1] of a (mapped) class; ``None`` for a matrix.
        dataset: for ``"asymmetric"``: one of :data:`ASYMMETRIC_DATASETS`.
        superclasses: for ``dataset="cifar100"``: fine -> coarse integer array of length 100.

    Returns:
        A float64 ``(K, K)`` row-stochastic array.

    Example:
        >>> transition_matrix(3, "pairflip", 0.2)
        array([[0.8, 0.2, 0. ],
               [0. , 0.8, 0.2],
               [0.2, 0. , 0.8]])

    References:
        Patrini, Rozza, Menon, Nock, Qu. Making Deep Neural Networks Robust to Label Noise: a
        Loss Correction Approach. CVPR 2017.
        Han et al. Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
        Labels. NeurIPS 2018.
        Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural Networks with
        Noisy Labels. NeurIPS 2018.
    """
    num_classes = check_num_classes(num_classes)
    if not isinstance(noise_type, str):
        matrix = _check_matrix(noise_type, num_classes)
        if rate is not None:
            raise ValueError(
                "Invalid value for argument `rate`. A transition matrix fixes the flip "
                f"probabilities, so `rate` must be None. Received: rate={rate!r}"
            )
        return matrix
    if noise_type not in CLASS_NOISE_TYPES:
        extra = (" (instance-dependent noise has no single transition matrix)"
                 if noise_type in INSTANCE_NOISE_TYPES else "")
        raise ValueError(
            f"Invalid value for argument `noise_type`. Expected one of {CLASS_NOISE_TYPES} or "
            f"a K x K transition matrix{extra}. Received: noise_type={noise_type!r}"
        )
    rate = _check_rate(rate)
    eye = np.eye(num_classes)
    if noise_type == "symmetric":
        if rate >= (num_classes - 1) / num_classes:
            warnings.warn(
                f"Symmetric noise with rate={rate} >= (K-1)/K={(num_classes - 1) / num_classes:.3f}"
                ": the correct label is no longer the most frequent one in any class, so the "
                "clean classifier cannot be identified.",
                stacklevel=3,
            )
        return (1 - rate) * eye + rate / (num_classes - 1) * (1 - eye)
    target = _class_map(num_classes, noise_type, dataset, superclasses)
    if rate >= 0.5:
        warnings.warn(
            f"{noise_type} noise with rate={rate} >= 0.5: a corrupted class's labels are no "
            "longer mostly correct, so the clean classifier cannot be identified.",
            stacklevel=3,
        )
    mapped = np.flatnonzero(target != np.arange(num_classes))
    matrix = eye.copy()
    matrix[mapped, mapped] = 1 - rate
    matrix[mapped, target[mapped]] = rate
    return matrix


def largest_remainder(quota, rng=None):
    """Integer counts summing to ``round(sum(quota))``, each the floor or ceil of its quota.

    Largest-remainder rounding; ties are broken by a random order drawn from ``rng``, or by
    index (lower first) when ``rng`` is ``None``. Used by the corruption here and by the
    stratified validation split (:func:`keras_imae.data.stratified_split`).
    """
    quota = np.asarray(quota, np.float64)
    total = int(np.floor(quota.sum() + 0.5))
    counts = np.floor(quota).astype(np.int64)
    order = np.arange(len(quota)) if rng is None else rng.permutation(len(quota))
    order = order[np.argsort(-(quota - counts)[order], kind="stable")]
    counts[order[: total - counts.sum()]] += 1
    return counts


def corrupt_labels(labels, num_classes, noise_type, rate, seed, *, dataset=None,
                   superclasses=None, features=None, pred_probs=None):
    """Corrupts integer labels with an exact number of flips per class.

    Instance-dependent types (exact number of flips overall, not per class):
    ``"instance"`` (Xia et al. 2020, needs ``features``; :func:`instance_noise`) and
    ``"confusion"`` (Chen et al. 2021: needs ``pred_probs``, a classifier's probabilities, or
    ``features`` to train one, :func:`confusion_probabilities`; :func:`confusion_noise`).

    For each clean class ``c`` with ``n_c`` examples and nominal row ``T[c]`` (see
    :func:`transition_matrix`), exactly ``round(n_c (1 - T[c, c]))`` examples (chosen by a
    seeded permutation) are flipped, and they are spread over the other classes in proportion
    to ``T[c, j]`` by largest-remainder rounding (seeded tie-breaks). So the corrupted fraction
    is exact per class, not a per-example Bernoulli draw: every realised entry ``T̂[c, j]`` is
    within ``1.5 / n_c`` of ``T[c, j]`` (within ``0.5 / n_c`` for pairflip/asymmetric, whose
    flips have a single target), and symmetric flips are spread evenly (counts differ by at
    most 1) over the ``K - 1`` other classes. A flip never lands on the clean class, so
    ``is_noisy == (noisy != labels)``.

    Deterministic: one ``numpy.random.Generator(PCG64(seed))``; same inputs give bit-identical
    outputs on every machine. Drawn once: re-drawing per epoch is up to the caller.

    Args:
        labels: 1-D integer array of clean class ids in ``[0, K)`` (``[N, 1]`` is accepted).
        num_classes: ``K >= 2``.
        noise_type: ``"symmetric"``, ``"pairflip"``, ``"asymmetric"``, or a row-stochastic
            ``K x K`` transition matrix (then ``rate`` must be ``None``).
        rate: for the named types, the probability in [0, 1] that a label of a (mapped) class
            is flipped. Warns when the clean label would no longer be the majority
            (symmetric ``rate >= (K-1)/K``, pairflip/asymmetric ``rate >= 0.5``).
        seed: integer seed.
        dataset: for ``"asymmetric"``: ``"cifar10"``, ``"cifar100"``, ``"mnist"`` or
            ``"digits"`` (digits uses the MNIST map).
        superclasses: for ``dataset="cifar100"``: the fine -> coarse map (length 100), e.g.
            ``keras_imae.data.load("cifar100").superclasses``.

    Returns:
        ``(noisy_labels, is_noisy)``: an array of ``labels``' dtype and a bool mask.

    Example:
        >>> clean = np.repeat([0, 1, 2], 4)
        >>> noisy, is_noisy = corrupt_labels(clean, 3, "pairflip", 0.25, seed=0)
        >>> noise_summary(clean, noisy, 3).counts  # one example per class moved to c + 1
        array([[3, 1, 0],
               [0, 3, 1],
               [1, 0, 3]])

    References:
        Patrini et al. Making Deep Neural Networks Robust to Label Noise: a Loss Correction
        Approach. CVPR 2017 (transition matrices).
        Han et al. Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
        Labels. NeurIPS 2018 (pair flip).
        Zhang, Sabuncu. Generalized Cross Entropy Loss for Training Deep Neural Networks with
        Noisy Labels. NeurIPS 2018 (asymmetric class maps).
    """
    num_classes = check_num_classes(num_classes)
    labels = check_labels(labels, num_classes)
    if isinstance(noise_type, str) and noise_type in INSTANCE_NOISE_TYPES:
        return _instance_dependent(labels, num_classes, noise_type, rate, seed, features,
                                   pred_probs)
    matrix = transition_matrix(
        num_classes, noise_type, rate, dataset=dataset, superclasses=superclasses
    )
    rng = np.random.Generator(np.random.PCG64(seed))
    noisy = labels.copy()
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        off_diagonal = matrix[c].copy()
        off_diagonal[c] = 0.0
        counts = largest_remainder(off_diagonal * len(members), rng)
        noisy[members[: counts.sum()]] = np.repeat(np.arange(num_classes), counts)
    return noisy, noisy != labels


def _instance_dependent(labels, num_classes, noise_type, rate, seed, features, pred_probs):
    if noise_type == "confusion" and pred_probs is not None:
        return confusion_noise(labels, pred_probs, rate, seed)
    if features is None:
        needs = "`features` (or `pred_probs`)" if noise_type == "confusion" else "`features`"
        raise ValueError(f"Invalid value for argument `features`: noise_type={noise_type!r} "
                         f"needs {needs}, the inputs of the labelled examples. Received: "
                         "features=None")
    if noise_type == "instance":
        return instance_noise(labels, features, num_classes, rate, seed)
    probs = confusion_probabilities(features, labels, num_classes, seed)
    return confusion_noise(labels, probs, rate, seed)
