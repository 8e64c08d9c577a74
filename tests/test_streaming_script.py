"""scripts/train.py on a streamed label-file source, run as a user runs it (subprocess)."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _train(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_train_script_on_a_label_file(tmp_path):
    rng = np.random.default_rng(0)
    rows, test_rows = ["path,label,clean_label"], []
    for c in range(2):
        for i in range(10):
            keras.utils.save_img(tmp_path / f"{c}_{i}.png",
                                 rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), scale=False)
            if i < 8:
                rows.append(f"{c}_{i}.png,{(c + (i == 0)) % 2},{c if i % 2 else ''}")
            else:
                test_rows.append(f"{c}_{i}.png,{c}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(test_rows) + "\n")
    flags = [f"--dataset=labels:{tmp_path}", "--epochs=1", "--model=mlp", "--batch_size=4",
             "--export_dir=", "--model_dir=run"]
    code, out = _train(*flags, "--noise_type=symmetric", cwd=tmp_path)
    assert code != 0 and "gives its own noisy labels" in out and "noise_type='none'" in out
    assert not os.path.exists(tmp_path / "run")
    code, out = _train(*flags, "--verbose=2", cwd=tmp_path)  # --noise_type=auto: as given
    assert code == 0, out[-3000:]
    assert "Clean labels are known for 8 of 16 training examples" in out
    assert "train_verified_fraction: 0.5000" in out and "realised noise rate" in out
    assert os.path.exists(tmp_path / "run" / "metrics.json")
