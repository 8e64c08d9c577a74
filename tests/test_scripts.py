"""Smoke tests of the scripts, run as a user runs them: in a subprocess."""

import ast
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _script(name, *args, cwd=None, expect=0):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args],
                          cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == expect, output[-3000:]
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """scripts/train.py with its defaults, shortened to 2 epochs, run from a scratch folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    output = _script("train.py", "--epochs=2", "--verbose=2", cwd=cwd)
    return cwd, output


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


def test_export_refuses_existing_target_then_overwrites(trained):
    cwd, _ = trained
    model = cwd / "runs" / "digits_dm" / "model.keras"
    target = cwd / "saved_models" / "digits_dm"
    output = _script("export.py", f"--model={model}", f"--export_dir={target}", expect=1)
    assert "holds the export of" in output and "Traceback" not in output
    assert "Exported" in _script("export.py", f"--model={model}", f"--export_dir={target}",
                                 "--overwrite")


def test_plot_writes_pngs(trained, tmp_path):
    cwd, _ = trained
    _script("plot.py", f"--emphasis={tmp_path / 'w.png'}",
            f"--model_dir={cwd / 'runs' / 'digits_dm'}", f"--output={tmp_path / 'run.png'}")
    for name in ("w.png", "run.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("flag,choices", [
    ("--loss=focal", "dm|imae|cce|mae|mse|gce|sce|nce_rce"),
    ("--dataset=cifar11", "'digits', 'npz:PATH', 'folder:PATH'"),
    ("--noise_type=uniform", "none|symmetric|pairflip|asymmetric"),
    ("--strategy=gpu", "default|one_device|mirrored|multi_worker|tpu|auto"),
])
def test_bad_flags_list_the_choices(flag, choices):
    output = _script("train.py", flag, expect=1)
    assert "Flags parsing error" in output and choices in output


def test_compare_takes_the_same_run_flags_as_train():
    output = _script("compare.py", "--optimizer=rmsprop", expect=1)
    assert "Flags parsing error" in output and "sgd|adam" in output
    output = _script("compare.py", "--losses=dm,focal", expect=1)
    assert "--losses takes names among: dm, imae" in output


def test_rerun_into_a_finished_run_needs_overwrite(trained):
    cwd, _ = trained
    output = _script("train.py", "--epochs=1", "--noise_rate=0.2", cwd=cwd, expect=1)
    assert "already holds a finished run" in output and "--overwrite" in output
    assert "Traceback" not in output


def test_clear_messages_for_missing_or_corrupt_inputs(tmp_path):
    output = _script("plot.py", f"--model_dir={tmp_path / 'nope'}", expect=1)
    assert "No training log" in output and "Traceback" not in output
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"garbage")
    output = _script("evaluate.py", f"--model={corrupt}", expect=1)
    assert "Could not load the Keras model file" in output and "Traceback" not in output
    output = _script("evaluate.py", f"--model={tmp_path / 'missing'}", expect=1)
    assert "No model at" in output and "Traceback" not in output


@pytest.mark.parametrize("streamed", [False, True], ids=["in_memory", "streamed_folder"])
def test_train_on_two_local_workers_only_the_chief_writes(tmp_path, streamed):
    """scripts/train.py --strategy=multi_worker on two localhost workers sharing model_dir;
    streamed: an image folder read by tf.data, each worker its share, ids global."""
    from test_distribute import free_ports

    extra = []
    if streamed:
        from test_run_data import _folder

        _folder(tmp_path / "imgs")
        extra = [f"--dataset=folder:{tmp_path / 'imgs'}", "--streaming=on", "--model=mlp",
                 "--batch_size=8"]
    workers = [f"localhost:{port}" for port in free_ports(2)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--epochs=2",
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


def test_train_help_is_readable():
    # absl formats the module docstring with %: a bare "40% s..." used to print the program
    # name in the middle of the sentence.
    output = _script("train.py", "--help", expect=1)  # absl exits 1 after --help
    assert "with 40 percent symmetric noise" in output and "train.pyymmetric" not in output


def test_no_script_docstring_has_a_bare_percent_sign():
    # absl %-formats the docstring for --help; a bare % garbles it (see the test above).
    for name in os.listdir(os.path.join(ROOT, "scripts")):
        with open(os.path.join(ROOT, "scripts", name)) as f:
            doc = ast.get_docstring(ast.parse(f.read()), clean=False) or ""
        assert doc.count("%") == 2 * doc.count("%%"), f"scripts/{name}: write % as %%"


def test_train_stops_with_a_reason_and_exports_nothing(tmp_path):
    """Exit status 1 and a one-line reason, no traceback, nothing exported (issue #13)."""
    x = np.ones((20, 3), np.float32)
    x[7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4],
             y_test=[0, 1, 0, 1])
    runs = {"nan_pixel": ([f"--dataset=npz:{tmp_path / 'bad.npz'}"],
                          r"DataError: Invalid value in `x_train`: inputs must be finite. "
                          r"Received: x_train[7, 1]=nan"),
            "nan_loss": (["--beta=500", "--epochs=2"],  # the NaN-from-epoch-1 case
                         "TrainingCollapsed: Training collapsed at epoch 1")}
    for name, (flags, reason) in runs.items():
        output = _script("train.py", *flags, "--verbose=0", f"--model_dir={tmp_path / name}",
                         f"--export_dir={tmp_path / 'export'}", cwd=tmp_path, expect=1)
        assert reason in output and "Traceback" not in output, output[-2000:]
        assert not os.path.exists(tmp_path / "export")
        assert not os.path.exists(tmp_path / name / "metrics.json")
    assert not os.path.exists(tmp_path / "nan_pixel")  # stopped before writing anything


def test_train_refuses_a_folder_another_run_is_training_in(tmp_path):
    (tmp_path / "run").mkdir()
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "time": "now"}  # alive
    (tmp_path / "run" / ".lock").write_text(json.dumps(lock))
    output = _script("train.py", f"--model_dir={tmp_path / 'run'}", expect=1)
    assert f"RunLocked: Another run is training in '{tmp_path / 'run'}'" in output
    assert "Traceback" not in output and os.listdir(tmp_path / "run") == [".lock"]
