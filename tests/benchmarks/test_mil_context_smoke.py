"""Smoke test: the context benchmark runs end to end in quick mode and writes its tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


@pytest.mark.slow
def test_mil_context_quick(tmp_path) -> None:  # noqa: ANN001
    import mil_context

    assert mil_context.main(["--quick", "--methods", "insight", "max", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "mil_context_quick.json").read_text())
    methods = results["sets"]["default"]["methods"]
    assert {"insight", "insight_gated", "max"} <= set(methods)
    for entry in methods.values():
        assert 0.0 <= entry["summary"]["auc"] <= 1.0 and 0.0 <= entry["summary"]["dice"] <= 1.0
    assert "| insight |" in (tmp_path / "mil_context_quick.md").read_text()
