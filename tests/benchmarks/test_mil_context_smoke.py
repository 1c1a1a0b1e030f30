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
    run = methods["insight"]["runs"][0]  # the per-epoch validation curve is kept (plateau diagnosis)
    assert len(run["history"]) == run["epochs_run"] >= 2 and "val_auc" in run["history"][0]


def test_mil_context_merge_pools_runs_across_files(tmp_path) -> None:  # noqa: ANN001
    import mil_context

    def part(seed: int, auc: float) -> dict:
        row = {"auc": auc, "auc_lo": 0.0, "auc_hi": 1.0, "dice": 0.5, "dice_lo": 0.4, "dice_hi": 0.6,
               "seconds": 1.0, "seed": seed}  # fmt: skip
        return {"config": {"seeds": [seed], "n": 8}, "sets": {"default": {"phantom": {}, "methods": {
            "max": {"summary": {}, "runs": [row]}}}}}  # fmt: skip

    paths = []
    for seed, auc in ((1, 0.6), (0, 0.4)):
        paths.append(tmp_path / f"s{seed}.json")
        paths[-1].write_text(json.dumps(part(seed, auc)))
    assert mil_context.main(["--merge", *map(str, paths), "--out", str(tmp_path / "out")]) == 0
    merged = json.loads((tmp_path / "out" / "mil_context.json").read_text())
    entry = merged["sets"]["default"]["methods"]["max"]
    assert merged["config"]["seeds"] == [0, 1] and [r["seed"] for r in entry["runs"]] == [0, 1]
    assert entry["summary"]["auc"] == pytest.approx(0.5) and entry["summary"]["auc_sd"] == pytest.approx(0.1)
    assert "| max |" in (tmp_path / "out" / "mil_context.md").read_text()
