"""The LGG cross-institution scribble benchmark runs in quick mode on the real data and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "scribble_lgg.py"


@pytest.mark.slow
def test_scribble_lgg_quick(real, tmp_path):
    if not (real / "mri" / "lgg" / "manifest.csv").is_file():
        pytest.skip(f"LGG data not found under {real}")
    mod = runpy.run_path(str(BENCH))
    args = ["--quick", "--data", str(real), "--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert mod["main"](args) == 0
    res = json.loads((tmp_path / "scribble_lgg_quick.json").read_text())
    assert res["rotations"] == ["CS"] and res["k"] == 2
    assert res["counts"]["CS"] == {"train": 4, "val": 2, "in_site_test": 2, "out_of_site": 2}
    # 3 settings x (2 members + ensemble) x 4 test patients
    assert len(res["per_case"]) == 3 * 3 * 4
    assert all(0.0 <= r["dice"] <= 1.0 for r in res["per_case"])
    assert {r["domain"] for r in res["per_case"] if r["site"] == "CS"} == {"out_of_domain"}
    assert {r["site"] for r in res["per_case"] if r["domain"] == "in_domain"} == {"DU", "HT"}
    rot = res["summary"]["by_rotation"]
    assert [(r["setting"], r["model"]) for r in rot] == [
        (s, m) for s in ("full", "pce", "size") for m in ("single", "ensemble")
    ]
    assert all(r["n_in_domain"] == 2 and r["n_out_of_domain"] == 2 for r in rot)
    assert "size: ensemble − single, out_of_domain" in res["summary"]["paired"]
    md = (tmp_path / "scribble_lgg_quick.md").read_text()
    assert "| CS | circle scribbles, partial CE + size (tag prior) | ensemble |" in md
    assert (tmp_path / "work" / "holdout_CS" / "size" / "member_1" / "model.pt").is_file()
