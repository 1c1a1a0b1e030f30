"""Benchmarks smoke-run in their quick mode and write their JSON and Markdown."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_slide_read_quick(tmp_path):
    mod = runpy.run_path(str(BENCH / "bench_slide_read.py"))
    assert mod["main"](["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "slide_read_quick.json").read_text())
    readers = {r["reader"]: r for r in res["results"]}
    assert set(readers) == {"openslide bare loop", "medwss Slide (openslide)", "medwss Slide (tifffile)"}
    assert readers["openslide bare loop"]["ratio_to_bare_openslide"] == 1.0
    assert all(r["tiles_per_s"] > 0 for r in res["results"])
    assert "| reader |" in (tmp_path / "slide_read_quick.md").read_text()
