"""Out-of-sample class probabilities by K-fold training: step 1 of :mod:`keras_imae.label_issues`.

The training set is split into ``K`` folds, stratified by the given label
(:func:`assign_folds`). For each fold a fresh model is trained with a noise-robust loss on the
other ``K - 1`` folds and predicts the held-out fold, so every example's ``p(·|x_i)`` comes from
a model that never saw it (or its label). The fold models use ``train.py``'s recipe
(:mod:`keras_imae.recipe`) with DM at ``λ = 2, β = 8`` unless set (:data:`LOSS_DEFAULTS`; the
label-issue module's docstring says why) and the run recipe's margin cap
(``recipe.MAX_MARGIN``; ``max_margin=0`` for the faithful gradient), but not its
flat-emphasis warm-up (``recipe.warmup_epochs``): the fold models' lam=2, beta=8 and their
label-issue scores were measured without it.
"""

import dataclasses

import keras
import numpy as np

from keras_imae import checks, data, recipe

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_FOLDS", "LOSS_DEFAULTS", "assign_folds",
           "cross_val_probabilities", "fold_loss", "make_fit"]

DEFAULT_FOLDS = 5
DEFAULT_EPOCHS = 20  # per fold; a K-fold run trains K models
# Hyper-parameters used when the loss is chosen but they are not given (None in RunConfig).
# Not recipe.RUN_LOSS_DEFAULTS on purpose: a fold model is trained for 20 epochs and judged by
# its probabilities on held-out examples, and there the plain MLP wants beta=8 too (digits,
# 40% pair-flip, 5 folds: F1 / ROC-AUC 0.861 / 0.957 with beta=8, 0.781 / 0.918 with the
# run default beta=16), so every architecture gets lam=2, beta=8. (The BatchNorm networks'
# run default under class-dependent noise, beta=4, was not measured for fold models; beta=8
# gives CNN fold models on MNIST-1D as images F1 / ROC-AUC 0.83 / 0.96 under pair-flip.)
LOSS_DEFAULTS = {"dm": {"lam": 2.0, "beta": 8.0}}


def assign_folds(labels, folds, seed):
    """A fold id per example, stratified by label and drawn from ``seed``.

    Each class's examples are permuted with ``numpy.random.Generator(PCG64(seed))`` and dealt
    round-robin to the folds, continuing where the previous class stopped, so fold sizes differ
    by at most one and every class is spread evenly. Same inputs, same folds on any machine.

    Args:
        labels: ``(N,)`` integer labels to stratify by (the given, noisy ones).
        folds: number of folds ``K``, ``2 <= K <= N``.
        seed: integer seed.

    Returns:
        ``(N,)`` int64 fold ids in ``[0, K)``.

    Example:
        >>> assign_folds([0, 0, 1, 1], 2, seed=0).tolist()
        [0, 1, 0, 1]
    """
    labels = checks.label_ids(labels)
    folds = checks.integer("folds", folds, low=2, high=len(labels))
    rng = np.random.Generator(np.random.PCG64(seed))
    fold_of = np.empty(len(labels), np.int64)
    dealt = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return fold_of


def _softmax(logits):
    z = np.asarray(logits, "float64")
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_val_probabilities(x, labels, num_classes, *, fit, folds=DEFAULT_FOLDS, seed=0):
    """Out-of-sample class probabilities by K-fold training.

    For each fold ``f``: ``predict = fit(x[train_f], labels[train_f], f)`` with ``train_f``
    the examples *not* in fold ``f``; then ``p[i] = softmax(predict(x[i]))`` for the examples
    ``i`` in fold ``f``. No example is scored by a model whose training data contained it.

    Args:
        x: ``(N, ...)`` inputs (numpy).
        labels: ``(N,)`` given (noisy) integer labels in ``[0, num_classes)``.
        num_classes: ``K``.
        fit: ``fit(x_train, labels_train, fold) -> predict``, where ``predict(x)`` returns
            logits ``(n, K)``. :func:`make_fit` builds one from a ``RunConfig``; any model
            works (scikit-learn: return ``lambda x: np.log(clf.predict_proba(x))``).
        folds: ``K``-fold count, ``>= 2``.
        seed: seed of the fold assignment (:func:`assign_folds`).

    Returns:
        ``(probs, fold_of)``: ``(N, K)`` float64 probabilities and ``(N,)`` fold ids.
    """
    labels = checks.label_ids(labels, num_classes)
    x = np.asarray(x)
    if len(x) != len(labels):
        raise ValueError(
            "Invalid value for argument `labels`. Expected one label per example of `x` "
            f"({len(x)}). Received: {len(labels)} labels")
    fold_of = assign_folds(labels, folds, seed)
    probs = np.zeros((len(labels), num_classes))
    for fold in range(int(folds)):
        held_out = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        predict = fit(x[train], labels[train], fold)
        logits = np.asarray(predict(x[held_out]))
        if logits.shape != (len(held_out), num_classes):
            raise ValueError(
                f"`fit` returned a predictor giving shape {logits.shape} for {len(held_out)} "
                f"examples. Expected logits of shape ({len(held_out)}, {num_classes}).")
        probs[held_out] = _softmax(logits)
    return probs, fold_of


def fold_loss(config):
    """A fold model's loss: ``config.loss`` with :data:`LOSS_DEFAULTS` for the
    hyper-parameters left unset and the run recipe's other defaults
    (:func:`keras_imae.recipe.loss_from_config`, e.g. its ``max_margin``)."""
    unset = {k: v for k, v in LOSS_DEFAULTS.get(config.loss, {}).items()
             if getattr(config, k) is None}
    return recipe.loss_from_config(dataclasses.replace(config, **unset))


def make_fit(config, dataset):
    """The default ``fit`` of :func:`cross_val_probabilities`: a robust model per fold.

    Each fold builds ``config.model`` (``models.build_model``, normalised with the training
    set's ``dataset.mean/std``), compiles it with :func:`fold_loss` (DM: ``λ = 2, β = 8``
    unless set, and the run recipe's ``max_margin``) and ``config``'s optimizer, and trains
    it for
    ``config.epochs`` on the fold's training part (``data.train_dataset``, augmentation as a
    run's: :func:`keras_imae.recipe.augmentation`). Fold ``f`` seeds everything with
    ``config.seed * 1000 + f``.

    Args:
        config: a :class:`keras_imae.training.RunConfig` (loss, model, optimizer, epochs,
            batch size, augmentation, seed; data and noise fields are not used here).
        dataset: the :class:`keras_imae.data.Dataset` (input shape, classes, statistics).

    Returns:
        ``fit(x, labels, fold) -> predict``, ``predict(x)`` giving logits.
    """
    fold_loss(config)  # a bad loss setting fails now, not in the first fold
    augment = recipe.augmentation(config, dataset)

    def fit(x, labels, fold):
        seed = config.seed * 1000 + fold
        keras.utils.set_random_seed(seed)
        # The training recipe of train.py (architecture, optimizer, schedule, weight decay),
        # a fresh loss object per fold model.
        model = recipe.compiled_model(dataclasses.replace(config, seed=seed), dataset,
                                      fold_loss(config), len(x))
        train = data.train_dataset(x, labels, batch_size=config.batch_size, augment=augment,
                                   seed=seed)
        model.fit(train, epochs=config.epochs, verbose=0, shuffle=False)

        def predict(x_held_out):
            # Plain batched calls: `model.predict` would trace a new function per fold model,
            # and TensorFlow warns about retracing from the fifth on.
            batches = data.eval_dataset(x_held_out, batch_size=max(config.batch_size, 256))
            return np.concatenate([keras.ops.convert_to_numpy(model(b, training=False))
                                   for b in batches])

        return predict

    return fit
