"""What a corruption did: the realised transition matrix, and accuracy corrected by ``T``."""

import dataclasses

import numpy as np

from keras_imae.noise._transition import _check_matrix, _check_rate, check_labels, check_num_classes

__all__ = ["MAX_CONDITION", "NoiseSummary", "corrected_accuracy", "noise_summary"]


@dataclasses.dataclass
class NoiseSummary:
    """Realised noise of one corruption (build it with :func:`noise_summary`).

    Attributes:
        nominal_rate: expected fraction of flipped labels, or ``None`` when unknown. From a
            nominal matrix ``T`` it is ``sum_c n_c (1 - T[c, c]) / N``: for asymmetric noise
            that is ``rate`` times the fraction of examples in mapped classes.
        realised_rate: fraction of examples whose noisy label differs from the clean one.
        transition: realised ``(K, K)`` matrix, ``transition[i, j]`` = fraction of clean-class
            ``i`` examples labelled ``j`` (an empty class has a zero row).
        counts: ``(K, K)`` integer counts behind ``transition``.
        nominal_transition: the nominal ``(K, K)`` matrix, or ``None``.
    """

    nominal_rate: float | None
    realised_rate: float
    transition: np.ndarray
    counts: np.ndarray
    nominal_transition: np.ndarray | None = None

    @property
    def num_noisy(self):
        return int(self.counts.sum() - np.trace(self.counts))

    def __str__(self):
        k = len(self.counts)
        nominal = "n/a" if self.nominal_rate is None else f"{self.nominal_rate:.4f}"
        lines = [
            f"Label noise: nominal rate {nominal}, realised rate {self.realised_rate:.4f} "
            f"({self.num_noisy} of {int(self.counts.sum())} labels flipped)"
        ]
        if self.nominal_transition is not None:
            gap = np.abs(self.transition - self.nominal_transition)[self.counts.sum(1) > 0]
            lines.append(f"Largest |realised - nominal| transition entry: {gap.max(initial=0):.4f}")
        if k <= 12:
            lines.append("Realised transition matrix (rows: clean class, columns: noisy label)")
            lines.append("clean      n " + " ".join(f"{j:>5d}" for j in range(k)))
            for i in range(k):
                row = " ".join(f"{v:5.3f}" for v in self.transition[i])
                lines.append(f"{i:>5d} {int(self.counts[i].sum()):>6d} {row}")
        else:
            lines.append("clean      n  kept  most frequent wrong label (fraction)")
            for i in range(k):
                wrong = self.transition[i].copy()
                wrong[i] = -1.0
                j = int(np.argmax(wrong))
                top = f"{j} ({wrong[j]:.3f})" if wrong[j] > 0 else "-"
                lines.append(
                    f"{i:>5d} {int(self.counts[i].sum()):>6d} {self.transition[i, i]:5.3f}  {top}"
                )
        return "\n".join(lines)


def noise_summary(clean, noisy, num_classes, *, nominal=None):
    """Realised rate and transition matrix of ``noisy`` against ``clean`` labels.

    ``counts[i, j] = #{n : clean_n = i, noisy_n = j}``, ``transition = counts / counts.sum(1)``
    (zero rows for empty classes), ``realised_rate = 1 - trace(counts) / N``.

    Args:
        clean: 1-D integer clean labels.
        noisy: 1-D integer noisy labels, same length.
        num_classes: ``K``.
        nominal: optional nominal rate (float) or nominal ``K x K`` matrix (e.g. from
            :func:`transition_matrix`), reported next to the realised values.

    Returns:
        A :class:`NoiseSummary`; ``print`` it for a table.

    Example:
        >>> s = noise_summary([0, 0, 1, 1], [0, 1, 1, 1], 2)
        >>> s.realised_rate, s.transition.tolist()
        (0.25, [[0.5, 0.5], [0.0, 1.0]])
    """
    num_classes = check_num_classes(num_classes)
    clean = check_labels(clean, num_classes, "clean")
    noisy = check_labels(noisy, num_classes, "noisy")
    if len(clean) != len(noisy):
        raise ValueError(
            "Invalid value for argument `noisy`. Expected as many labels as `clean` "
            f"({len(clean)}). Received: {len(noisy)} labels"
        )
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (clean, noisy), 1)
    rows = counts.sum(axis=1)
    transition = counts / np.maximum(rows, 1)[:, None]
    realised = float(np.mean(clean != noisy)) if len(clean) else 0.0
    nominal_transition = None
    if nominal is not None and np.ndim(nominal) == 2:
        nominal_transition = _check_matrix(nominal, num_classes, "nominal")
        nominal = float(rows @ (1 - np.diag(nominal_transition)) / max(rows.sum(), 1))
    elif nominal is not None:
        nominal = _check_rate(nominal, "nominal")
    return NoiseSummary(nominal, realised, transition, counts, nominal_transition)


# Above this condition number T^-1 amplifies the sampling noise of the estimate by ~1,000x
# or more (pair-flip or symmetric noise very close to its identifiability limit).
MAX_CONDITION = 1e3


def corrected_accuracy(noisy_labels, predictions, transition):
    """Unbiased estimate of *clean* accuracy from noisy labels and the noise's ``T``.

    With ``T[i, j] = P(noisy = j | clean = i)`` invertible, the backward-corrected 0-1 score
    of a prediction ``k`` against a noisy label ``j`` is ``(T^-1)[j, k]``; averaged over the
    labelled examples,

        acc_T = mean_n (T^-1)[noisy_n, prediction_n],

    whose expectation over the noise is the accuracy against the clean labels
    (``E[(T^-1)[noisy, k] | clean = i] = sum_j T[i, j] (T^-1)[j, k] = 1[i = k]``; Natarajan
    et al. 2013, Patrini et al. 2017). Plain accuracy on noisy labels is
    ``(1 - r) · acc + r · P(prediction = the wrong label's class)`` under pair-flip noise, so
    it rewards a model for having learned part of the flip; ``acc_T`` does not. Under
    symmetric noise ``acc_T = (acc_noisy - s) / (1 - r - s)`` with ``s = r / (K - 1)``, an
    increasing affine function of plain noisy accuracy (same ranking of models).

    Args:
        noisy_labels: 1-D integer noisy labels.
        predictions: 1-D integer predicted classes, same length.
        transition: the noise's ``K x K`` row-stochastic matrix (e.g. the nominal one from
            :func:`transition_matrix`).

    Returns:
        A float; not clipped, so a small sample can give a value outside [0, 1].

    Raises:
        ValueError: bad labels or matrix, or a ``T`` too close to singular (condition
            number above 1,000) to be inverted usefully.

    Example:
        >>> t = transition_matrix(2, "pairflip", 0.25)  # T^-1 = [[1.5, -0.5], [-0.5, 1.5]]
        >>> corrected_accuracy([0, 1, 1, 0], [0, 1, 1, 1], t)  # noisy accuracy: 0.75
        1.0
    """
    transition = _check_matrix(transition, len(np.asarray(transition)), "transition")
    num_classes = len(transition)
    noisy = check_labels(noisy_labels, num_classes, "noisy_labels")
    predicted = check_labels(predictions, num_classes, "predictions")
    if len(noisy) != len(predicted) or not len(noisy):
        raise ValueError(
            "Invalid value for argument `predictions`. Expected one prediction per noisy "
            f"label ({len(noisy)}, at least 1). Received: {len(predicted)} predictions"
        )
    condition = np.linalg.cond(transition)
    if not condition <= MAX_CONDITION:
        raise ValueError(
            "Invalid value for argument `transition`: too close to singular to correct "
            f"accuracy (condition number {condition:.3g} > {MAX_CONDITION:g}; the noise "
            "leaves the clean labels barely identifiable)."
        )
    return float(np.linalg.inv(transition)[noisy, predicted].mean())
