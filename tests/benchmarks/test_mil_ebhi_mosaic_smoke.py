"""The EBHI mosaic MIL benchmark runs in quick mode on the real tiles: slides → tiles → bags → MIL → scores."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "mil_ebhi_mosaic.py"


@pytest.mark.slow
def test_mil_ebhi_mosaic_quick(real: Path, tmp_path: Path) -> None:
    if not (real / "histo" / "ebhi" / "manifest.csv").exists():
        pytest.skip(f"EBHI tiles not found under {real}")
    mod = runpy.run_path(str(BENCH))
    argv = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](argv) == 0
    res = json.loads((tmp_path / "mil_ebhi_mosaic_quick.json").read_text())
    assert {(r["encoder"], r["aggregator"]) for r in res["summary"]} == {
        (e, a) for e in ("stats", "resnet18") for a in ("insight", "abmil")
    }
    for r in res["runs"]:
        assert 0 <= r["auc"] <= 1 and 0 <= r["dice"] <= 1 and 0 <= r["tile_dice"] <= 1 and 0 <= r["froc"] <= 1
        assert r["n_test"] == 4 and r["n_dice"] == 2
    d = res["data"]
    assert [d[s]["slides"] for s in ("train", "val", "test")] == [4, 2, 4]
    assert all(d[s]["bag_tiles_mean"] > 10 for s in d)  # 16 tiles per slide, a few may lack tissue
    ref = res["reference_dice"]
    assert 0.5 < ref["oracle_pixel"] <= 1 and 0 < ref["all_pixel"] < ref["oracle_pixel"] and 0 < ref["all_tile"] < 1
    assert 0 <= res["encoders"]["stats"]["tile_probe"]["auc_lesion_vs_rest"] <= 1
    assert res["encoders"]["stats"]["heatmap_files"] == {"done": 4, "failed": 0}
    assert "| stats | insight |" in (tmp_path / "mil_ebhi_mosaic_quick.md").read_text()
    assert list((tmp_path / "work" / "runs" / "stats_insight_0" / "heatmaps").glob("*_heatmap.geojson"))
