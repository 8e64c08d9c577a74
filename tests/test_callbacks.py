"""Tests for keras_imae.callbacks.FitMonitor."""

import csv
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_imae import callbacks, losses, models, noise
from keras_imae import label_issues
from fit_cases import CLEAN, EXPECTED, GIVEN, LOGITS, identity_model


def test_fit_statistics_hand_made():
    stats = callbacks.fit_statistics(LOGITS.argmax(-1), GIVEN, CLEAN)
    assert stats == pytest.approx(EXPECTED)
    assert callbacks.fit_statistics([0, 1], [0, 0]) == {"accuracy": 0.5}
    # No noisy example: the noisy ratios are omitted, not NaN.
    assert sorted(callbacks.fit_statistics([0, 1], [0, 0], [0, 0])) == ["accuracy", "clean_fit"]


def test_fit_monitor_arrays_and_dataset_agree():
    model = identity_model()
    test_x, test_y = LOGITS[:4], np.array([0, 0, 2, 0])  # 3 of 4 right
    arrays = callbacks.FitMonitor((LOGITS, GIVEN, CLEAN), (test_x, test_y), batch_size=3)
    ds_train = tf.data.Dataset.from_tensor_slices(
        (LOGITS, {"label": GIVEN, "clean_label": CLEAN})).batch(4)
    ds_test = tf.data.Dataset.from_tensor_slices((test_x, {"label": np.eye(3)[test_y]})).batch(3)
    dataset = callbacks.FitMonitor(ds_train, ds_test)
    top = np.bincount(LOGITS.argmax(-1)).max() / len(LOGITS)
    for monitor in (arrays, dataset):
        monitor.set_model(model)
        values = monitor.measure()
        assert values == pytest.approx(
            {f"train_{k}": v for k, v in EXPECTED.items()} | {"test_accuracy": 0.75,
             "train_logit_scale": 5.0, "train_top_class_fraction": top})
    only_test = callbacks.FitMonitor(test=(test_x, test_y))
    only_test.set_model(model)
    assert only_test.measure() == {"test_accuracy": 0.75}
    no_clean = callbacks.FitMonitor(
        tf.data.Dataset.from_tensor_slices((LOGITS, GIVEN)).batch(4))
    no_clean.set_model(model)
    assert no_clean.measure() == pytest.approx(
        {"train_accuracy": 0.7, "train_logit_scale": 5.0, "train_top_class_fraction": top})


def test_best_and_final_test_accuracy():
    model = identity_model()
    test_x = LOGITS[:4]
    monitor = callbacks.FitMonitor(test=(test_x, np.array([0, 1, 2, 1])))
    monitor.set_model(model)
    monitor.on_train_begin()
    kernel = model.layers[-1].kernel
    accuracies = []
    for epoch, perm in enumerate([[0, 1, 2], [1, 2, 0], [0, 2, 1]]):  # 3/4, 0/4, 1/4
        kernel.assign(np.eye(3, dtype="float32")[:, perm])
        logs = {}
        monitor.on_epoch_end(epoch, logs)
        accuracies.append(logs["test_accuracy"])
        assert logs["best_test_accuracy"] == 0.75
    assert accuracies == [0.75, 0.0, 0.25]
    assert monitor.summary() == {"best_test_accuracy": 0.75, "best_epoch": 1,
                                 "final_test_accuracy": 0.25}


def _monitored_case():
    """``(model, x, noisy, clean, monitor)``: a compiled 2-class MLP on 40 examples, a quarter
    of them flipped, with its FitMonitor."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    clean = (x[:, 0] > 0).astype("int32")
    noisy = np.where(np.arange(40) % 4 == 0, 1 - clean, clean)
    model = models.build_model("mlp", (4,), 2, seed=0)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    monitor = callbacks.FitMonitor((x, noisy, clean), (x[:10], clean[:10]))
    return model, x, noisy, clean, monitor


def test_keys_reach_history_and_csv_logger(tmp_path):
    model, x, noisy, clean, monitor = _monitored_case()
    path = tmp_path / "log.csv"
    history = model.fit(x, {"label": noisy, "clean_label": clean}, batch_size=8, epochs=2,
                        verbose=0, callbacks=[monitor, keras.callbacks.CSVLogger(str(path))])
    keys = {"train_accuracy", "train_clean_fit", "train_noisy_fit", "train_noisy_correct",
            "test_accuracy", "best_test_accuracy"}
    assert keys <= set(history.history) and len(history.history["test_accuracy"]) == 2
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and keys <= set(rows[0])
    assert float(rows[-1]["train_noisy_fit"]) == pytest.approx(monitor.last["train_noisy_fit"])
    # Exact: equals the evaluation of the same weights on the same data.
    logs = model.evaluate(x, {"label": noisy, "clean_label": clean}, verbose=0, return_dict=True)
    for name in ("clean_fit", "noisy_fit", "noisy_correct"):
        assert monitor.last[f"train_{name}"] == pytest.approx(logs[name], abs=1e-7)


def test_progress_bar_shows_the_watched_figures_and_the_logs_keep_every_value(tmp_path,
                                                                              capsys):
    model, x, noisy, clean, monitor = _monitored_case()
    path = tmp_path / "log.csv"
    model.fit(x, {"label": noisy, "clean_label": clean}, batch_size=8, epochs=2, verbose=1,
              callbacks=[monitor, callbacks.ProgressBar(),
                         keras.callbacks.CSVLogger(str(path))])
    out = capsys.readouterr().out
    last = out.replace("\r", "\n").strip().splitlines()[-1]  # epoch 2's final bar
    shown = re.findall(r" - (\w+): [\d.]+", last)
    assert shown == ["accuracy", "clean_fit", "loss", "noisy_fit", "test_accuracy"], last
    assert "noisy_correct" not in out and "train_" not in out
    with open(path) as f:
        row = list(csv.DictReader(f))[-1]
    assert {"noisy_correct", "train_noisy_fit", "best_test_accuracy", *shown} <= set(row)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(), "needs `train` or `test`"),
        (dict(train=np.zeros((3, 2))), "tuple"),
        (dict(train=(np.zeros((3, 3)),)), "of length 1"),
        (dict(test=tf.data.Dataset.from_tensor_slices((LOGITS, GIVEN)).take(0).batch(2)),
         "empty dataset"),
    ],
)
def test_fit_monitor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        monitor = callbacks.FitMonitor(**kwargs)
        monitor.set_model(identity_model())
        monitor.measure()


def test_previous_test_accuracy_seeds_the_best_after_a_resume():
    monitor = callbacks.FitMonitor(test=(np.zeros((1, 2), "float32"), np.zeros(1)),
                                   previous_test_accuracy=[0.5, 0.9, 0.7])
    monitor.on_train_begin()
    assert monitor.best_test_accuracy == 0.9 and monitor.best_epoch == 2


def test_logit_statistics_closed_form():
    z = np.float32([[8.0, 0.0, 0.0], [0.0, -1.0, 3.0], [0.0, 0.0, 0.0], [2.0, -6.0, 1.0]])
    given = np.array([0, 0, 1, 0])
    loss = losses.DerivativeManipulation(beta=8.0, lam=0.5)
    stats = callbacks.logit_statistics(z, given, loss)
    p = np.exp(z - z.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True))[np.arange(4), given]  # 0.9993, 0.047, 0.333, 0.73
    w = np.exp(8.0 * np.sqrt(p) * (1 - p))
    assert stats["logit_scale"] == pytest.approx(np.median([8, 3, 0, 6]))
    assert stats["top_class_fraction"] == 0.75  # argmax 0, 2, 0 (tie: first), 0
    assert stats["emphasis_low"] == pytest.approx(w[1] / w.sum(), rel=1e-6)
    assert stats["emphasis_mid"] == pytest.approx((w[2] + w[3]) / w.sum(), rel=1e-6)
    assert stats["emphasis_high"] == pytest.approx(w[0] / w.sum(), rel=1e-6)
    # Exact in the log domain for a beta whose exp() overflows float32 and float64 alike.
    huge = callbacks.logit_statistics(z, given, losses.DerivativeManipulation(beta=5000.0))
    assert huge["emphasis_mid"] == pytest.approx(1.0) and huge["emphasis_low"] == 0.0
    # No emphasis density (natural gradient) or no loss: no emphasis keys.
    assert "emphasis_mid" not in callbacks.logit_statistics(z, given, losses.get("mse"))
    assert sorted(callbacks.logit_statistics(z, given)) == ["logit_scale", "top_class_fraction"]


def test_rejected_share_follows_the_caps_rule_in_numpy():
    # Given class 0 for 4 of 6 examples: alive iff sum_i p_i0 >= 2.
    z = np.float64([[8, 0, 0], [0, -1, 5], [0, 0, 0], [2, -6, 1], [0, 6, 0], [0, 0, 2.5]])
    given, clean = np.array([0, 0, 1, 0, 0, 2]), np.array([0, 2, 1, 0, 1, 0])
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    k = z.argmax(-1)
    log_odds = np.log(p[np.arange(6), k] / (1 - p[np.arange(6), k]))  # 8.0, 4.69, 0, ...
    alive = p.sum(0) >= 0.5 * np.bincount(given, minlength=3)
    expected = (k != given) & alive[given] & (log_odds > 3.0)
    assert expected.tolist() == [False, True, False, False, True, False]
    loss = losses.DerivativeManipulation(reject_margin=3.0)
    monitor = callbacks.FitMonitor((z.astype("float32"), given, clean))
    monitor.set_model(identity_model())
    monitor.model.loss = loss
    stats = monitor.measure()
    assert stats["train_rejected"] == pytest.approx(expected.mean())
    assert stats["train_rejected_wrong"] == pytest.approx(2 / 3)  # examples 1, 4 of 1, 4, 5
    # A dead class keeps its examples: with class 0 labelled 5 times, sum p_i0 < 2.5.
    dead = callbacks.logit_statistics(z, np.array([0, 0, 0, 0, 0, 2]), loss)
    assert p.sum(0)[0] < 2.5 and dead["rejected"] == 0.0
    loss.state.build(3)
    loss.state.assign(flat_emphasis=True)  # the warm-up: the cap is off, nothing rejected
    assert callbacks.logit_statistics(z, given, loss)["rejected"] == 0.0
    assert "rejected" not in callbacks.logit_statistics(z, given, losses.get("gce"))


def test_fit_monitor_runs_one_prediction_pass_per_epoch(monkeypatch):
    model = identity_model()
    calls = []
    original = model.predict_on_batch
    monkeypatch.setattr(model, "predict_on_batch",
                        lambda x: calls.append(len(x)) or original(x))
    monitor = callbacks.FitMonitor((LOGITS, GIVEN, CLEAN), (LOGITS[:4], GIVEN[:4]), batch_size=8)
    monitor.set_model(model)
    values = monitor.measure()
    assert calls == [8, len(LOGITS) + 4 - 8]  # train and test together, in batches of 8
    assert values["test_accuracy"] == pytest.approx(np.mean(LOGITS[:4].argmax(-1) == GIVEN[:4]))
    assert monitor.last_train_logits.shape == LOGITS.shape


def test_collapse_guard_reasons_and_error():
    guard = callbacks.CollapseGuard(max_logit_scale=100.0, max_top_class_fraction=0.9)
    assert guard.check({"loss": 0.3, "train_logit_scale": 99.0,
                        "train_top_class_fraction": 0.5}) == []
    reasons = guard.check({"loss": float("nan"), "train_logit_scale": 1e4,
                           "train_top_class_fraction": 1.0})
    assert len(reasons) == 3
    assert "loss=nan" in reasons[0] and "logits are diverging" in reasons[1]
    assert "constant predictions" in reasons[2]
    assert guard.check({"loss": float("inf")}) != []  # works without a FitMonitor too
    assert guard.check({"loss": np.array(np.nan, "float32")}) != []  # Keras' 0-d arrays
    assert guard.check({"loss": np.array(0.5), "note": "text"}) == []
    off = callbacks.CollapseGuard(max_logit_scale=None, max_top_class_fraction=None)
    assert off.check({"train_logit_scale": 1e9, "train_top_class_fraction": 1.0}) == []
    guard.set_model(identity_model())
    with pytest.raises(callbacks.TrainingCollapsed, match="epoch 3: .*logits are diverging"):
        guard.on_epoch_end(2, {"train_logit_scale": 1e4})
    for kwargs in (dict(max_logit_scale=0), dict(max_top_class_fraction="high"),
                   dict(patience=0)):
        with pytest.raises(ValueError,
                           match=r"Invalid value for argument `(max_|patience).*Expected"):
            callbacks.CollapseGuard(**kwargs)


def test_collapse_guard_waits_for_constant_predictions_to_last():
    # A BatchNorm network on little data predicts one class for its first epochs (its moving
    # statistics lag); constant predictions count after `patience` epochs in a row, or at
    # the last epoch. Non-finite values and diverging logits count at once.
    constant, healthy = {"train_top_class_fraction": 1.0}, {"train_top_class_fraction": 0.3}
    guard = callbacks.CollapseGuard(patience=3)
    guard.set_model(identity_model())
    guard.set_params({"epochs": 10})
    for epoch, logs in enumerate([constant, constant, healthy, constant, constant]):
        guard.on_epoch_end(epoch, logs)  # never 3 in a row: no error
    with pytest.raises(callbacks.TrainingCollapsed, match="epoch 6: .*constant predictions"):
        guard.on_epoch_end(5, constant)
    guard.on_train_begin()  # a new fit starts counting afresh
    with pytest.raises(callbacks.TrainingCollapsed, match="epoch 10: .*constant predictions"):
        guard.on_epoch_end(9, constant)  # the last epoch: never saved, whatever the count
    guard.on_train_begin()
    with pytest.raises(callbacks.TrainingCollapsed, match="epoch 1: .*non-finite"):
        guard.on_epoch_end(0, {"loss": float("nan"), **constant})
    assert guard.update(constant) == [] and guard.update(constant, last_epoch=True) != []


def test_collapse_guard_counts_the_constant_epochs_a_resumed_run_ended_with():
    # log.csv rows (strings, "NA" where an epoch had no value) of the epochs trained before
    constant, healthy = {"train_top_class_fraction": 1.0}, {"train_top_class_fraction": 0.3}
    rows = [{"train_top_class_fraction": v} for v in ("1.0", "NA", "0.99", "0.995")]
    guard = callbacks.CollapseGuard(patience=3, previous_logs=rows)
    guard.set_model(identity_model())
    guard.set_params({"epochs": 10})
    guard.on_train_begin()  # 2 constant epochs in a row so far (NA breaks the run)
    with pytest.raises(callbacks.TrainingCollapsed, match="epoch 5: .*constant predictions"):
        guard.on_epoch_end(4, constant)
    guard.on_train_begin()
    guard.on_epoch_end(4, healthy)
    guard.on_epoch_end(5, constant)  # the count started again


def _with_ids(order):
    """LOGITS/GIVEN/CLEAN as a dataset yielding ids, examples in the given order."""
    order = np.asarray(order)
    return tf.data.Dataset.from_tensor_slices(
        (LOGITS[order], {"label": GIVEN[order], "clean_label": CLEAN[order],
                         "id": order.astype("int64")})).batch(3)


def test_streamed_pass_by_id_equals_the_array_monitor():
    model = identity_model()
    model.loss = losses.DerivativeManipulation(reject_margin=0.5)  # read by the monitor only
    arrays = callbacks.FitMonitor((LOGITS, GIVEN, CLEAN))
    shuffled = callbacks.FitMonitor(_with_ids(np.random.default_rng(0).permutation(len(LOGITS))))
    for monitor in (arrays, shuffled):
        monitor.set_model(model)
    expected = arrays.measure()
    assert 0 < expected["train_rejected"] < 1 and "train_rejected_wrong" in expected
    assert shuffled.measure() == pytest.approx(expected)
    np.testing.assert_array_equal(shuffled.last_train_ids, np.arange(len(LOGITS)))
    z = LOGITS.astype("float64")
    probs = np.exp(z - z.max(-1, keepdims=True))
    scores = label_issues.find_label_issues(GIVEN, probs / probs.sum(-1, keepdims=True)).scores
    np.testing.assert_allclose(shuffled.last_train_scores, scores, rtol=1e-12)
    np.testing.assert_allclose(arrays.last_train_scores, scores, rtol=1e-12)
    assert shuffled.last_train_logits is None  # nothing per-class kept for a dataset


def test_streamed_pass_keeps_a_few_numbers_per_example_not_logits():
    result = callbacks.predict_pass(identity_model(), _with_ids(np.arange(len(LOGITS))[::-1]))
    assert result._fields == ("ids", "pred", "given", "clean", "max_abs", "log_p", "log_q",
                              "top_log_odds", "class_mass")
    assert all(getattr(result, f).shape == (len(LOGITS),) for f in result._fields[:-1])
    assert result.class_mass.shape == (LOGITS.shape[1],)  # [K] sums, not per example
    np.testing.assert_array_equal(result.ids, np.arange(len(LOGITS)))
    np.testing.assert_array_equal(result.pred, LOGITS.argmax(-1))


def test_repeated_ids_are_refused():
    twice = _with_ids(np.r_[0, 1, 1])
    with pytest.raises(ValueError, match="yields some example id more than once"):
        callbacks.predict_pass(identity_model(), twice)


def test_unverified_clean_labels_restrict_the_fit_ratios_and_say_so():
    pred = np.array([0, 1, 1, 2, 0, 0])
    given = np.array([0, 1, 2, 2, 1, 0])
    clean = np.array([0, -1, 1, -1, 0, 0])  # examples 1 and 3 unverified
    stats = callbacks.fit_statistics(pred, given, clean)
    assert stats == pytest.approx({
        "accuracy": 4 / 6,  # every example
        "verified_fraction": 4 / 6,
        "clean_fit": 2 / 2,  # examples 0, 5
        "noisy_fit": 0 / 2,  # examples 2, 4
        "noisy_correct": 2 / 2})
    assert "verified_fraction" not in callbacks.fit_statistics(pred, given, np.abs(clean))


def _flat(loss):
    """Whether ``loss``'s state is flat now (False without a state, or before it is built)."""
    return bool(loss.state_values().get("flat_emphasis", False))


def _fit_with_warmup(loss, warmup, epochs, second_loss=None):
    """Full-batch SGD on fixed data (deterministic); returns the weights and whether the
    loss was flat at each epoch's start. ``second_loss``: recompile with it after epoch 1."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.5), loss)
    flat = []
    spy = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: flat.append(_flat(model.loss)))
    fit = dict(batch_size=32, shuffle=False, verbose=0)
    if second_loss is None:
        model.fit(x, y, epochs=epochs, callbacks=[callbacks.EmphasisWarmup(warmup), spy], **fit)
    else:  # epoch 0 with `loss`, then `second_loss`
        model.fit(x, y, epochs=1, **fit)
        model.compile(keras.optimizers.SGD(0.5), second_loss)
        model.fit(x, y, initial_epoch=1, epochs=epochs, **fit)
    return model.get_weights(), flat


def test_emphasis_warmup_trains_flat_then_with_the_configured_emphasis():
    dm = lambda beta: losses.DerivativeManipulation(beta=beta, lam=2.0)  # noqa: E731
    warm, flat = _fit_with_warmup(dm(16.0), 1, 3)
    assert flat == [True, False, False]
    # epoch 0 with beta=0, epochs 1-2 with beta=16, as two explicitly compiled phases
    phases, _ = _fit_with_warmup(dm(0.0), 0, 3, second_loss=dm(16.0))
    for a, b in zip(warm, phases):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    plain, never = _fit_with_warmup(dm(16.0), 0, 3)
    assert never == [False] * 3
    assert not np.allclose(warm[0], plain[0])  # the warm-up changed the training
    # the whole fit inside the warm-up: the loss is configured again afterwards
    loss = dm(16.0)
    _, flat = _fit_with_warmup(loss, 5, 2)
    assert flat == [True, True] and not _flat(loss)


def test_emphasis_ramp_raises_the_strength_linearly_after_the_warmup():
    warmup = callbacks.EmphasisWarmup(1, ramp_epochs=3)
    assert [warmup.scale(e) for e in range(6)] == [0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0]
    assert callbacks.EmphasisWarmup(2).scale(2) == 1.0  # no ramp: at once
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.5), losses.DerivativeManipulation(beta=16.0, lam=2.0))
    seen = []
    spy = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(
        (_flat(model.loss), float(model.loss.state_values()["emphasis_scale"]))))
    model.fit(x, y, epochs=5, verbose=0, callbacks=[warmup, spy])
    assert seen == [(True, 0.0), (False, pytest.approx(1 / 3)), (False, pytest.approx(2 / 3)),
                    (False, 1.0), (False, 1.0)]
    with pytest.raises(ValueError, match="emphasis strength"):
        model.compile(keras.optimizers.SGD(0.5), losses.GeneralizedCrossEntropy())
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.EmphasisWarmup(0, ramp_epochs=2)])
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="ramp_epochs"):
            callbacks.EmphasisWarmup(1, ramp_epochs=bad)


def test_a_loss_left_flat_by_a_failed_fit_is_reset_by_the_next_warmup():
    # Keras skips on_train_end when fit raises: the loss stays flat, and the next fit with
    # an EmphasisWarmup (even of 0 epochs) trains with the configured emphasis again.
    loss = losses.DerivativeManipulation(beta=16.0, lam=2.0)

    class Fail(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("interrupted")

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.5), loss)
    x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int64")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.EmphasisWarmup(2), Fail()])
    assert _flat(loss)
    flat = []
    spy = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: flat.append(_flat(loss)))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EmphasisWarmup(0), spy])
    assert flat == [False] and not _flat(loss)


def test_emphasis_warmup_refuses_a_loss_without_emphasis_and_bad_counts():
    with pytest.raises(ValueError, match="emphasis strength"):
        _fit_with_warmup(losses.GeneralizedCrossEntropy(), 1, 1)
    _fit_with_warmup(losses.GeneralizedCrossEntropy(), 0, 1)  # 0: nothing to do
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="epochs"):
            callbacks.EmphasisWarmup(bad)


def _pair_case(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, 6)).astype("float32")
    y = (x[:, :3].argmax(-1) + (rng.random(240) < 0.3)) % 3  # 30% pair-flip c -> c + 1
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss=losses.DerivativeManipulation(reject_margin=3.0))
    return model, x, y


def test_pair_margins_estimates_the_noise_once_at_its_epoch_and_resumes_from_its_file(
        tmp_path):
    model, x, y = _pair_case()
    path = str(tmp_path / "pair_margins.json")
    seen = {}

    class Spy(keras.callbacks.Callback):  # after PairMargins: what the loss trains with
        def on_epoch_begin(self, epoch, logs=None):
            seen[epoch] = self.model.loss.state_values()["noise_transition"]
            if epoch == 1:  # the estimate, recomputed here from the weights in numpy
                z = np.asarray(self.model.predict(x, verbose=0), "float64")
                p = np.exp(z - z.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                k = p.argmax(-1)
                seen["expected"] = noise.estimate_transition(
                    y, k, p[np.arange(len(y)), k], p[np.arange(len(y)), y], 3)

    pairs = callbacks.PairMargins((x, y), at_epoch=1, path=path, batch_size=64)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[pairs, Spy()])
    assert not seen[0].any()  # all zeros: no estimate yet
    np.testing.assert_allclose(seen[1], seen["expected"], atol=1e-7)  # float32 in the state
    np.testing.assert_array_equal(seen[2], seen[1])  # estimated once
    with open(path) as f:
        np.testing.assert_allclose(json.load(f)["transition"], seen[1], atol=1e-7)
    # A resumed fit (initial_epoch past at_epoch) reads the file, whatever the weights say.
    written = np.full((3, 3), 0.1) + 0.7 * np.eye(3)
    with open(path, "w") as f:
        json.dump({"transition": written.tolist()}, f)
    resumed, _, _ = _pair_case(seed=1)
    pairs = callbacks.PairMargins((x, y), at_epoch=1, path=path)
    resumed.fit(x, y, epochs=3, initial_epoch=2, verbose=0, callbacks=[pairs])
    np.testing.assert_array_equal(resumed.loss.state_values()["noise_transition"],
                                  written.astype("float32"))
    np.testing.assert_array_equal(pairs.transition, written)
    # A damaged file is named, whatever is wrong with it (issue #32: was a bare JSONDecodeError).
    for damaged in ("", '{"transition": [[1, 0]]}', '{"other": 1}'):
        with open(path, "w") as f:
            f.write(damaged)
        resumed, _, _ = _pair_case(seed=1)
        pairs = callbacks.PairMargins((x, y), at_epoch=1, path=path)
        with pytest.raises(ValueError, match=rf"The saved noise estimate '{path}' is damaged "
                                             r"\(.*\)\. Delete it and run again"):
            resumed.fit(x, y, epochs=3, initial_epoch=2, verbose=0, callbacks=[pairs])


def test_a_model_saved_at_any_epoch_reloads_with_the_loss_that_trained_it(tmp_path):
    # A RobustModel, warm-up of 1 epoch, pair margins from epoch 1, a .keras file per epoch:
    # the file of epoch 0 reloads flat without an estimate, the later ones with the emphasis
    # and the estimate; each reloaded loss gives the gradient of the loss that trained then.
    _, x, y = _pair_case()
    model = models.build_model("mlp", (6,), 3, seed=0)
    model.compile(optimizer="adam", loss=losses.DerivativeManipulation(reject_margin=3.0))
    trained = {}

    class Record(keras.callbacks.Callback):  # the loss's state each epoch trained with
        def on_epoch_end(self, epoch, logs=None):
            trained[epoch] = self.model.loss.state_values()

    path = str(tmp_path / "epoch{epoch}.keras")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[
        callbacks.EmphasisWarmup(1), callbacks.PairMargins((x, y), 1), Record(),
        keras.callbacks.ModelCheckpoint(path)])
    assert trained[0]["flat_emphasis"] and not trained[0]["noise_transition"].any()
    assert not trained[2]["flat_emphasis"] and trained[2]["noise_transition"].any()
    z, ids = model.predict(x[:32], verbose=0), y[:32]
    for epoch in range(3):
        restored = keras.models.load_model(path.format(epoch=epoch + 1))
        assert restored.loss.get_config() == model.loss.get_config()
        for name, value in restored.loss.state_values().items():
            np.testing.assert_array_equal(value, trained[epoch][name])
        phase = losses.DerivativeManipulation(reject_margin=3.0)
        phase.state.build(3)
        phase.state.assign(**trained[epoch])
        np.testing.assert_array_equal(_loss_gradient(restored.loss, ids, z),
                                      _loss_gradient(phase, ids, z))


def _loss_gradient(loss, ids, z):
    if keras.backend.backend() == "jax":  # tests/jax_checks.py re-runs the test above on JAX
        import jax

        return np.asarray(jax.grad(lambda z: loss(ids, z))(z))
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(ids, z)
    return tape.gradient(value, z).numpy()


def test_pair_margins_refuses_a_loss_without_a_rejection_cap_and_epoch_0():
    model, x, y = _pair_case()
    with pytest.raises(ValueError, match="at_epoch"):
        callbacks.PairMargins((x, y), at_epoch=0)
    with pytest.raises(ValueError, match="PairMargins data must be"):
        callbacks.PairMargins(x, at_epoch=1)
    model.compile(optimizer="adam", loss=losses.get("gce"))
    with pytest.raises(ValueError, match="reject_margin"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.PairMargins((x, y), 1)])


def test_rejected_share_reads_the_pair_margins():
    # 40% pair-flip c -> c + 1 of 3 classes: label c predicted c - 1 stands log 2 above its
    # column's mean, margin 3 - log 2 = 2.31; every other pair 3.
    z = np.float64([[8, 0, 0], [0, -1, 5], [0, 0, 0], [2, -6, 1], [0, 6, 0], [3.2, 0, 0]])
    given = np.array([0, 0, 1, 0, 2, 1])
    loss = losses.DerivativeManipulation(reject_margin=3.0)
    loss.state.build(3)
    loss.state.assign(noise_transition=noise.transition_matrix(3, "pairflip", 0.4))
    margins = losses.pair_reject_margins(noise.transition_matrix(3, "pairflip", 0.4), 3.0)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    k = z.argmax(-1)
    log_odds = np.log(p[np.arange(6), k] / (1 - p[np.arange(6), k]))
    alive = p.sum(0) >= 0.5 * np.bincount(given, minlength=3)
    expected = (k != given) & alive[given] & (log_odds > margins[given, k])
    # Label 1 predicted 0 at log-odds 2.51 (margin 2.31): rejected now, not with R = 3.
    assert expected.tolist() == [False, True, False, False, True, True]
    assert callbacks.logit_statistics(z, given, loss)["rejected"] == pytest.approx(0.5)
    loss.state.assign(noise_transition=None)
    assert callbacks.logit_statistics(z, given, loss)["rejected"] == pytest.approx(2 / 6)
