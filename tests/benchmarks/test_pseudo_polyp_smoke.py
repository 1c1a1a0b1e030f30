"""The Kvasir-SEG box benchmark runs in quick mode on the real frames and reports every segmenter and stage."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "pseudo_polyp.py"
DATA = ROOT.parent / "shared" / "data" / "real"


@pytest.mark.slow
def test_pseudo_polyp_quick(tmp_path):
    if not (DATA / "endo" / "polyp" / "manifest.csv").is_file():
        pytest.skip(f"Kvasir-SEG frames not found under {DATA / 'endo' / 'polyp'}")
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(DATA), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "pseudo_polyp_quick.json").read_text())
    assert res["quick"] and res["skipped"] == []
    assert set(res["chosen"]) == {"random_walker", "chan_vese", "otsu", "grabcut"}
    quality = {(r["method"], r["kind"]) for r in res["quality"]}
    top = res["val_best"]["jitter"].split("/")[0]  # the val-best refiner also gets its box-ignore variant
    assert quality == {(m, k) for m in ("box", *res["chosen"], f"{top}+ignore") for k in ("tight", "jitter")}
    for r in res["quality"]:
        assert 0 <= r["dice"] <= 1 and 0 < r["coverage"] <= 1 and r["frame_dice_lo"] <= r["frame_dice_hi"]
    assert {r["method"] for r in res["agmm"]} == {"agmm/point", "agmm/skeleton"}
    labels = {r["labels"] for r in res["segmenter"]}
    assert {"full", "box/tight", "box/jitter", "otsu/jitter", "grabcut/tight", f"{top}+ignore/jitter"} <= labels
    for r in res["segmenter"]:
        assert 0 <= r["dice_lo"] <= r["test_dice"] <= r["dice_hi"] <= 1
        assert ("vs_box" in r) == (r["labels"] not in ("full", "box/tight", "box/jitter"))
    assert "not run" in res["sam"]
    md = (tmp_path / "pseudo_polyp_quick.md").read_text()
    assert "| grabcut | jitter |" in md and "Target" in md


def test_pseudo_polyp_missing_data(tmp_path, capsys):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().out
