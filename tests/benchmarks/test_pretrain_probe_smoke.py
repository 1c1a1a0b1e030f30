"""The pretraining linear-probe benchmark smoke-runs in its quick mode and writes its JSON and Markdown."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_pretrain_probe_quick(tmp_path):
    mod = runpy.run_path(str(BENCH / "pretrain_probe.py"))
    assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "pretrain_probe_quick.json").read_text())
    assert res["quick"] and res["seeds"] == [100]
    for enc in ("pretrained", "random_init", "stats"):
        for probe in ("all", "16/class"):
            assert 0 <= res["summary"][f"{enc} {probe}"]["mean"] <= 1
    row = res["per_seed"][0]
    assert row["train_tiles"] > 32 and math.isfinite(row["pretrain_loss"][0])
    assert "| encoder |" in (tmp_path / "pretrain_probe_quick.md").read_text()
