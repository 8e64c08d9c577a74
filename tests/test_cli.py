"""Tests for keras_imae.cli (the commands) and keras_imae.cli.run_flags (their flags).

Each command's ``define_flags(flag_values)`` is parsed into a fresh ``absl.flags.FlagValues``
and its ``main`` called with it; ``tests/test_scripts.py`` runs the scripts and the installed
commands' functions in subprocesses (a bad flag, ``--help``).
"""

import contextlib
import dataclasses
import importlib
import os
import re
import socket
import sys

import pytest
from absl import app, flags

from keras_imae import label_issues, run_folder, training
from keras_imae import cli as commands
from keras_imae.cli import run_flags


def load_script(name):
    """The module of command ``name`` (``scripts/<name>.py`` and ``keras-imae-<name>``)."""
    return importlib.import_module(f"keras_imae.cli._{name}")


def parse(name, *args, monkeypatch=None):
    """``(script module, FlagValues)`` with ``args`` parsed as the script parses them."""
    script = load_script(name)
    flag_values = flags.FlagValues()
    script.define_flags(flag_values)
    flag_values([f"{name}.py", *args])
    if monkeypatch is not None:
        monkeypatch.setattr(script, "FLAGS", flag_values)
    return script, flag_values


def test_run_flags_cover_every_run_config_field():
    assert set(run_flags.RUN_FLAGS) == {f.name for f in dataclasses.fields(training.RunConfig)}


def test_run_flags_parse_into_a_run_config():
    _, flag_values = parse("train", "--loss=gce", "--q=0.5", "--epochs=3", "--model=cnn")
    config = run_flags.run_config(flag_values)
    assert (config.loss, config.q, config.epochs, config.model) == ("gce", 0.5, 3, "cnn")
    assert dataclasses.replace(config, loss="dm", q=None, epochs=40,
                               model="auto") == training.RunConfig()


@pytest.mark.parametrize("script,flag,choices", [
    ("train", "--loss=focal", "dm|imae|cce|mae|mse|gce|sce|nce_rce"),
    ("train", "--dataset=cifar11", "'digits', 'npz:PATH', 'folder:PATH'"),
    ("train", "--noise_type=uniform", "none|symmetric|pairflip|asymmetric"),
    ("train", "--strategy=gpu", "default|one_device|mirrored|multi_worker|tpu|auto"),
    ("compare", "--optimizer=rmsprop", "sgd|adam"),
    ("compare", "--losses=dm,focal", "--losses takes names among: dm, imae"),
    ("compare", "--selection=clean", "noisy|corrected"),
    ("find_label_issues", "--retrain=fix", "none|remove|relabel"),
    ("evaluate", "--dataset=cifar11", "'digits', 'npz:PATH', 'folder:PATH'"),
])
def test_bad_flags_list_the_choices(script, flag, choices):
    with pytest.raises(flags.Error) as error:
        parse(script, *([flag, "--model=m"] if script == "evaluate" else [flag]))
    assert choices in str(error.value)


@pytest.mark.parametrize("args,message", [
    (["--learning_rate=-1"], "learning_rate=-1.0"),
    (["--noise_rate=1.5"], "noise_rate=1.5"),
    (["--loss=imae", "--beta=16"], r"'imae' does not take `beta`.*temperature"),
    (["--optimizer=adam", "--momentum=0.5"], "`momentum` applies to optimizer='sgd' only"),
    (["--seed=-1"], r"Invalid value for argument `seed`. Expected an integer in \[0, "
                    r"4294967295\]. Received: seed=-1"),
    (["--noise_seed=-1"], "noise_seed=-1"),
])
def test_bad_run_settings_are_refused_before_any_work(tmp_path, args, message):
    _, flag_values = parse("train", *args, f"--model_dir={tmp_path / 'run'}")
    with pytest.raises(ValueError, match=message):
        training.validate(run_flags.run_config(flag_values))
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("flag,message", [
    ("--folds=1", "Invalid value for argument `folds`"),
    ("--beta=3", "does not take `beta`"),
])
def test_label_issue_settings_are_checked_before_any_work(flag, message):
    args = ["--loss=imae", flag] if "beta" in flag else [flag]
    _, flag_values = parse("find_label_issues", *args)
    config = run_flags.run_config(flag_values)
    with pytest.raises(ValueError, match=message):
        label_issues.validate(config, folds=flag_values.folds, retrain=flag_values.retrain)


def _one_line_exit(script, capsys):
    """``main``'s one-line reason (status 1); nothing else printed, no usage text."""
    with pytest.raises(SystemExit) as stop:
        script.main([])
    reason = str(stop.value.code)
    assert "\n" not in reason and "flags:" not in reason, reason
    assert capsys.readouterr().out == ""
    return reason


def test_label_issues_refuse_an_output_dir_holding_a_run_or_an_export(tmp_path, monkeypatch):
    # issue #32: find_label_issues.py --output_dir=<a train.py run> replaced its noisy labels
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "noisy_labels.npz").write_bytes(b"theirs")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"pb")
    for output, message in (("run", r"holds a training run \(config.json\); its files"),
                            ("export/out", "is inside the SavedModel export")):
        script, _ = parse("find_label_issues", f"--output_dir={tmp_path / output}",
                          monkeypatch=monkeypatch)
        with _stops(rf"Invalid value for `output_dir`: .*{message}"):
            script.main([])
    assert (tmp_path / "run" / "noisy_labels.npz").read_bytes() == b"theirs"
    assert not os.path.exists(tmp_path / "export" / "out")


def test_a_finished_run_with_other_settings_needs_overwrite(finished_run, monkeypatch,
                                                            capsys):
    config, _ = finished_run
    script, _ = parse("train", f"--model_dir={config.model_dir}", "--noise_rate=0.2",
                      monkeypatch=monkeypatch)
    reason = _one_line_exit(script, capsys)
    assert re.match(r"ValueError: model_dir .* already holds a finished run.*--overwrite", reason)
    assert "with other settings (recorded -> now: " in reason and "noise_rate 0.4 -> 0.2" in reason


def test_the_same_command_again_prints_the_finished_run(finished_run, monkeypatch, capsys):
    config, results = finished_run
    script, _ = parse("train", f"--model_dir={config.model_dir}", "--epochs=3",
                      f"--export_dir={config.export_dir}", "--verbose=2",  # may change
                      monkeypatch=monkeypatch)
    script.main([])  # returns: status 0
    out = capsys.readouterr().out
    assert training.format_results(results) in out
    assert out.splitlines()[-1].endswith("finished: nothing to train (--overwrite trains it "
                                         "again).")


def test_a_bad_setting_is_one_line_not_the_usage_text(tmp_path, monkeypatch, capsys):
    script, _ = parse("train", "--loss=imae", "--beta=16", f"--model_dir={tmp_path / 'r'}",
                      monkeypatch=monkeypatch)
    assert _one_line_exit(script, capsys).startswith("ValueError: Loss 'imae' does not take")


def test_a_folder_in_use_is_refused_with_a_reason(tmp_path, monkeypatch):
    script, _ = parse("train", f"--model_dir={tmp_path / 'run'}", monkeypatch=monkeypatch)
    with run_folder.RunFolder(tmp_path / "run").lock():  # a run holding the folder
        with pytest.raises(SystemExit) as stop:
            script.main([])
        assert os.listdir(tmp_path / "run") == [".lock"]
    assert str(stop.value.code).startswith(
        f"RunLocked: Another run is training in '{tmp_path / 'run'}' (lock ")
    assert f"pid {os.getpid()} on {socket.gethostname()}" in str(stop.value.code)


def test_training_that_must_stop_exits_with_a_reason_and_exports_nothing(tmp_path,
                                                                          monkeypatch):
    import numpy as np

    x = np.ones((20, 3), np.float32)
    x[7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4],
             y_test=[0, 1, 0, 1])
    runs = {"nan_pixel": ([f"--dataset=npz:{tmp_path / 'bad.npz'}"],
                          "DataError: Invalid value in `x_train`: inputs must be finite. "
                          "Received: x_train[7, 1]=nan"),
            # issue #13's NaN-from-epoch-1 case (on the MLP without input dropout): now
            # constant predictions from epoch 1, which count at the last epoch (or after
            # CollapseGuard's patience)
            "nan_loss": (["--beta=500", "--epochs=2", "--input_dropout=0"],
                         "TrainingCollapsed: Training collapsed at epoch 2")}
    for name, (args, reason) in runs.items():
        script, _ = parse("train", *args, "--verbose=0", f"--model_dir={tmp_path / name}",
                          f"--export_dir={tmp_path / 'export'}", monkeypatch=monkeypatch)
        with pytest.raises(SystemExit) as stop:
            script.main([])
        assert str(stop.value.code).startswith(reason), stop.value.code
        assert not os.path.exists(tmp_path / "export")
        assert not os.path.exists(tmp_path / name / run_folder.METRICS)
    assert not os.path.exists(tmp_path / "nan_pixel")  # stopped before writing anything


def test_export_refuses_an_existing_target_without_overwrite(finished_run, monkeypatch):
    _, results = finished_run
    script, _ = parse("export", f"--model={results['model_keras']}",
                      f"--export_dir={results['saved_model']}", monkeypatch=monkeypatch)
    before = sorted(os.listdir(results["saved_model"]))
    with pytest.raises(SystemExit, match="holds the export of"):
        script.main([])
    assert sorted(os.listdir(results["saved_model"])) == before


@pytest.mark.parametrize("script,args,message", [
    ("plot", ["--model_dir={tmp}/nope"], "No training log"),
    ("plot", [], "Pass --emphasis=PATH.png and/or --model_dir=RUN_DIR"),
    ("evaluate", ["--model={tmp}/corrupt.keras"], "Could not load the Keras model file"),
    ("evaluate", ["--model={tmp}/missing"], "No model at"),
    ("export", ["--model={tmp}/missing.keras", "--export_dir={tmp}/x"], "No model at"),
])
def test_missing_or_corrupt_inputs_stop_with_one_line(tmp_path, monkeypatch, capsys, script,
                                                      args, message):
    (tmp_path / "corrupt.keras").write_bytes(b"garbage")
    script, _ = parse(script, *(a.format(tmp=tmp_path) for a in args), monkeypatch=monkeypatch)
    if not args:  # no flag at all: a usage error, with the usage text
        with pytest.raises(app.UsageError, match=message):
            script.main([])
    else:
        assert message in _one_line_exit(script, capsys)


def test_train_help_is_readable_and_grouped_by_topic(monkeypatch, capsys):
    # absl %-formats the usage text for --help: a bare "40% s..." used to print the program
    # name in the middle of the sentence (the docstring and --noise_type's help have one).
    script, flag_values = parse("train")
    monkeypatch.setattr(sys.modules["__main__"], "__doc__",
                        commands.usage(script.__doc__, flag_values, list(flag_values)))
    monkeypatch.setattr(sys, "argv", ["train.py"])
    app.usage(shorthelp=True)
    output = capsys.readouterr().err
    assert "draws 40 percent symmetric noise" in output and "train.pyymmetric" not in output
    assert "'auto': 40% symmetric" in output
    topics = [output.index(f"\n{topic}:\n") for topic in run_flags.TOPICS]
    assert topics == sorted(topics)  # in the table's order
    flag = {name: output.index(f"\n  --{name}:") for name in ("noise_type", "seed", "tpu")}
    assert topics[0] < flag["noise_type"] < topics[1] < flag["seed"] < topics[2]
    assert topics[-1] < flag["tpu"]


# Each command's --help text, as keras_imae.cli.launch builds it from the command's own flags;
# tests/test_scripts.py runs --help in a subprocess for a script and an installed command.
@pytest.mark.parametrize("name,own", [
    ("train", ["data and noise:", "--noise_type", "loss:", "--loss", "run folder and export:",
               "--model_dir", "distribution:", "--tpu"]),
    ("compare", ["comparison:", "--losses", "optimisation:", "--epochs"]),
    ("evaluate", ["--model", "--output"]),
    ("export", ["--export_dir", "--overwrite"]),
    ("plot", ["--emphasis", "--model_dir"]),
    ("find_label_issues", ["label issues:", "--retrain", "--noise_type"]),
])
def test_every_command_s_help_lists_its_own_flags_by_topic(name, own, monkeypatch, capsys):
    script, flag_values = load_script(name), flags.FlagValues()
    script.define_flags(flag_values)  # unparsed: --help needs no required flag
    monkeypatch.setattr(sys.modules["__main__"], "__doc__",
                        commands.usage(script.__doc__, flag_values, list(flag_values)))
    monkeypatch.setattr(sys, "argv", [f"{name}.py"])
    app.usage(shorthelp=True)
    output = capsys.readouterr().err
    assert output.startswith(script.__doc__.replace("%%", "%").split("\n")[0])
    for text in own:  # a topic's heading, a flag's line
        pattern = rf"\n{text}\n" if text.endswith(":") else rf"\n  --(\[no\])?{text[2:]}:"
        assert re.search(pattern, output), text


def test_every_run_flag_has_one_topic():
    names = [name for topic in run_flags.TOPICS.values() for name in topic]
    assert sorted(names) == sorted(run_flags.RUN_FLAGS)


def test_no_command_docstring_has_a_bare_percent_sign():
    # absl %-formats the docstring for --help; a bare % garbles it (see the test above).
    for name in commands.COMMANDS:
        doc = load_script(name).__doc__
        assert doc.count("%") == 2 * doc.count("%%"), f"keras_imae/cli/_{name}.py: write %%"


# -- issue #32: every script stops with one line, before any work, leaving nothing behind -------
@contextlib.contextmanager
def _stops(pattern):
    """The command stops with one line (status 1, ``Name: message``) matching ``pattern``."""
    with pytest.raises(SystemExit) as stop:
        yield
    assert re.search(pattern, str(stop.value.code)), stop.value.code
def _tiny_model(path):
    """A digits-shaped logits model saved as ``path`` (a .keras file)."""
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    return path


def test_evaluate_checks_its_output_first_and_names_a_missing_dataset(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    for output, message in ((tmp_path / "afile" / "r.json", "is a file, not a folder"),
                            (tmp_path / "folder", "is a folder; expected the path of a JSON")):
        # the model does not exist either: --output is checked before anything is loaded
        script, _ = parse("evaluate", f"--model={tmp_path / 'none.keras'}", f"--output={output}",
                          monkeypatch=monkeypatch)
        with _stops(message):
            script.main([])
    model = _tiny_model(str(tmp_path / "m.keras"))
    script, _ = parse("evaluate", f"--model={model}", f"--dataset=npz:{tmp_path / 'no.npz'}",
                      f"--output={tmp_path / 'r.json'}", monkeypatch=monkeypatch)
    with _stops(r"No npz file at .*no\.npz"):
        script.main([])
    assert sorted(os.listdir(tmp_path)) == ["afile", "folder", "m.keras"]


def test_export_takes_a_run_folder_and_refuses_a_folder_without_a_model(tmp_path, monkeypatch,
                                                                      capsys):
    import tensorflow as tf

    _tiny_model(str(tmp_path / "run" / "model.keras"))
    script, _ = parse("export", f"--model={tmp_path / 'run'}",
                      f"--export_dir={tmp_path / 'exp'}", monkeypatch=monkeypatch)
    script.main([])
    assert f"Exported {tmp_path / 'run' / 'model.keras'} to" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(tmp_path / "exp"))  # keep it: it owns the variables
    assert loaded.serve(tf.zeros((2, 8, 8, 1)))["probabilities"].shape == (2, 10)
    (tmp_path / "empty").mkdir()
    script, _ = parse("export", f"--model={tmp_path / 'empty'}",
                      f"--export_dir={tmp_path / 'exp2'}", monkeypatch=monkeypatch)
    with _stops("it is a folder without a model.keras"):
        script.main([])  # Keras said "UnboundLocalError: weights_store"


def test_export_to_an_unwritable_target_or_a_full_disk_is_one_line(tmp_path, monkeypatch):
    import tensorflow as tf

    model = _tiny_model(str(tmp_path / "m.keras"))
    (tmp_path / "afile").write_text("x")  # a target under a file cannot be written (as root too)
    script, _ = parse("export", f"--model={model}", f"--export_dir={tmp_path / 'afile' / 'e'}",
                      monkeypatch=monkeypatch)
    with pytest.raises(SystemExit) as stop:
        script.main([])
    assert str(stop.value.code).startswith("NotADirectoryError: The folder of export target")

    class FullDisk:  # TF's SavedModel writer on a full disk
        def write_out(self, path, **kwargs):
            os.makedirs(os.path.join(path, "variables"), exist_ok=True)  # a partial write
            raise tf.errors.ResourceExhaustedError(None, None, "disk full")

    monkeypatch.setattr(run_folder.export, "_serving_archive", lambda model: FullDisk())
    script, _ = parse("export", f"--model={model}", f"--export_dir={tmp_path / 'e'}",
                      monkeypatch=monkeypatch)
    with pytest.raises(SystemExit) as stop:
        script.main([])
    assert str(stop.value.code) == (
        f"OSError: No space left on device while writing the SavedModel "
        f"{str(tmp_path / 'e')!r} (disk full); nothing was replaced. {model!r} is kept and the "
        "target is unchanged: free some space and run the same command again.")
    assert sorted(os.listdir(tmp_path)) == ["afile", "m.keras"]  # no partial folder left


def test_plot_checks_its_output_and_names_a_bad_log_cell(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    script, _ = parse("plot", f"--emphasis={tmp_path / 'afile' / 'e.png'}",
                      monkeypatch=monkeypatch)
    with _stops("is a file, not a folder"):
        script.main([])
    script, _ = parse("plot", f"--emphasis={tmp_path}", monkeypatch=monkeypatch)
    with _stops("is a folder; expected the path of a PNG"):
        script.main([])
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,train_clean_fit\n0,0.5\n1,NA\n2,abc\n")
    script, _ = parse("plot", f"--model_dir={run}", monkeypatch=monkeypatch)
    with _stops(r"log\.csv', line 4: column 'train_clean_fit' "
                                             r"holds 'abc', not a number"):
        script.main([])
    (run / "log.csv").write_text("epoch,train_clean_fit\n0,0.5\n1,NA\n")  # NA: not logged
    script, _ = parse("plot", f"--model_dir={run}", f"--output={tmp_path / 'f.png'}",
                      monkeypatch=monkeypatch)
    script.main([])
    assert os.path.isfile(tmp_path / "f.png")


@pytest.mark.parametrize("script,flag,message", [
    ("compare", "--num_seeds=0", "num_seeds"),
    ("compare", "--selection_seeds=0", "selection_seeds"),
])
def test_count_flags_must_be_positive(script, flag, message):
    with pytest.raises(flags.IllegalFlagValueError, match=message):
        parse(script, flag)


def test_signals_are_recorded_and_raised_at_the_next_check():
    import signal

    from keras_imae.run import signals

    with signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)  # recorded: nothing is raised in the handler
        with pytest.raises(signals.Stopped) as stopped:
            signals.check()
        assert stopped.value.signum == signal.SIGTERM
    signals.check()  # outside deferred(): nothing recorded, nothing raised
    with pytest.raises(KeyboardInterrupt) as second:
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C stops at once
    assert not isinstance(second.value, signals.Stopped)
