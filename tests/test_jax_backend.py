"""The library on the Keras JAX backend: runs ``tests/jax_checks.py`` in a subprocess.

The Keras backend is fixed when ``keras`` is first imported, and this test session runs
TensorFlow (``conftest.py``), so the JAX checks run in a child pytest process with
``KERAS_BACKEND=jax``, on CPU with two host devices (for the ``DataParallel`` check).
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip(
    "jax", reason="JAX is not installed: `pip install -e '.[jax]'` (or '.[test]') to run the "
                  "JAX-backend checks")

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_library_on_the_jax_backend():
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                   + " --xla_force_host_platform_device_count=2").strip(),
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
               os.path.join(TESTS, "jax_checks.py")]
    proc = subprocess.run(command, env=env, cwd=os.path.dirname(TESTS), capture_output=True,
                          text=True, timeout=1200)
    report = proc.stdout[-8000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, report
