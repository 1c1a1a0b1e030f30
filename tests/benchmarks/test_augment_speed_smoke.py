"""The augmentation speed benchmark runs in quick mode and reports both paths and their ratio."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "augment_speed.py"


def test_augment_speed_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "augment_speed_quick.json").read_text())
    assert set(res["tiles_per_s"]) == {"a_batched_augment", "b_monai_per_sample"}
    assert all(v > 0 for v in res["tiles_per_s"].values()) and res["tiles"] == 16 and res["quick"] is True
    assert res["ratio_b_over_a"] > 0 and abs(sum(res["monai_step_share"].values()) - 1) < 1e-6
    assert "(b)/(a)" in (tmp_path / "augment_speed_quick.md").read_text()
