"""A run's training labels: drawn once (or given by the source, or reused), and reported."""

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_imae import data, noise

__all__ = ["FEATURE_VALUES", "corrupt", "estimate_noise_transition",
           "noise_features", "noise_report", "noisy_labels", "nominal_transition",
           "realised_rate", "validation_transition", "usable_transition"]

# Instance-dependent noise reads each training image area-resized to at most this many values
# (32 x 32 x 3): Xia et al.'s projection and the confusion classifier cost O(values).
FEATURE_VALUES = 3072


def noise_features(dataset):
    """``[N, D]`` float32 rows of the training inputs by example id, for instance-dependent
    noise: feature vectors as they are, images area-resized so ``D <= FEATURE_VALUES``. One
    pass over the reader, in memory or streamed alike (the same images give the same rows)."""
    shape = dataset.input_shape
    size = None
    if len(shape) == 3 and int(np.prod(shape)) > FEATURE_VALUES:
        scale = (FEATURE_VALUES / np.prod(shape)) ** 0.5
        size = (max(1, int(shape[0] * scale)), max(1, int(shape[1] * scale)))
    rows = []
    for x in data.eval_dataset(dataset.train, batch_size=data.eval_batch_size(shape)):
        if size is not None:
            x = tf.image.resize(x, size, method="area")
        rows.append(np.asarray(x, np.float32).reshape(len(x), -1))
    return np.concatenate(rows)


def corrupt(dataset, noise_type, noise_rate, seed):
    """``(noisy, is_noisy)``: :func:`keras_imae.noise.corrupt_labels` of the training labels,
    given the inputs (:func:`noise_features`) when the noise depends on them."""
    features = (noise_features(dataset) if noise_type in noise.INSTANCE_NOISE_TYPES
                else None)
    return noise.corrupt_labels(dataset.y_train, dataset.num_classes, noise_type, noise_rate,
                                seed, dataset=dataset.name, superclasses=dataset.superclasses,
                                features=features)


def _meta(config, dataset, noise_type, noise_rate):
    """What identifies a corruption drawn by this library (stored in noisy_labels.npz)."""
    return {"dataset": dataset.name, "noise_type": noise_type, "noise_rate": noise_rate,
            "noise_seed": config.noise_seed}


def noisy_labels(config, dataset, resuming, noise_type, noise_rate):
    """``(noisy, is_noisy, meta, source)``: drawn once per run, reused when resuming.

    Resuming reuses the run's own ``noisy_labels.npz`` and refuses other noise settings;
    ``config.noisy_labels`` reuses another run's file (its metadata is kept); a source that
    gives its own noisy labels (label files, CIFAR-N) gives them, with ``is_noisy`` = "given
    differs from clean" on the verified examples.
    """
    y, k = dataset.y_train, dataset.num_classes
    source = os.path.abspath(config.noisy_labels) if config.noisy_labels else None
    saved = os.path.join(config.model_dir, noise.NOISY_LABELS_FILENAME)
    meta = _meta(config, dataset, noise_type, noise_rate)
    if resuming and os.path.exists(saved):
        noisy, is_noisy, _, stored = noise.load_noisy_labels(saved, clean_labels=y,
                                                             num_classes=k)
        wanted = {"source": source} if source else meta
        differs = {key: (stored.get(key), value) for key, value in wanted.items()
                   if stored.get(key) != value}
        if differs:
            raise ValueError(
                f"Cannot resume the run in {config.model_dir!r} with other noise settings "
                f"(saved, requested): {differs}. Rerun with the original flags, or pass "
                "overwrite=True (--overwrite) or another model_dir to start afresh.")
        return noisy, is_noisy, stored, saved
    if source:
        noisy, is_noisy, _, stored = noise.load_noisy_labels(source, clean_labels=y,
                                                             num_classes=k)
        return noisy, is_noisy, {**stored, "source": source}, source
    if dataset.given_labels is not None:
        given = dataset.given_labels.copy()
        is_noisy = dataset.verified & (given != y)
        return given, is_noisy, {**meta, "labels": "given by the source"}, None
    if noise_rate == 0:
        return y.copy(), np.zeros(len(y), bool), meta, None
    noisy, is_noisy = corrupt(dataset, noise_type, noise_rate, config.noise_seed)
    return noisy, is_noisy, meta, None


def nominal_transition(dataset, meta):
    """The nominal ``T`` of the noise described by ``meta``, or ``None`` when the labels did
    not come from this library's class-conditional corruption (label files, real noise,
    instance-dependent noise: no single ``T``)."""
    if meta.get("noise_type") not in noise.CLASS_NOISE_TYPES or not meta.get("noise_rate") or (
            "labels" in meta):
        return None
    with warnings.catch_warnings():  # rate past the identifiability limit: warned at the start
        warnings.simplefilter("ignore")
        return noise.transition_matrix(dataset.num_classes, meta["noise_type"],
                                       meta["noise_rate"], dataset=dataset.name,
                                       superclasses=dataset.superclasses)


def estimate_noise_transition(dataset, noisy, seed):
    """The noise transition estimated from the run's inputs and noisy labels alone
    (:func:`keras_imae.noise.transition_from_labels` on :func:`noise_features`): what
    forward correction trains with and what corrects the logged noisy validation accuracy.
    A run never reads the ``T`` its noise was drawn with (a user with real
    noise has none); one model outside the run, the same for every loss; deterministic."""
    return noise.transition_from_labels(noise_features(dataset), noisy, dataset.num_classes,
                                        seed)


def validation_transition(dataset, noisy, seed, verbose=False):
    """The ``T`` that corrects the noisy validation accuracy a run logs beside the plain one
    (``val_accuracy_corrected``, a diagnostic: the run chooses on the plain one,
    ``keras_imae.run._select``): :func:`estimate_noise_transition` when it is usable
    (:func:`usable_transition`), else ``None`` and no corrected score (said in one line when
    ``verbose``)."""
    transition = estimate_noise_transition(dataset, noisy, seed)
    usable, reason = usable_transition(transition)
    if usable is None and verbose:
        print(f"Validation: the noise T estimated from the noisy labels is not used ({reason}); "
              "no T-corrected score is logged.")
    return usable


def usable_transition(transition):
    """``(transition, None)`` when it can correct a score, else ``(None, why not)``.

    Usable means identifiable and invertible: every row's diagonal is its largest entry
    (given each clean class, its own label is still the likeliest noisy one, the condition
    under which noisy labels identify the clean ones at all) and the condition number is at
    most :data:`keras_imae.noise.MAX_CONDITION`. An estimate that fails the first is a
    model's confusion, not the noise's: on ``mnist1d`` (40% noise, every noise type) the
    softmax regression's estimate has a diagonal of 0.16-0.20 against the real 0.6, rows whose
    diagonal is not their largest entry, and ``T^-1`` entries up to 93 in size. The
    correction then rewards a prediction for the class it lands in: ``--checkpoint=best``,
    when it chose on this score, exported the first epoch (33.7% test accuracy against the
    last epoch's 64.2%)."""
    if transition is None:
        return None, "no estimate"
    transition = np.asarray(transition, np.float64)
    diagonal = np.diag(transition)
    others = np.where(np.eye(len(transition), dtype=bool), -np.inf, transition).max(axis=1)
    rows = np.flatnonzero(diagonal <= others)
    if len(rows):
        return None, (f"not identifiable: in row{'s' * (len(rows) > 1)} "
                      f"{', '.join(map(str, rows))} the diagonal is not the largest entry")
    condition = np.linalg.cond(transition)
    if condition > noise.MAX_CONDITION:
        return None, f"condition number {condition:.3g} > {noise.MAX_CONDITION:g}"
    return transition, None


def realised_rate(noisy, clean):
    """Fraction of wrong labels among the examples whose clean label is known."""
    verified = clean >= 0
    return float(np.mean(noisy[verified] != clean[verified])) if verified.any() else None


def noise_report(dataset, noisy, meta, reused):
    """The printed noise summary; with partial clean labels, of the verified subset."""
    clean = dataset.y_train
    verified = clean >= 0
    nominal = meta.get("noise_rate") or None
    matrix = nominal_transition(dataset, meta) if not reused and nominal else None
    if matrix is not None:  # else the rate: instance-dependent noise has no single T
        nominal = matrix
    summary = str(noise.noise_summary(clean[verified], noisy[verified], dataset.num_classes,
                                      nominal=nominal))
    if not verified.all():
        summary += (f"\nClean labels are known for {int(verified.sum())} of {len(clean)} "
                    "training examples: the noise above and the clean/noisy fit metrics "
                    "(train_clean_fit, train_noisy_fit, train_noisy_correct) cover that verified "
                    "subset only (train_verified_fraction).")
    return ("Reusing the corruption in " + reused + "\n" if reused else "") + summary
