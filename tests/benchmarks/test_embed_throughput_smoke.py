"""The embedding throughput benchmark runs in quick mode and reports every path."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "embed_throughput.py"


def test_embed_throughput_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "embed_throughput_quick.json").read_text())
    rates = res["tiles_per_s"]
    assert set(rates) == {"a_medwss_embed", "b_forward_only", "c_monai_patchwsidataset", "d_tissue_and_tiling"}
    assert all(v > 0 for v in rates.values()) and res["tiles"] == 48
    assert res["ratio_a_over_b"] > 0 and "(a)/(b)" in (tmp_path / "embed_throughput_quick.md").read_text()
