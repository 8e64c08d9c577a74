"""Smoke tests of the scripts and the installed commands, run as a user runs them: in a
subprocess.

Their flags and error paths are tested in process by tests/test_cli.py; here one bad flag
proves that the script itself exits non-zero with absl's message, and ``--help`` that each
lists its own flags. An installed command (setup.cfg's console_scripts) is its function in
``keras_imae.cli``, called here as ``python -c`` from a scratch folder.
"""

import configparser
import fcntl
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from image_cases import image_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _script(name, *args, cwd=None, expect=0, command=None, quiet=True):
    """Run ``scripts/<name>`` (or, given ``command``, the installed command's function)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    if not quiet:  # as a user runs it: the command itself silences TensorFlow
        env.pop("TF_CPP_MIN_LOG_LEVEL")
    program = ([sys.executable, "-c", f"from keras_imae import cli; cli.{command}()"]
               if command else [sys.executable, os.path.join(ROOT, "scripts", name)])
    proc = subprocess.run([*program, *args], cwd=cwd or ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == expect, output[-3000:]
    return output


def _console_scripts():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    lines = setup["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=") for line in lines)


def test_every_command_is_installed():
    from keras_imae import cli

    entries = _console_scripts()
    assert sorted(entries) == sorted(f"keras-imae-{c.replace('_', '-')}" for c in cli.COMMANDS)
    for name, target in entries.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


# --help as a user runs it: a script, and an installed command's function from a scratch folder.
# Every command's help text, the same function of its flags, is checked in process
# (tests/test_cli.py::test_every_command_s_help_lists_its_own_flags_by_topic).
@pytest.mark.parametrize("name,own", [
    ("train", ["data and noise:", "--noise_type", "loss:", "--loss", "run folder and export:",
               "--model_dir", "distribution:", "--tpu"]),
    ("compare", ["comparison:", "--losses", "optimisation:", "--epochs"]),
])
def test_help_lists_the_command_s_own_flags(name, own, tmp_path):
    output = (_script(f"{name}.py", "--help", expect=1) if name == "train"
              else _script(None, "--help", command=name, cwd=tmp_path, expect=1))
    for text in own:
        assert text in output, text
    for absl_or_tf in ("--test_srcdir", "--verbosity", "--logtostderr", "--flagfile"):
        assert f"\n  {absl_or_tf}" not in output, absl_or_tf
    assert len(output.splitlines()) < 250  # --helpfull: every absl and TensorFlow flag too


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """keras-imae-train's function with its defaults, shortened to 2 epochs, run from a scratch
    folder as a user runs it (TF_CPP_MIN_LOG_LEVEL unset): ``(folder, output)``.

    Run once per session: under pytest -n the first worker to ask trains under a lock in the
    session's shared temporary folder, and the others read its result. The tests only read
    the folder (or copy from it), so they may run at the same time."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common folder, this session's only
    cwd, done = shared / "trained", shared / "trained.out"
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(cwd, ignore_errors=True)  # an earlier worker's failed try
            cwd.mkdir()
            done.write_text(_script(None, "--epochs=2", command="train", cwd=cwd, quiet=False))
    return cwd, done.read_text()


def test_train_defaults_end_to_end(trained):
    cwd, output = trained
    assert "noisy memorisation" in output and "test accuracy, final" in output
    assert "realised" in output  # the noise summary
    run_dir = cwd / "runs" / "digits_dm"
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["dataset"] == "digits" and metrics["loss"]["name"] == "derivative_manipulation"
    assert metrics["noise_rate_realised"] == pytest.approx(0.4, abs=0.01)
    assert os.path.isfile(cwd / "saved_models" / "digits_dm" / "saved_model.pb")
    assert (run_dir / "log.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_the_installed_train_runs_anywhere_quietly_and_reruns_with_status_0(trained):
    cwd, output = trained
    for chatter in ("cudart_stub", "cuInit", "absl::InitializeLog", "cpu_feature_guard"):
        assert chatter not in output, output[:3000]
    # verbose=1's bar: the figures a person watches; log.csv keeps every value
    assert "test_accuracy: " in output and "noisy_correct:" not in output
    assert "noisy_correct" in (cwd / "runs" / "digits_dm" / "log.csv").read_text()
    again = _script(None, "--epochs=2", command="train", cwd=cwd)  # status 0
    assert "test accuracy, final" in again and "nothing to train" in again
    assert "flags:" not in again and "Epoch 1/2" not in again


def test_evaluate_reads_the_export(trained, tmp_path):
    cwd, _ = trained
    out = tmp_path / "eval.json"
    output = _script("evaluate.py", f"--model={cwd / 'saved_models' / 'digits_dm'}",
                     f"--output={out}")
    with open(out) as f:
        evaluated = json.load(f)
    with open(cwd / "runs" / "digits_dm" / "metrics.json") as f:
        trained = json.load(f)
    # The export scores exactly what the end-of-training monitor measured on the test split.
    assert evaluated["accuracy"] == pytest.approx(trained["test_accuracy_final"], abs=1e-9)
    assert len(evaluated["per_class_accuracy"]) == 10
    assert f"accuracy {evaluated['accuracy']:.4f}" in output


def test_export_replaces_the_run_export_with_overwrite(trained, tmp_path):
    # Without --overwrite the same command is refused (tests/test_cli.py, in process).
    cwd, _ = trained
    model = cwd / "runs" / "digits_dm" / "model.keras"
    target = tmp_path / "digits_dm"  # a copy of the run's export, which other tests read
    shutil.copytree(cwd / "saved_models" / "digits_dm", target)
    output = _script("export.py", f"--model={model}", f"--export_dir={target}", "--overwrite")
    assert f"Exported {model} to {target}" in output
    assert os.path.isfile(target / "saved_model.pb")


def test_a_bad_flag_exits_non_zero_with_the_choices():
    output = _script("train.py", "--loss=focal", expect=1)
    assert "Flags parsing error" in output and "dm|imae|cce|mae|mse|gce|sce|nce_rce" in output
    assert "Traceback" not in output


def test_plot_writes_pngs(trained, tmp_path):
    cwd, _ = trained
    _script("plot.py", f"--emphasis={tmp_path / 'w.png'}",
            f"--model_dir={cwd / 'runs' / 'digits_dm'}", f"--output={tmp_path / 'run.png'}")
    for name in ("w.png", "run.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("streamed", [False, True], ids=["in_memory", "streamed_folder"])
def test_train_on_two_local_workers_only_the_chief_writes(tmp_path, streamed, free_ports):
    """scripts/train.py --strategy=multi_worker on two localhost workers sharing model_dir;
    streamed: an image folder read by tf.data, each worker its share, ids global."""
    extra = []
    if streamed:
        image_folder(tmp_path / "imgs")
        extra = [f"--dataset=folder:{tmp_path / 'imgs'}", "--streaming=on", "--model=mlp",
                 "--batch_size=8"]
    workers = [f"localhost:{port}" for port in free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--epochs=2",
             "--warmup_epochs=1",  # exercises the warm-up's step rebuild on both workers
             "--strategy=multi_worker", "--verbose=0", f"--model_dir={tmp_path / 'run'}",
             f"--export_dir={tmp_path / 'export'}", *extra],
            env=dict(env, TF_CONFIG=json.dumps(tf_config)), cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
    run = tmp_path / "run"
    assert (run / "log.csv").read_text().count("\n") == 3  # header + 2 epochs, one writer
    assert (run / "worker-1" / "log.csv").read_text().count("\n") == 3
    assert os.path.isfile(tmp_path / "export" / "saved_model.pb")
    assert not os.path.exists(run / "worker-1" / "export")
    with open(run / "metrics.json") as f, open(run / "worker-1" / "metrics.json") as g:
        chief, other = json.load(f), json.load(g)
    assert chief["test_accuracy_final"] == other["test_accuracy_final"]  # same weights
    assert chief["clean_fit"] == other["clean_fit"] and chief["noisy_fit"] == other["noisy_fit"]
