"""Simulation with an oracle: curves per strategy and mode, 95% intervals over seeds, a plot, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medwss.active import simulate as sim
from medwss.active.plot import plot_curves
from medwss.active.simulate import SimulateConfig, oracle, simulate_from_manifest, summarise
from tests.active.conftest import tiny_config


def test_summarise_t_interval_by_hand():
    rows = [
        {"mode": "full", "strategy": "random", "seed": s, "round": 1, "percent": 1.0, "dice": d}
        for s, d in enumerate([0.4, 0.5, 0.6])
    ]
    (s,) = summarise(rows)
    half = 4.302653 * 0.1 / np.sqrt(3)  # t(0.975, 2) · sd / √n
    assert s["dice_mean"][0] == pytest.approx(0.5) and s["dice_hi"][0] == pytest.approx(0.5 + half, rel=1e-5)


def test_oracle_modes():
    gt = np.zeros((32, 32), np.int64)
    gt[8:20, 8:20] = 1
    cfg = SimulateConfig(al=tiny_config(num_classes=2, classes=[[1]]))
    full, b = oracle(gt, "full", 0, cfg)
    assert b is None and np.array_equal(full, gt)
    weak, bounds = oracle(gt, "scribble", 0, cfg)
    assert (weak == -1).any() and ((weak == 1) <= (gt == 1)).all()
    assert bounds[1].tolist() == pytest.approx([144 * 0.9, 144 * 1.1])


@pytest.mark.slow
def test_simulate_writes_curves_and_resumes(ct_manifest, tmp_path, monkeypatch):
    al = tiny_config(splits=None)
    cfg = SimulateConfig(
        al=al,
        strategies=["random", "coreset"],
        seeds=[0, 1],
        modes=["full", "scribble"],
        rounds=2,
        budget="2",
        pool_splits=["train", "val"],
        test_splits=["test"],
    )
    res = simulate_from_manifest(ct_manifest, cfg, tmp_path, progress=False)
    assert len(res["rows"]) == 2 * 2 * 2 * 2 and len(res["summary"]) == 4
    for s in res["summary"]:
        assert s["seeds"] == [0, 1] and len(s["dice_mean"]) == 2
        assert all(0 <= d <= 1 for d in s["dice_mean"]) and all(
            lo <= m for lo, m in zip(s["dice_lo"], s["dice_mean"], strict=True)
        )
    assert res["rows"][1]["annotated"] == 4 and (tmp_path / "al_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run.json").read_text())["command"] == "al simulate"
    selected = [
        r["selected"] for r in res["rows"] if r["strategy"] == "random" and r["seed"] == 0 and r["mode"] == "full"
    ]
    assert not set(selected[0]) & set(selected[1])

    def boom(*a, **k):
        raise AssertionError("finished runs must be reused")

    monkeypatch.setattr(sim, "run_one", boom)
    again = simulate_from_manifest(ct_manifest, cfg, tmp_path, progress=False)
    assert again["summary"] == res["summary"]


def test_plot_single_seed(tmp_path):
    summary = [
        {
            "mode": "full",
            "strategy": "random",
            "seeds": [0],
            "percent": [1, 2],
            "dice_mean": [0.1, 0.2],
            "dice_lo": [0.1, 0.2],
            "dice_hi": [0.1, 0.2],
        }
    ]
    assert plot_curves(summary, tmp_path / "c.png").stat().st_size > 1000
