"""A run is what its record says (issue #23): resuming refuses changed settings, a failed export
never costs the training, exports are never half-written, and every bad input or interruption
stops with one line -- no traceback, nothing left behind."""
import json
import os
import signal
import socket
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from absl import app

from keras_imae import data, label_issues, noise, run_folder, training
from keras_imae.run_folder import export

import same_run
from fit_cases import KillAfter
from test_cli import parse


def _config(tmp_path, **overrides):
    base = dict(epochs=3, verbose=0, model_dir=str(tmp_path / "run"),
                export_dir=str(tmp_path / "export"))
    base.update(overrides)
    return training.RunConfig(**base)


def _interrupted_run(tmp_path, digits, monkeypatch, after=1, **overrides):
    """A run killed after ``after`` epochs: ``(config, epochs trained by each later fit)``."""
    config = _config(tmp_path, **overrides)
    fit = keras.Model.fit

    def killed_fit(self, *args, callbacks=(), **kwargs):
        return fit(self, *args, callbacks=[*callbacks, KillAfter(after)], **kwargs)

    monkeypatch.setattr(keras.Model, "fit", killed_fit)
    with pytest.raises(KeyboardInterrupt):
        training.run(config, dataset=digits)
    monkeypatch.setattr(keras.Model, "fit", fit)
    return config


# -- 1. a resume is the same run, or it is refused ------------------------------------------------
def test_resuming_with_other_training_settings_is_refused_naming_each(tmp_path, digits,
                                                                       monkeypatch):
    config = _interrupted_run(tmp_path, digits, monkeypatch)
    changed = training.RunConfig(**{**config.__dict__, "loss": "cce", "learning_rate": 0.01,
                                    "epochs": 6})
    with pytest.raises(ValueError, match=r"Cannot resume the run in .*: these settings differ "
                                         r"from the ones it was started with \(recorded -> "
                                         r"now\): loss 'dm' -> 'cce'; epochs 3 -> 6; "
                                         r"learning_rate 0.001 -> 0.01\. .*--overwrite"):
        training.validate(changed)
    for other in ({"model": "cnn"}, {"noise_rate": 0.2}, {"seed": 1}, {"batch_size": 32},
                  {"epochs": 1}):
        with pytest.raises(ValueError, match=f"{next(iter(other))} "):
            training.validate(training.RunConfig(**{**config.__dict__, **other}))
    with open(os.path.join(config.model_dir, "config.json")) as f:
        assert json.load(f)["loss"] == "dm"  # the record still says what trained
    # Settings that do not change the training may differ; the run then resumes.
    relaxed = training.RunConfig(**{**config.__dict__, "verbose": 2,
                                    "export_dir": str(tmp_path / "elsewhere")})
    results = training.run(relaxed, dataset=digits)
    assert results["epochs"] == 3 and len(training.read_log(config.model_dir)) == 3


# A SIGTERM in epoch 2 of 3, then the same command; an uninterrupted run; the same under
# --strategy=one_device. Op determinism is process-global: these runs have their own processes.
SAME_RUN = """
    digits = data.load("digits")

    def run(name, strategy="default"):
        config = training.RunConfig(epochs=3, warmup_epochs=1, verbose=0, export_dir="",
                                    model_dir=os.path.join(folder, name), strategy=strategy)
        with signals.deferred():
            try:
                training.run(config, dataset=digits)
            except signals.Stopped:
                print(name, "stopped")

    if phase == "first":
        sigterm_at.append((1, 3))
        run("resumed")
        sigterm_at.clear()
        run("uninterrupted")
        run("one_device", "one_device")
    else:
        run("resumed")  # the same command again, in a new process
"""


@pytest.mark.slow
def test_an_interrupted_and_resumed_run_is_the_uninterrupted_run_bit_for_bit(tmp_path):
    # The default digits run has all the state a resume must continue: a shuffled pipeline,
    # input dropout (a Keras SeedGenerator), a cosine schedule, and with a one-epoch flat
    # warm-up, per-pair margins estimated at its end. SIGTERM in epoch 2 (after its 4th
    # batch): the run stops, the same command resumes from the backup of epoch 1 and redoes
    # epoch 2, reading the margins estimated at its start back.
    outputs = same_run.first_then_resume(tmp_path, SAME_RUN, timeout=300)
    assert outputs == [["resumed", "stopped"], []]
    same_run.assert_same_runs(tmp_path, ["resumed", "one_device"])


def test_a_changed_default_is_refused_too(tmp_path, digits, monkeypatch):
    config = _interrupted_run(tmp_path, digits, monkeypatch)
    monkeypatch.setitem(training.recipe.DEFAULTS, "dm", {"lam": 1.0, "beta": 16.0})
    with pytest.raises(ValueError, match=r"loss_settings \{'beta': 16.0, 'lam': 2.0, "
                                         r"'max_margin': 16.0, 'reject_margin': 3.0\} -> "
                                         r"\{.*'lam': 1.0"):
        training.run(config, dataset=digits)


def test_a_default_passed_explicitly_resumes_and_a_real_change_is_still_refused(
        tmp_path, digits, monkeypatch):
    config = _interrupted_run(tmp_path, digits, monkeypatch)
    with open(os.path.join(config.model_dir, "config.json")) as f:
        resolved = json.load(f)["resolved"]
    changed = training.RunConfig(**{**config.__dict__, "beta": 4.0})
    with pytest.raises(ValueError, match=r"Cannot resume .*: beta None \(resolved 16.0\) "
                                         r"-> 4.0\."):
        training.validate(changed)
    # --beta=16 --pair_margins on a run started without them: the same run (issue #32, was
    # refused as "beta None -> 16")
    explicit = training.RunConfig(**{**config.__dict__, "beta": resolved["loss_settings"]["beta"],
                                     "pair_margins": resolved["pair_margins"]})
    training.validate(explicit)
    assert training.run(explicit, dataset=digits)["epochs"] == 3


def test_a_run_recorded_before_the_rules_were_resolved_still_resumes(tmp_path, digits,
                                                                     monkeypatch):
    # config.json of an older version: no rule of recipe.RULES under "resolved" (nor a
    # setting added since): a setting missing from the record is not compared.
    config = _interrupted_run(tmp_path, digits, monkeypatch)
    path = os.path.join(config.model_dir, "config.json")
    with open(path) as f:
        record = json.load(f)
    assert set(training.recipe.RULES) & set(record["resolved"])  # recorded now
    for key in training.recipe.RULES:
        record["resolved"].pop(key, None)
    with open(path, "w") as f:
        json.dump(record, f)
    training.validate(config)
    assert training.run(config, dataset=digits)["epochs"] == 3


def test_a_deleted_log_does_not_change_the_exported_epoch(tmp_path, digits, monkeypatch):
    config = _interrupted_run(tmp_path, digits, monkeypatch, after=2)
    os.remove(os.path.join(config.model_dir, "log.csv"))
    results = training.run(config, dataset=digits)
    assert len(training.read_log(config.model_dir)) == 1  # only the resumed epoch is logged
    assert results["exported"]["epoch"] == 3  # the backup's count, not log.csv's rows


def test_the_train_script_refuses_a_changed_resume_with_one_line(tmp_path, digits,
                                                                  monkeypatch):
    config = _interrupted_run(tmp_path, digits, monkeypatch)
    script, _ = parse("train", f"--model_dir={config.model_dir}", "--loss=cce", "--epochs=3",
                      monkeypatch=monkeypatch)
    with pytest.raises(SystemExit, match="Cannot resume the run .* loss 'dm' -> 'cce'"):
        script.main([])


def test_tune_with_bad_data_writes_and_deletes_nothing(tmp_path):
    x = np.ones((20, 3), np.float32)
    x[7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4],
             y_test=[0, 1, 0, 1])
    bad = f"npz:{tmp_path / 'bad.npz'}"
    # a new folder: no config.json is left that would refuse the corrected command
    with pytest.raises(data.DataError, match="inputs must be finite"):
        training.run(_config(tmp_path, dataset=bad, tune=True))
    assert not os.path.exists(tmp_path / "run")
    # a finished run is not deleted by --tune --overwrite before the data is known good
    finished = tmp_path / "finished"
    finished.mkdir()
    recorded = {**training.RunConfig(model_dir=str(finished)).__dict__, "resolved": {}}
    files = {"config.json": json.dumps(recorded), "metrics.json": "{}", "model.keras": "m"}
    for name, text in files.items():
        (finished / name).write_text(text)
    with pytest.raises(data.DataError, match="inputs must be finite"):
        training.run(_config(tmp_path, dataset=bad, tune=True, overwrite=True,
                             model_dir=str(finished)))
    assert {name: (finished / name).read_text() for name in files} == files
    assert sorted(os.listdir(finished)) == sorted(files)


# -- 2. finished training survives a failed export ---------------------------------------------
def test_the_export_target_is_checked_before_training(tmp_path, digits):
    (tmp_path / "afile").write_text("not a folder")
    for target, match in ((tmp_path / "afile" / "exp", "is a file, not a folder"),
                          (tmp_path / "afile", "is a file, not a folder")):
        with pytest.raises(ValueError, match=match):
            training.run(_config(tmp_path, export_dir=str(target)), dataset=digits)
        assert not os.path.exists(tmp_path / "run")
    (tmp_path / "run_file").write_text("x")
    with pytest.raises(ValueError, match="model_dir .* is a file"):
        training.validate(_config(tmp_path, model_dir=str(tmp_path / "run_file")))
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere: nothing to test then
            with pytest.raises(ValueError, match="no write permission"):
                training.validate(_config(tmp_path, model_dir=str(locked / "run")))
    finally:
        os.chmod(locked, 0o700)


def test_a_run_folder_and_its_export_stay_apart(tmp_path):
    # issue #32: --model_dir=X --export_dir=X trained, then the export replaced the run
    for run, target, message in (("x", "x", "are the same folder"),
                                 ("p/x", "p", "are nested in each other"),
                                 ("x", "x/tune/e", "are nested in each other")):
        with pytest.raises(ValueError, match=message):
            training.validate(_config(tmp_path, model_dir=str(tmp_path / run),
                                      export_dir=str(tmp_path / target), overwrite=True))
    (tmp_path / "old_export").mkdir()  # an export: replaced whole by the next one
    (tmp_path / "old_export" / "keras_imae_export.json").write_text('{"source": "elsewhere"}')
    with pytest.raises(ValueError, match="is inside the SavedModel export .*old_export"):
        training.validate(_config(tmp_path, model_dir=str(tmp_path / "old_export" / "run"),
                                  overwrite=True))
    assert sorted(os.listdir(tmp_path)) == ["old_export"]
    # an export folder inside the run folder, but not in what a run writes, is allowed
    training.validate(_config(tmp_path, model_dir=str(tmp_path / "r"),
                              export_dir=str(tmp_path / "r" / "saved_models" / "r")))


def test_a_failed_export_keeps_the_training_and_the_rerun_only_exports(tmp_path, digits,
                                                                      monkeypatch):
    config = _config(tmp_path)
    real = export.export_saved_model

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "export_saved_model", broken)
    with pytest.raises(training.ExportFailed, match=r"Training finished and is saved in "
                                                    r".*model.keras'.*No space left.*run the "
                                                    r"same command again.*scripts/export.py "
                                                    r"--model=.*model.keras --export_dir="):
        training.run(config, dataset=digits)
    folder = run_folder.RunFolder(config.model_dir)
    assert os.path.isfile(folder.file(run_folder.MODEL)) and not folder.finished
    assert folder.backed_up_epochs() == 3  # the training state is kept until the end
    monkeypatch.setattr(export, "export_saved_model", real)
    trained = []
    fit = keras.Model.fit

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            trained.append(epoch)

    monkeypatch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **k: fit(
        self, *a, callbacks=[*callbacks, Count()], **k))
    results = training.run(config, dataset=digits)
    assert trained == []  # nothing trained again
    assert os.path.isfile(os.path.join(results["saved_model"], "saved_model.pb"))
    assert folder.finished and not os.path.exists(folder.file(run_folder.BACKUP))
    assert results["clean_fit"] is not None and len(results["history"]["test_accuracy"]) == 3


def test_an_export_killed_midway_is_cleaned_up_by_the_next_one(tmp_path, finished_run):
    _, results = finished_run
    model = keras.models.load_model(results["model_keras"])
    target = tmp_path / "saved"
    export.export_saved_model(model, target)
    # a SIGKILL left a half-written copy, and an old export moved aside but not put back;
    # their owner (the pid in their names) is dead
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = f"{dead.pid}@{socket.gethostname()}~abc"
    (tmp_path / f".saved.tmp-{owner}").mkdir()
    (tmp_path / f".saved.tmp-{owner}" / "saved_model.pb").write_bytes(b"half")
    os.rename(target, tmp_path / "moved")
    (tmp_path / f".saved.old-{owner}").mkdir()
    os.rename(tmp_path / "moved", tmp_path / f".saved.old-{owner}" / "saved")
    export.export_saved_model(model, target, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["saved"]


# -- 4. no silent change of a model's outputs ---------------------------------------------------
def test_a_softmax_model_is_served_as_it_predicts(tmp_path):
    import tensorflow as tf

    from keras_imae.run_folder import evaluation

    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Dense(8, activation="relu")(inputs)))
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32") * 3
    model.save(tmp_path / "plain.keras")
    assert export.output_kind(model) == "probabilities"
    path = export.export_saved_model(model, tmp_path / "served")
    loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
    served = loaded.serve(x)
    np.testing.assert_allclose(served["probabilities"].numpy(), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served["classes"].numpy(),
                                  model.predict(x, verbose=0).argmax(-1))
    np.testing.assert_allclose(evaluation.load_predictor(tmp_path / "plain.keras")(x),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    sigmoid = keras.Model(inputs, keras.layers.Dense(4, activation="sigmoid")(inputs))
    with pytest.raises(ValueError, match="activation 'sigmoid'.*neither logits nor softmax"):
        export.export_saved_model(sigmoid, tmp_path / "sigmoid")
    assert not os.path.exists(tmp_path / "sigmoid")


# -- 5. one-line reasons -----------------------------------------------------------------------
def _stop(script_name, *args, monkeypatch):
    script, _ = parse(script_name, *args, monkeypatch=monkeypatch)
    with pytest.raises((SystemExit, app.UsageError)) as stop:
        script.main([])
    return stop.value


def test_bad_inputs_stop_with_one_line(tmp_path, finished_run, monkeypatch):
    config, results = finished_run
    (tmp_path / "empty.npz").write_bytes(b"")
    x = np.zeros((6, 3), np.float32)
    np.savez(tmp_path / "one_class.npz", x_train=x, y_train=np.zeros(6, int), x_test=x[:2],
             y_test=[0, 0])
    np.savez(tmp_path / "no_test.npz", x_train=x, y_train=np.arange(6) % 2, x_test=x[:0],
             y_test=np.zeros(0, int))
    labels = tmp_path / "labels.npz"
    labels.write_bytes(open(noise.noisy_labels_path(config.model_dir), "rb").read()[:300])
    np.savez(tmp_path / "short.npz", noisy_labels=np.zeros(5, int),
             is_noisy=np.zeros(5, bool))
    (tmp_path / "file").write_text("x")
    cases = [
        ("train", [f"--dataset=npz:{tmp_path / 'empty.npz'}"],
         "is not a readable npz file of numeric arrays (empty, truncated"),
        ("train", [f"--dataset=npz:{tmp_path / 'one_class.npz'}"],
         "the training labels name 1 class ([0]); a classifier needs at least 2"),
        ("train", [f"--dataset=npz:{tmp_path / 'no_test.npz'}"], "the test split is empty"),
        ("train", [f"--noisy_labels={labels}"], "is not a readable noisy-label file"),
        ("train", [f"--noisy_labels={tmp_path / 'short.npz'}"],
         "holds 5 labels but the training set has 1347 examples"),
        ("train", [f"--model_dir={tmp_path / 'file'}"], "is a file, not a folder"),
        ("find_label_issues", ["--method=kfold", "--folds=2000"],
         "Expected an integer in [2, 1347]"),
    ]
    for name, args, message in cases:
        extra = [f"--model_dir={tmp_path / 'r'}", "--export_dir="] if name == "train" else [
            f"--output_dir={tmp_path / 'out'}"]
        if any(a.startswith("--model_dir") for a in args):
            extra = ["--export_dir="]
        stop = _stop(name, *args, *extra, "--epochs=1", monkeypatch=monkeypatch)
        text = str(stop.code if isinstance(stop, SystemExit) else stop)
        assert message in text and "Traceback" not in text, (args, text)
        assert "\n" not in text.strip(), text
        assert not os.path.exists(tmp_path / "r" / "metrics.json")
    script, _ = parse("evaluate", f"--model={config.model_dir}",
                      f"--output={tmp_path / 'eval.json'}", monkeypatch=monkeypatch)
    script.main([])  # a run folder: its model.keras is evaluated
    with open(tmp_path / "eval.json") as f:
        assert json.load(f)["accuracy"] == pytest.approx(results["test_accuracy_final"])


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt, 130), (signal.SIGTERM, 143),
                                        (signal.SIGINT, 130)])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_resume(tmp_path, digits, monkeypatch,
                                                          capsys, stop, code):
    config = _config(tmp_path, epochs=3)
    fit = keras.Model.fit
    batches_after_the_signal = []
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]

    class Stop(keras.callbacks.Callback):  # after the run's callbacks
        def on_train_batch_begin(self, batch, logs=None):
            if self.model.signalled:
                batches_after_the_signal.append(batch)

        def on_train_batch_end(self, batch, logs=None):
            if batch == 2 and not self.model.signalled:  # mid-epoch, as a scheduler would
                self.model.signalled = True
                if stop is KeyboardInterrupt:
                    raise KeyboardInterrupt()
                os.kill(os.getpid(), stop)  # the handler only records it (issue #32)

    def stopped_fit(self, *a, callbacks=(), **k):
        self.signalled = False
        return fit(self, *a, callbacks=[*callbacks, Stop()], **k)

    monkeypatch.setattr(keras.Model, "fit", stopped_fit)
    monkeypatch.setattr(data, "load", lambda *a, **k: digits)
    script, _ = parse("train", f"--model_dir={config.model_dir}", "--epochs=3", "--verbose=0",
                      "--export_dir=", monkeypatch=monkeypatch)
    with pytest.raises(SystemExit) as stopped:
        script.main([])
    assert stopped.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Stopped (") and "run the same command again to resume" in (
        err[-1].lower())
    assert not os.path.exists(os.path.join(config.model_dir, ".lock"))
    assert batches_after_the_signal == []  # stopped before the next batch
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers
    monkeypatch.setattr(keras.Model, "fit", fit)
    results = training.run(training.RunConfig(**{**config.__dict__, "export_dir": ""}),
                           dataset=digits)
    assert len(training.read_log(config.model_dir)) == 3 and results["epochs"] == 3


# -- 6. smaller cases --------------------------------------------------------------------------
def test_webp_images_are_read_and_others_are_named(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            image = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
            image.save(tmp_path / c / f"{i}.webp")
        image.save(tmp_path / c / "scan.tiff")
    with pytest.warns(UserWarning, match=r"skipped 2 image files TensorFlow cannot decode "
                                         r"\(\.tiff: 2\)"):
        ds = data.load(f"folder:{tmp_path}", image_size=(6, 6))
    assert len(ds.y_train) + len(ds.y_test) == 6  # every .webp image


def test_label_files_accept_a_bom_and_refuse_duplicate_rows(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "train.csv").write_text("\ufeffpath,label\n0.png,a\n1.png,b\n2.png,a\n",
                                        encoding="utf-8")
    (tmp_path / "test.csv").write_text("3.png,b\n")
    ds = data.load(f"labels:{tmp_path}")
    assert ds.class_names == ["a", "b"] and len(ds.y_train) == 3
    (tmp_path / "train.csv").write_text("path,label\n0.png,a\n1.png,b\n0.png,b\n")
    with pytest.raises(data.DataError, match=r"train.csv:4: image '0.png' is listed again "
                                             r"\(first on line 2\)"):
        data.load(f"labels:{tmp_path}")


def test_folds_larger_than_a_class_warn():
    with pytest.warns(UserWarning, match=r"1 classes have fewer examples than the 3 folds "
                                         r"\(class 2: 2\)"):
        label_issues.assign_folds([0, 0, 0, 1, 1, 1, 2, 2], 3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        label_issues.assign_folds([0, 0, 0, 1, 1, 1], 3, seed=0)
