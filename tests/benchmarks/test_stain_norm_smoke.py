"""The stain normalisation benchmark runs in quick mode on a few EBHI tiles and compares both normalisers."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "stain_norm.py"


def test_stain_norm_quick(tmp_path, real):
    if not (real / "histo" / "ebhi" / "manifest.csv").exists():
        pytest.skip("EBHI tiles absent")
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(real), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "stain_norm_quick.json").read_text())
    assert res["tiles"] == 6 and res["quick"] is True
    assert all(v > 0 for v in res["ms_per_tile"].values())
    assert 0 <= res["he_order_swapped_fraction"] <= 1 and res["mad_between_outputs"] >= 0
    assert "MONAI NormalizeHEStains" in (tmp_path / "stain_norm_quick.md").read_text()
