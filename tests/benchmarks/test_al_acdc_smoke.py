"""The ACDC active-learning benchmark: its resizing keeps scribbles, the schedule and the real-scribble
oracle of the simulation, the projection-head metric option, and a quick run on the real data."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss.active.metric import MetricConfig, _Projected, make_encoder, slice_features
from medwss.active.simulate import SimulateConfig, oracle, round_targets
from medwss.config import load_config
from medwss.embed.pretrain.trainer import ProjectionHead
from medwss.errors import ConfigError
from tests.conftest import ROOT

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "al_acdc.py"


def test_resize_keeps_thin_scribbles_and_labels():
    mod = runpy.run_path(str(BENCH))
    scr = np.full((40, 40, 2), -1, dtype=np.int16)
    scr[10, 5:35, 0] = 2  # a one-pixel myocardium line
    scr[30, 5:35, 0] = 0  # a background line
    out = mod["_resize_volume"](scr, 10, "scribble")
    assert out.shape == (10, 10, 2) and set(np.unique(out[..., 1])) == {-1}
    assert (out[..., 0] == 2).sum() >= 7 and (out[..., 0] == 0).sum() >= 7 and (out[..., 0] == -1).sum() > 50
    lab = np.zeros((40, 40, 1), dtype=np.uint8)
    lab[:20] = 3
    assert np.array_equal(np.unique(mod["_resize_volume"](lab, 10, "label")[:5]), [3])


def test_budget_schedule_and_real_scribble_oracle():
    cfg = load_config(ROOT / "configs" / "al_acdc.yaml", SimulateConfig)
    assert cfg.weak_kind == "manifest" and cfg.al.label_spec is not None and cfg.al.num_classes == 4
    assert cfg.al.fuse == {} and cfg.al.metric.temperature == 0.5  # chosen on val patients, 5 seeds (al_acdc_metricval)
    assert round_targets(cfg, 728) == [8, 15, 22, 30, 37, 73, 146]
    assert round_targets(SimulateConfig(rounds=3, budget="2"), 100) == [2, 4, 6]
    with pytest.raises(ConfigError, match="budgets must grow"):
        round_targets(cfg.model_copy(update={"budgets": ["5%", "5%"]}), 100)
    gt = np.array([[0, 1], [2, 3]])
    scribble = np.array([[-1, 1], [-1, -1]])
    lab, bounds = oracle(gt, "scribble", 0, cfg, scribble)
    assert lab is scribble and bounds is not None and bounds.shape == (4, 2)


def test_projection_head_features():
    torch.set_num_threads(1)
    thumbs = np.random.default_rng(0).uniform(size=(4, 1, 16, 16)).astype(np.float32)
    cfg = MetricConfig(select_features="projection", projection_dim=16, projection_hidden=32)
    enc = make_encoder(cfg)
    wrapped = _Projected(enc, ProjectionHead(enc.embed_dim, 32, 16).eval())
    feats = slice_features(wrapped, thumbs, "cpu")  # what selection sees with select_features: projection
    assert wrapped.embed_dim == 16 and feats.shape == (4, 16) and np.allclose(np.linalg.norm(feats, axis=1), 1)


@pytest.mark.slow
def test_al_acdc_quick(real, tmp_path):
    if not (real / "mri" / "acdc" / "manifest.csv").is_file():
        pytest.skip(f"ACDC data not found under {real}")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "al_acdc_quick.json").read_text())
    curves = res["curves"]
    assert {s["strategy"] for s in curves["boot_summary"]} == {"random", "coreset", "contrastive_coreset"}
    assert {s["mode"] for s in curves["boot_summary"]} == {"full", "scribble"}
    assert curves["annotated_per_round"] == [1, 2] and curves["test_volumes"] == 2
    for row in curves["rows"]:
        assert len(row["dice_per_volume"]) == 2 and 0.0 <= row["dice"] <= 1.0
    assert len(res["ablation"]["variants"]) == 4  # random, coreset, two metric variants in quick mode
    assert all(0 <= v["coverage"][-1]["foreground_fraction"] <= 1 for v in res["ablation"]["variants"])
    assert (tmp_path / "al_acdc_quick.png").stat().st_size > 0
    assert "contrastive_coreset − random" in (tmp_path / "al_acdc_quick.md").read_text()
