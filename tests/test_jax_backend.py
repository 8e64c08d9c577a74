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
# Backend-neutral tests of the other files, re-run as they are on JAX.
NEUTRAL = [
    "test_early_learning.py::test_one_step_moves_logits_by_the_closed_form_gradient",
    "test_early_learning.py::test_keras_file_reloads_with_its_targets",
    "test_early_learning.py::test_training_without_ids_is_an_error_and_evaluate_ignores_the_penalty",
    "test_losses.py::test_value_matches_closed_form",
    "test_losses.py::test_get_config_round_trip",
    "test_callbacks.py::test_emphasis_warmup_trains_flat_then_with_the_configured_emphasis",
    "test_callbacks.py::test_a_model_saved_at_any_epoch_reloads_with_the_loss_that_trained_it",
    "test_losses.py::test_incompatible_shapes_are_errors",
    "test_losses.py::test_keras_file_round_trip_without_custom_objects",
    "test_weighting.py::test_weighting_closed_forms",
    "test_weighting.py::test_beta_density_recovers_cce_mae_gce",
    "test_models.py::test_bad_target_dict_raises",
    "test_models.py::test_dm_fits_clean_but_not_noisy_digits_while_cce_memorises",
    "test_models.py::test_fit_metrics_exact_over_two_batches",
    "test_models.py::test_fit_ratios_equal_fit_statistics_and_omit_empty_subsets[fit-no_noisy]",
    "test_models.py::test_fit_ratios_equal_fit_statistics_and_omit_empty_subsets"
    "[evaluate-no_clean]",
    "test_models.py::test_keras_imae_loss_and_compiled_metrics",
    "test_models.py::test_mixed_float16_scales_the_loss",
    "test_models.py::test_one_hot_and_column_labels_give_same_metrics",
    "test_models.py::test_train_step_matches_plain_keras_and_honours_sample_weight",
    "test_models.py::test_without_clean_labels_fit_metrics_absent",
]


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
               os.path.join(TESTS, "jax_checks.py"), *(os.path.join(TESTS, t) for t in NEUTRAL)]
    proc = subprocess.run(command, env=env, cwd=os.path.dirname(TESTS), capture_output=True,
                          text=True, timeout=1200)
    report = proc.stdout[-8000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, report
