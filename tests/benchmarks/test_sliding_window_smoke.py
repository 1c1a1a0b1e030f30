"""The sliding-window benchmark runs in quick mode: memory rows for both methods, agreement figures, files."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "sliding_window.py"


def test_sliding_window_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "sliding_window_quick.json").read_text())
    assert res["quick"] is True and res["roi"] == [32, 32, 32]
    rows = {r["method"]: r for r in res["memory"]}
    assert set(rows) == {"whole", "sliding"}
    for r in rows.values():
        assert r["peak_mb"] >= r["baseline_mb"] > 0 and r["seconds"] > 0 and r["out_shape"] == [2, 64, 64, 48]
    one = res["agreement"]["one_window"]
    assert one["max_abs_diff"] < 1e-5 and one["argmax_agreement"] == 1.0
    assert 0.0 <= res["agreement"]["sliding"]["argmax_agreement"] <= 1.0
    assert "peak − baseline" in (tmp_path / "sliding_window_quick.md").read_text()
