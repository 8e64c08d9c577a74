"""Tests for keras_imae.comparison: the loss-comparison protocol."""

import json
import os

import numpy as np
import pytest

from keras_imae import losses, training
from keras_imae.callbacks import TrainingCollapsed
from keras_imae.config import recipe
from keras_imae.run import comparison


@pytest.mark.slow
def test_comparison_protocol_selects_on_noisy_validation(tmp_path, digits):
    base = training.RunConfig(epochs=1, batch_size=128)
    lines = []
    rows = comparison.compare(base, ["cce", "gce"], num_seeds=2, validation_fraction=0.2,
                              selection_seeds=1, work_dir=str(tmp_path), dataset=digits,
                              log=lines.append)
    assert [r["loss"] for r in rows] == ["cce", "gce"]
    assert sum("noisy validation accuracy" in line for line in lines) == 2 * comparison.GRID_SIZE
    assert rows[1]["chosen"] in recipe.DEFAULTS["grids"]["gce"]
    assert "learning_rate" in rows[0]["chosen"]
    for row in rows:  # mean and std over the seeds' own metrics.json
        finals = []
        for seed in range(2):
            with open(os.path.join(tmp_path, f"{row['loss']}_seed{seed}", "metrics.json")) as f:
                finals.append(json.load(f)["test_accuracy_final"])
        assert row["test_accuracy_final"] == pytest.approx((np.mean(finals), np.std(finals)))
    table = comparison.markdown_table(rows, title="t")
    assert table.count("\n| ") == 3 and "± " in table
    with pytest.raises(ValueError, match="num_seeds"):
        comparison.compare(base, ["cce"], num_seeds=0, work_dir=str(tmp_path), dataset=digits)


def test_grids_have_equal_size():
    base = training.RunConfig()
    for model in ("mlp", "cnn"):
        assert {len(comparison.grid_for(name, base, model)) for name in losses.LOSSES} == {
            comparison.GRID_SIZE}
    # DM's grid holds the architecture's run default and its neighbours.
    assert comparison.grid_for("dm", base, "mlp") == [
        dict(lam=1.0, beta=16.0), dict(lam=2.0, beta=8.0), dict(lam=2.0, beta=16.0),
        dict(lam=2.0, beta=32.0)]
    assert dict(lam=2.0, beta=4.0) in comparison.grid_for("dm", base, "cnn")


def test_a_sweep_folder_with_user_files_is_refused_not_deleted(tmp_path, digits):
    mine = tmp_path / "cce_grid0_s0"
    mine.mkdir()
    (mine / "log.csv").write_text("my own log")
    with pytest.raises(ValueError, match="no keras_imae run wrote"):
        comparison.compare(training.RunConfig(epochs=1), ["cce"], num_seeds=1,
                           selection_seeds=1, work_dir=str(tmp_path), dataset=digits)
    assert (mine / "log.csv").read_text() == "my own log"


def _grid_point(name, default):
    """The grid index in a sweep run's folder name (``gce_grid2_s0`` -> 2), else ``default``."""
    return int(name.split("_grid")[1].split("_")[0]) if "_grid" in name else default


def _fake_runs(monkeypatch, corrected):
    """``comparison._run`` replaced by one returning fixed scores: grid point i scores
    noisy 0.5 + 0.1 i (the last wins), T-corrected 0.9 - 0.1 i (the first wins)."""
    def run(base, work_dir, name, dataset, **overrides):
        i = _grid_point(name, 0)
        result = {key: 0.5 for key in comparison._REPORTED}
        result["val_accuracy_final"] = 0.5 + 0.1 * i
        if corrected:
            result["val_accuracy_corrected_final"] = 0.9 - 0.1 * i
        return result
    monkeypatch.setattr(comparison, "_run", run)


@pytest.mark.parametrize("selection, corrected, chosen", [
    ("corrected", True, 0), ("noisy", True, 3),
    ("corrected", False, 3),  # no usable T estimate: plain noisy accuracy
    (None, True, 3),  # the default: plain noisy accuracy, as a run chooses its epoch
])
def test_selection_score(monkeypatch, selection, corrected, chosen):
    _fake_runs(monkeypatch, corrected)
    lines = []
    given = {} if selection is None else {"selection": selection}
    (row,) = comparison.compare(training.RunConfig(), ["gce"], num_seeds=1, work_dir="unused",
                                dataset=None, selection_seeds=1, log=lines.append, **given)
    assert row["chosen"] == recipe.DEFAULTS["grids"]["gce"][chosen]
    table = comparison.selection_table([row]).splitlines()
    assert len(table) == 2 + comparison.GRID_SIZE and table[2 + chosen].count("*") == 1
    # grid point 1: noisy 60%, T-corrected 80% (or unknown), test 50%
    assert ("| 60.0 | 80.0 | 50.0 |" if corrected else "| 60.0 | - | 50.0 |") in table[3]
    by_t = selection == "corrected" and corrected
    assert all(("T-corrected" in line) == by_t and "noisy validation accuracy" in line
               for line in lines[:comparison.GRID_SIZE])
    assert comparison.OVER_CORRECTED not in table  # every corrected score is at most 90%


def test_a_corrected_score_above_one_is_flagged_under_the_table():
    row = {"loss": "dm", "chosen": {"lam": 2.0}, "grid": [
        {"point": {"lam": 2.0}, "noisy": 0.57, "corrected": 1.31, "test_final": 0.95},
        {"point": {"lam": 1.0}, "collapsed": "Training collapsed at epoch 3"}]}
    table = comparison.selection_table([row]).splitlines()
    assert table[2] == "| dm | lam=2 * | 57.0 | 131.0 | 95.0 |"
    assert table[-2:] == ["", comparison.OVER_CORRECTED]
    row["grid"][0]["corrected"] = 1.0
    assert comparison.OVER_CORRECTED not in comparison.selection_table([row])


def test_a_collapsed_grid_point_is_no_candidate(monkeypatch):
    # T-corrected scores 0.9 - 0.1 i: point 0 would win, but its second split collapses.
    _fake_runs(monkeypatch, corrected=True)
    fake = comparison._run

    def run(base, work_dir, name, dataset, **overrides):
        if name == "gce_grid0_s1":
            raise TrainingCollapsed("Training collapsed at epoch 1: point 0")
        return fake(base, work_dir, name, dataset, **overrides)

    monkeypatch.setattr(comparison, "_run", run)
    lines = []
    (row,) = comparison.compare(training.RunConfig(), ["gce"], num_seeds=1, work_dir="unused",
                                dataset=None, selection="corrected", selection_seeds=2,
                                log=lines.append)
    assert row["chosen"] == recipe.DEFAULTS["grids"]["gce"][1]
    assert "collapsed, not a candidate" in lines[0] and "point 0" in row["grid"][0]["collapsed"]
    assert "| collapsed | - | - |" in comparison.selection_table([row]).splitlines()[2]

    def collapse(*args, **kwargs):
        raise TrainingCollapsed("Training collapsed at epoch 1: every point")

    monkeypatch.setattr(comparison, "_run", collapse)
    with pytest.raises(TrainingCollapsed, match="every point"):
        comparison.compare(training.RunConfig(), ["gce"], num_seeds=1, work_dir="unused",
                           dataset=None, selection_seeds=1, log=lines.append)


def test_selection_averages_its_seeds_splits(monkeypatch):
    """Each grid point runs once per selection seed (seed base.seed + s, the corruption
    fixed) and the mean score decides: point 0 wins one split by far, point 1 wins the
    mean."""
    calls = []
    scores = {(0, 0): 0.99, (0, 1): 0.50, (0, 2): 0.50,  # mean 0.663
              (1, 0): 0.70, (1, 1): 0.70, (1, 2): 0.70}  # mean 0.700

    def run(base, work_dir, name, dataset, **overrides):
        i = _grid_point(name, -1)
        calls.append((name, overrides.get("seed"), overrides.get("noise_seed")))
        return {**{key: 0.5 for key in comparison._REPORTED},
                "val_accuracy_final": scores.get((i, overrides["seed"] - 5), 0.0),
                "test_accuracy_final": 0.1 * (overrides["seed"] - 4),
                "val_accuracy_corrected_final": 0.3}
    monkeypatch.setattr(comparison, "_run", run)
    base = training.RunConfig(seed=5, noise_seed=7)
    (row,) = comparison.compare(base, ["gce"], num_seeds=1, work_dir="unused", dataset=None,
                                selection_seeds=3, log=lambda line: None)
    assert row["chosen"] == recipe.DEFAULTS["grids"]["gce"][1]
    assert row["selection_score"] == pytest.approx(0.7)
    selection = [c for c in calls if "_grid" in c[0]]
    assert len(selection) == 3 * comparison.GRID_SIZE
    assert selection[:3] == [("gce_grid0_s0", 5, None), ("gce_grid0_s1", 6, None),
                             ("gce_grid0_s2", 7, None)]  # the noise seed is base's
    assert row["grid"][0]["noisy"] == pytest.approx((0.99 + 0.5 + 0.5) / 3)
    assert row["grid"][0]["test_final"] == pytest.approx(0.2)  # mean of 0.1, 0.2, 0.3
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="selection_seeds"):
            comparison.compare(base, ["gce"], work_dir="unused", dataset=None,
                               selection_seeds=bad)


def test_a_sweep_warmup_applies_to_the_losses_with_an_emphasis(monkeypatch):
    warmups = {}

    def run(base, work_dir, name, dataset, **overrides):
        warmups.setdefault(base.loss, set()).add((base.warmup_epochs, base.pair_margins))
        return {**{key: 0.5 for key in comparison._REPORTED}, "val_accuracy_final": 0.5}
    monkeypatch.setattr(comparison, "_run", run)
    base = training.RunConfig(warmup_epochs=3, pair_margins=True)
    comparison.compare(base, ["dm", "imae", "cce"], num_seeds=1, work_dir="unused",
                       dataset=None, selection_seeds=1, log=lambda line: None)
    assert warmups == {"dm": {(3, True)}, "imae": {(3, True)}, "cce": {(None, None)}}
    # a count no run could use fails before the first run
    warmups.clear()
    with pytest.raises(ValueError, match="Expected < epochs"):
        comparison.compare(training.RunConfig(warmup_epochs=40), ["cce", "dm"],
                           work_dir="unused", dataset=None)
    assert warmups == {}


def test_unknown_selection_refused():
    with pytest.raises(ValueError, match="selection='clean'"):
        comparison.compare(training.RunConfig(), ["gce"], work_dir="unused", dataset=None,
                           selection="clean")


@pytest.mark.parametrize("loss, noise_type, chosen", [
    ("gce", "symmetric", dict(q=0.7)),                  # GeneralizedCrossEntropy's default
    ("dm", "symmetric", dict(lam=2.0, beta=16.0)),      # the MLP's run defaults, whatever
    ("dm", "pairflip", dict(lam=2.0, beta=16.0)),       # the noise
    ("cce", "symmetric", dict(learning_rate=1e-3)),     # the base learning rate
])
def test_a_tie_goes_to_the_run_default(monkeypatch, digits, loss, noise_type, chosen):
    def run(base, work_dir, name, dataset, **overrides):  # every setting scores the same
        return {**{key: 0.5 for key in comparison._REPORTED}, "val_accuracy_final": 0.5,
                "val_accuracy_corrected_final": 0.8}
    monkeypatch.setattr(comparison, "_run", run)
    base = training.RunConfig(noise_type=noise_type, learning_rate=1e-3)
    (row,) = comparison.compare(base, [loss], num_seeds=1, work_dir="unused", dataset=digits,
                                log=lambda line: None)
    assert row["chosen"] == pytest.approx(chosen)
    grid = comparison.grid_for(loss, base, "mlp")  # digits: the MLP
    assert grid.index(row["chosen"]) != 0  # not just the first
