"""The ACDC scribble benchmark runs in quick mode on the real data and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "scribble_acdc.py"


@pytest.mark.slow
def test_scribble_acdc_quick(real, tmp_path):
    if not (real / "mri" / "acdc" / "manifest.csv").is_file():
        pytest.skip(f"ACDC data not found under {real}")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "scribble_acdc_quick.json").read_text())
    settings = ["full", "pce", "size", "dmpls", "selftrain"]
    assert [r["setting"] for r in res["summary"]] == settings + [f"{s}_lcc" for s in settings]
    assert res["n_test"] == 2 and len(res["per_case"]) == 5 * 2 * 2  # raw and largest component
    for r in res["per_case"]:
        assert all(0.0 <= r[f"dice_{c}"] <= 1.0 for c in ("RV", "myocardium", "LV"))
        assert all(r[f"hd95_{c}"] >= 0.0 for c in ("RV", "myocardium", "LV"))
    assert {"size-pce", "dmpls-pce", "size/full", "selftrain/full", "size_lcc/full_lcc", "size_lcc-size"} <= set(
        res["paired"]
    )
    assert not (tmp_path / "work" / "selftrain" / "seed_0" / "round_0").exists()  # round 0: the size run
    md = (tmp_path / "scribble_acdc_quick.md").read_text()
    assert "| scribbles, DMPLS (Luo et al. 2022) |" in md and "Dice RV" in md
    pred = tmp_path / "work" / "dmpls" / "seed_0" / "predictions"
    assert len(list(pred.glob("*.nii.gz"))) == 2  # label maps on the stored grid
    twin = res | {"seeds": [1], "per_case": [r | {"seed": 1} for r in res["per_case"]],
                  "runs": [r | {"seed": 1} for r in res["runs"]]}  # fmt: skip
    (tmp_path / "twin.json").write_text(json.dumps(twin))
    merge = ["--merge", str(tmp_path / "scribble_acdc_quick.json"), str(tmp_path / "twin.json"), "--name", "m"]
    assert mod["main"]([*merge, "--out", str(tmp_path)]) == 0  # runs made in parallel, one table
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["seeds"] == [0, 1] and len(m["per_case"]) == 40 and len(m["runs"]) == 10
    assert m["summary"][0]["dice_mean_sd"] == 0.0  # the twin seed repeats seed 0's scores
