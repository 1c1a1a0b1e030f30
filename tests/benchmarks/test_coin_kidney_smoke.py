"""The COIN kidney benchmark runs in quick mode and reports IoU for COIN and every baseline."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "coin_kidney.py"


@pytest.mark.slow
def test_coin_kidney_quick(tmp_path, real):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    res = json.loads((tmp_path / "coin_kidney_quick.json").read_text())
    methods = {r["method"] for r in res["summary"]}
    assert {"coin@0.25", "coin@val", "gradcam", "layercam", "scorecam", "rise", "occlusion"} <= methods
    assert {r["setting"] for r in res["summary"]} == {"kidney", "phantom"}
    assert all(0 <= r["iou"] <= 1 for r in res["summary"] if r["setting"] == "kidney")
    assert all(
        r["iou"] is None or 0 <= r["iou"] <= 1 for r in res["summary"]
    )  # null (strict JSON for NaN): no tumour in a tiny test split
    assert "| kidney | coin@0.25 |" in (tmp_path / "coin_kidney_quick.md").read_text()
