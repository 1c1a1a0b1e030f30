"""The active-learning benchmark runs in quick mode: curves, plots and the k-center speed table."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "al_curves.py"


@pytest.mark.slow
def test_al_curves_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    res = json.loads((tmp_path / "al_curves_quick.json").read_text())
    assert {s["strategy"] for s in res["phantom"]["summary"]} == {"random", "contrastive_coreset"}
    assert {s["mode"] for s in res["phantom"]["summary"]} == {"full", "scribble"}
    assert res["kcenter"]["same_picks"] and res["kcenter"]["speedup_same_budget"] > 1
    assert (tmp_path / "al_curves_quick.png").exists() and (tmp_path / "al_curves_real_quick.png").exists()
    assert "| contrastive_coreset |" in (tmp_path / "al_curves_quick.md").read_text()
