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
    assert [r["setting"] for r in res["summary"]] == ["pce", "agmm", "agmm_reach", "reach", "reach_size"]
    assert res["n_train"] == 2 and res["n_test"] == 2 and len(res["per_case"]) == 5 * 2
    for r in res["per_case"]:
        assert all(0.0 <= r[f"dice_{c}"] <= 1.0 for c in ("RV", "myocardium", "LV"))
    assert {"agmm-pce", "agmm_reach-reach"} <= set(res["paired"]) and len(res["pseudo_quality"]) == 4
    assert all(0.0 <= q["coverage"] <= 1.0 for q in res["pseudo_quality"])
    by = {q["setting"]: q for q in res["pseudo_quality"]}  # the far-field background: fewer pixels abstain
    assert by["agmm_reach"]["coverage"] >= by["agmm"]["coverage"]
    assert res["size_loss"] == "partial_ce" and "reach_size-reach" in res["paired"]
    labels = sorted((tmp_path / "work" / "agmm_labels" / "seed_0" / "labels").glob("*.nii.gz"))
    assert len(labels) == 2 and (tmp_path / "work" / "agmm_labels" / "seed_0" / "model.pt").is_file()
    assert len(list((tmp_path / "work" / "agmm_labels" / "seed_0" / "labels_reach").glob("*.nii.gz"))) == 2
    md = (tmp_path / "pseudo_acdc_quick.md").read_text()
    assert "| AGMM pseudo-labels, ce_dice |" in md and "(no AGMM)" in md and "Dice LV" in md
    # --resume keeps the finished seeds of a run of the same configs (nothing retrained) ...
    prev = tmp_path / "pseudo_acdc_quick.json"
    assert mod["main"]([*args, "--resume", str(prev), "--tag", "res"]) == 0
    again = json.loads((tmp_path / "pseudo_acdc_quick_res.json").read_text())
    assert again["summary"] == res["summary"] and again["runs"] == res["runs"]
    # --merge combines runs of other settings (here the same run twice: each setting once)
    assert mod["main"]([*args, "--merge", str(prev), str(prev), "--tag", "merged"]) == 0
    merged = json.loads((tmp_path / "pseudo_acdc_quick_merged.json").read_text())
    assert merged["summary"] == res["summary"] and len(merged["per_case"]) == len(res["per_case"])
    # ... and refuses one whose configs differ, naming the file and the field
    res["pseudo_config"]["iterations"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(res))
    with pytest.raises(SystemExit, match=r"bad\.json: its pseudo_config differs .* iterations"):
        mod["main"]([*args, "--resume", str(bad), "--tag", "bad"])
