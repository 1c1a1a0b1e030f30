"""The parallel tiling benchmark runs in quick mode: both settings, the same bytes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tile_parallel.py"


@pytest.mark.slow
def test_tile_parallel_quick(tmp_path, real):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(real), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "tile_parallel_quick.json").read_text())
    assert [r["workers"] for r in res["runs"]] == [1, 2] and all(r["done"] == 2 for r in res["runs"])
    assert res["same_bytes"] and res["speedup_2_over_1"] > 0
    assert "speed-up" in (tmp_path / "tile_parallel_quick.md").read_text()
