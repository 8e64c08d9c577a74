"""The noise transition estimated from a model's predictions on its own noisy training set."""

import numpy as np

from keras_imae.noise._instance import confusion_probabilities
from keras_imae.noise._transition import check_labels, check_num_classes

__all__ = ["estimate_transition", "transition_from_labels"]


def estimate_transition(labels, predicted, p_predicted, p_labelled, num_classes):
    """``T[k, c] ~ P(label c | true class k)`` from one prediction pass over noisy data.

    Confident learning's joint (Northcutt, Jiang & Chuang, JAIR 2021) over the predicted
    class: example ``i`` (label ``c``, predicted class ``k``) counts in ``C[c, k]`` when its
    predicted probability reaches class ``k``'s threshold ``t_k`` = the mean probability the
    model gives the examples labelled ``k`` to their label. Each row of ``C`` is rescaled to
    its label count (``Q[c, k] = n_c C[c, k] / sum_j C[c, j]``), and ``T[k, c] = Q[c, k] /
    sum_j Q[j, k]``. The threshold keeps a weak model's unsure confusions out of the
    estimate. A class nobody is confidently predicted as gets the row of no noise
    (``T[k, k] = 1``): no evidence, no noise assumed.

    Args:
        labels: the noisy labels ``[N]``.
        predicted: the predicted class ``[N]``.
        p_predicted: the predicted probability of ``predicted`` ``[N]``.
        p_labelled: the predicted probability of ``labels`` ``[N]``.
        num_classes: ``K``.

    Returns:
        float64 ``[K, K]``, rows summing to 1.
    """
    num_classes = check_num_classes(num_classes)
    labels = check_labels(labels, num_classes)
    predicted = check_labels(predicted, num_classes)
    p_predicted = np.asarray(p_predicted, "float64").reshape(-1)
    p_labelled = np.asarray(p_labelled, "float64").reshape(-1)
    if not (len(labels) == len(predicted) == len(p_predicted) == len(p_labelled)):
        raise ValueError(
            "estimate_transition: labels, predicted, p_predicted and p_labelled must have one "
            f"entry per example. Received lengths {len(labels)}, {len(predicted)}, "
            f"{len(p_predicted)}, {len(p_labelled)}")
    counts = np.bincount(labels, minlength=num_classes)
    thresholds = np.bincount(labels, p_labelled, minlength=num_classes) / np.maximum(counts, 1)
    confident = p_predicted >= thresholds[predicted]
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[confident], predicted[confident]), 1.0)
    rows = joint.sum(1, keepdims=True)
    joint = np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)
    columns = joint.sum(0)  # [k]: examples of true class k
    transition = np.where(columns[:, None] > 0, joint.T / np.maximum(columns[:, None], 1e-300),
                          np.eye(num_classes))
    return transition


def transition_from_labels(features, labels, num_classes, seed=0):
    """``T[k, c] ~ P(label c | true class k)`` from the inputs and their noisy labels alone.

    A softmax regression scores every example out of fold, trained on the *noisy* labels of
    the others (:func:`confusion_probabilities`), and :func:`estimate_transition` counts its
    confident disagreements. No model of yours is needed and nothing clean is read: what a
    run corrects its validation accuracy with, and what ``recommended(loss="forward",
    train_data=...)`` gives forward correction (a run estimates its own from its model). The
    linear model's own errors count as noise: on digits under 40% symmetric or pair-flip
    noise the diagonal is 0.45-0.49 against the real 0.60.

    Args:
        features: the inputs, one row (any shape, flattened) per label.
        labels: the noisy labels.
        num_classes: ``K``.
        seed: seed of the fold split.

    Returns:
        float64 ``[K, K]``, rows summing to 1.
    """
    labels = check_labels(labels, check_num_classes(num_classes))
    probs = confusion_probabilities(features, labels, num_classes, seed)
    rows = np.arange(len(labels))
    return estimate_transition(labels, probs.argmax(1), probs.max(1), probs[rows, labels],
                               num_classes)
