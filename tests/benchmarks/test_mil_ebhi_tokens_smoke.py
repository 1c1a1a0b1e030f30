"""The EBHI token-heatmap benchmark runs in quick mode on the real tiles and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "mil_ebhi_tokens.py"


@pytest.mark.slow
def test_mil_ebhi_tokens_quick(real, tmp_path):
    if not (real / "histo" / "ebhi" / "manifest.csv").exists():
        pytest.skip("EBHI tiles not found under the real-data folder")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--encoders", "stats", "resnet18_random"]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "mil_ebhi_tokens_quick.json").read_text())
    assert res["n"] == {"train": 8, "val": 8, "test": 8, "test_malignant": 4}
    pairs = {(r["encoder"], r["method"]) for r in res["summary"]}
    assert pairs == {
        (e, m) for e in ("stats", "resnet18_random") for m in ("insight", "abmil", "clam_sb", "transmil", "max", "mean")
    } | {("resnet18_random", "gradcam")}  # Grad-CAM needs a CNN: not on the stats encoder
    assert res["encoders"]["stats"]["token_map"] == [78, 7, 7]
    assert res["encoders"]["resnet18_random"]["token_map"] == [256, 7, 7]
    for r in res["runs"]:
        for k in ("dice_val_t", "iou_val_t", "dice_otsu", "iou_otsu"):
            assert 0 <= r[k] <= 1
        assert r["iou_val_t"] <= r["dice_val_t"] + 1e-9
        assert r["seconds"] > 0
        if r["method"] != "gradcam":  # the val curve each epoch count is chosen on
            assert len(r["curve"]) == r["epochs_run"] >= 1 and "val_loss" in r["curve"][0]
    # INSIGHT's heatmap comes from a grid twin with the same weights: same tile probabilities
    assert all(r["twin_prob_gap"] < 1e-4 for r in res["runs"] if r["method"] == "insight")
    whole = res["whole_tile"]
    assert 0 < whole["dice"] <= 1 and whole["iou"] <= whole["dice"]
    md = (tmp_path / "mil_ebhi_tokens_quick.md").read_text()
    assert "| stats | insight |" in md and "whole tile (reference)" in md and "MIL lr 0.0003" in md
    assert res["lr"] == 0.0003  # the library default (MILTrainConfig.lr)


def test_mil_ebhi_tokens_missing_data(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "mil_ebhi_tokens_quick.json").exists()
