"""The ACDC AGMM-pseudo-label benchmark runs in quick mode on the real scribbles and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "pseudo_acdc.py"


@pytest.mark.slow
def test_pseudo_acdc_quick(real, tmp_path):
    if not (real / "mri" / "acdc" / "manifest.csv").is_file():
        pytest.skip(f"ACDC data not found under {real}")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "pseudo_acdc_quick.json").read_text())
    assert [r["setting"] for r in res["summary"]] == ["pce", "agmm"]
    assert res["n_train"] == 2 and res["n_test"] == 2 and len(res["per_case"]) == 2 * 2
    for r in res["per_case"]:
        assert all(0.0 <= r[f"dice_{c}"] <= 1.0 for c in ("RV", "myocardium", "LV"))
    assert "agmm-pce" in res["paired"] and len(res["pseudo_quality"]) == 1
    assert 0.0 <= res["pseudo_quality"][0]["coverage"] <= 1.0
    labels = sorted((tmp_path / "work" / "agmm_labels" / "seed_0" / "labels").glob("*.nii.gz"))
    assert len(labels) == 2 and (tmp_path / "work" / "agmm_labels" / "seed_0" / "model.pt").is_file()
    md = (tmp_path / "pseudo_acdc_quick.md").read_text()
    assert "| AGMM pseudo-labels, partial CE |" in md and "Dice LV" in md
