"""Smoke runs of every benchmark script at tiny sizes (flags), in a subprocess as a user runs
them: they start, measure and print a row of their table (a benchmark that catches an
error and prints "failed" fails here). The numbers are not checked. A benchmark whose docs
block already runs it at tiny size and checks a row (``IN_DOCS``) is smoke-run there."""

import importlib.util
import os
import subprocess
import sys

import pytest

import test_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# script -> (tiny flags, a line of the output, slow)
RUNS = {
    "loss_overhead.py": (["--batches=8", "--classes=10", "--modes=eager", "--rounds=1",
                          "--iters=1", "--step_batch=8", "--step_iters=1"], "| eager | 8 | 10 |",
                         False),
    "pipeline_throughput.py": (["--num_images=64", "--batch_size=16", "--epochs=1",
                                "--warmup_batches=1", "--model=mlp", "--steps=1"],
                               "ratio pipeline / model:", False),
    "train_step.py": (["--depth=20", "--batch_size=4", "--image_size=8", "--steps=1",
                       "--warmup=1", "--repeats=1", "--strategies=default", "--jit=false"],
                      "default    False", True),
    "monitor_overhead.py": (["--train=64", "--test=32", "--rounds=1", "--batch_size=32"],
                            "with FitMonitor:", False),
    "dm_stability.py": (["--datasets=digits", "--recipes=adam_cosine", "--losses=dm",
                         "--seeds=1", "--epochs=2", "--warmup_epochs=1", "--warmup_lam=1",
                         "--input_dropout=0.2", "--noise_type=asymmetric"],
                        "digits   adam_cosine_in0.2_warm1_lam1 dm", False),
    "jax_train_step.py": (["--depth=20", "--batch_size=4", "--image_size=8", "--steps=1",
                           "--warmup=1", "--repeats=1", "--tf_jit=false"],
                          "JAX speed relative to", True),
    "dm_classdep_study.py": (["--out=.", "--datasets=digits", "--noise_types=confusion",
                              "--variants=dm_elr,forward", "--seeds=0", "--epochs=2"],
                             "| digits | confusion | forward |", True),
    "study_data.py": (["--out=.", "--only=tabular"], "tabular.npz", False),
    "finetune_study.py": (["--out=.", "--pretrain_epochs=1", "--epochs=2",
                           "--losses=dm_reject0", "--noises=pairflip", "--starts=pretrained"],
                          "| pairflip | pretrained | dm_reject0 |", True),
    "finetune_epoch.py": (["--examples=64", "--batch_size=32", "--repeats=1"], "| finetune |",
                          True),
    "wrong_labels_in_p.py": (["--epochs=2", "--every=1", "--noise_type=instance",
                              "--elr_lambda=3", "--sticky_reject"], "| 1 | 0.",
                             False),
    "selection_rules.py": (["--runs=."], "runs with both scores: 0", False),
    "streaming.py": (["--num_images=80", "--size_ratio=2", "--batch_size=16", "--steps=1",
                      "--in_memory=false", "--model=MobileNetV3Small", "--image_size=40"],
                     "ratio streamed pipeline / model:", True),
}
NEEDS = {"jax_train_step.py": "jax"}
# script -> the docs page of its smoke run: a block that runs it at tiny size and expects a row
# of its table (tests/test_docs.py's `expect` directive), so the run is not made twice
IN_DOCS = {"label_issues_vs_cleanlab.py": "docs/label_issues.md"}


def test_every_benchmark_has_a_smoke_run():
    assert set(RUNS) | set(IN_DOCS) == {n for n in os.listdir(os.path.join(ROOT, "benchmarks"))
                                        if n.endswith(".py")}
    assert not set(RUNS) & set(IN_DOCS)
    for name, page in IN_DOCS.items():
        runs = [test_docs._apply(p.values[1], p.values[2]) for p in test_docs._blocks()
                if p.id.startswith(f"{page}:")]
        assert any(f"benchmarks/{name} " in body and "--epochs=1" in body and expected
                   for body, expected in runs), (name, page)


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if slow else [])
    for name, (_, _, slow) in RUNS.items()])
def test_benchmark_runs_at_tiny_size(name, tmp_path):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"needs {NEEDS[name]}")
    args, expected, _ = RUNS[name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert expected in proc.stdout, output[-3000:]  # a line of its table
    assert "failed" not in proc.stdout, output[-3000:]
