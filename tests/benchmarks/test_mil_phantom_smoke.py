"""The MIL phantom benchmark runs in quick mode and reports AUC, Dice and cost per aggregator."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "mil_phantom.py"


@pytest.mark.slow
def test_mil_phantom_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    res = json.loads((tmp_path / "mil_phantom_quick.json").read_text())
    assert {r["aggregator"] for r in res["summary"]} == {"insight", "abmil"}
    assert all(0 <= r["dice_mean"] <= 1 for r in res["summary"])
    assert all(c["seconds_per_step"] is not None and c["seconds_per_step"] > 0 for c in res["cost"])
    assert "| insight |" in (tmp_path / "mil_phantom_quick.md").read_text()
    shipped = yaml.safe_load((BENCH.parents[1] / "configs" / "mil_insight.yaml").read_text())["aggregator_kwargs"]
    assert mod["shipped_kwargs"]("insight") == shipped  # the cost table measures the shipped configs
    assert mod["main"](["--quick", "--cost-only", "--aggregators", "max", "--out", str(tmp_path)]) == 0
    cost = json.loads((tmp_path / "mil_phantom_cost_quick.json").read_text())["cost"]
    assert [c["aggregator"] for c in cost] == ["max"] and cost[0]["seconds_per_step"] > 0
