"""The pseudo-label benchmark runs in quick mode and reports every method and the segmenter stage."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "pseudo_labels.py"


@pytest.mark.slow
def test_pseudo_labels_quick(tmp_path):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    res = json.loads((tmp_path / "pseudo_labels_quick.json").read_text())
    assert "phantom" in res["datasets"]
    for ds in res["datasets"].values():
        methods = {r["method"] for r in ds["quality"]}
        assert {"cam", "box", "box+random_walker", "dhr", "fuse", "par", "cpal", "agmm", "dupl"} <= methods
        assert all(0 <= r["coverage"] <= 1 for r in ds["quality"])
        assert {r["labels"] for r in ds["segmenter"]} >= {"full", "cam"}
        assert 0 < ds["fuse_tau"] < 1
    assert "| box+random_walker |" in (tmp_path / "pseudo_labels_quick.md").read_text()
