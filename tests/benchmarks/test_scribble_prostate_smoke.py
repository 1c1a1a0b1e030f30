"""The scribble prostate benchmark runs in quick mode and writes its table and targets."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "scribble_prostate.py"


@pytest.mark.slow
def test_scribble_prostate_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    res = json.loads((tmp_path / "scribble_prostate_quick.json").read_text())
    assert len(res["toy"]) == 4 and all(0 <= r["dice"] <= 1 for r in res["toy"])
    settings = {r["setting"] for r in res["mri"]["results"]}
    assert settings == {"weak_size", "weak_pce", "full"}
    assert {r["group"] for r in res["mri"]["results"]} == {"in_domain", "out_of_domain", "all"}
    assert set(res["targets"]) >= {
        "weak_reaches_90pct_of_full",
        "size_above_partial_ce",
        "ensemble_above_single_out_of_domain",
    }
    md = (tmp_path / "scribble_prostate_quick.md").read_text()
    assert "| in_domain | weak_size |" in md and "Targets:" in md
    assert (tmp_path / "work" / "shift" / "report.html").exists()
