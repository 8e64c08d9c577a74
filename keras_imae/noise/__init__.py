"""Label corruption: symmetric, pair-flip, asymmetric (class maps), transition-matrix and
instance-dependent noise (Xia et al. 2020's ``"instance"``, Chen et al. 2021's ``"confusion"``).

Every noise model here is a row-stochastic ``K x K`` transition matrix ``T`` with
``T[i, j] = P(noisy = j | clean = i)`` (Patrini et al. 2017). :func:`transition_matrix` builds
the nominal ``T``; :func:`corrupt_labels` draws one corruption of a label array from it, with an
exact number of flips per class, so the realised matrix is as close to ``T`` as the class sizes
allow. A "flip" always lands on another class: the nominal rate is the realised rate (unlike
conventions where a symmetric flip may land back on the true class, so 50% nominal is 45% real).

Labels are drawn **once**, deterministically from ``seed`` with
``numpy.random.Generator(PCG64(seed))``: the same inputs give bit-identical outputs on every
machine. Re-drawing noise per epoch is the caller's business (call again with another seed).
:func:`save_noisy_labels` / :func:`load_noisy_labels` share one corruption between
runs (the ``noisy_labels.npz`` file).
"""

from keras_imae.noise._estimate import estimate_transition, transition_from_labels
from keras_imae.noise._instance import (INSTANCE_NOISE_TYPES, confusion_noise,
                                        confusion_probabilities, instance_noise)
from keras_imae.noise._files import (NOISY_LABELS_FILENAME, load_noisy_labels,
                                     noisy_labels_path, save_noisy_labels)
from keras_imae.noise._quality import ranking_quality
from keras_imae.noise._summary import (MAX_CONDITION, NoiseSummary, corrected_accuracy,
                                       noise_summary)
from keras_imae.noise._transition import (ASYMMETRIC_CLASS_MAPS, ASYMMETRIC_DATASETS,
                                          CIFAR10_CLASS_MAP, CLASS_NOISE_TYPES, MNIST_CLASS_MAP,
                                          NOISE_TYPES,
                                          check_labels, check_num_classes, corrupt_labels,
                                          largest_remainder, transition_matrix)

__all__ = ["ASYMMETRIC_CLASS_MAPS", "ASYMMETRIC_DATASETS", "CIFAR10_CLASS_MAP",
           "CLASS_NOISE_TYPES", "INSTANCE_NOISE_TYPES", "MAX_CONDITION",
           "MNIST_CLASS_MAP", "NOISE_TYPES", "NOISY_LABELS_FILENAME", "NoiseSummary",
           "check_labels", "check_num_classes", "confusion_noise", "confusion_probabilities",
           "corrected_accuracy", "corrupt_labels", "instance_noise",
           "estimate_transition",
           "largest_remainder", "load_noisy_labels", "noise_summary", "noisy_labels_path",
           "ranking_quality", "save_noisy_labels", "transition_from_labels",
           "transition_matrix"]
