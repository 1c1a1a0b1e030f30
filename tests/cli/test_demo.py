"""`medwss demo` with tiny settings writes the HTML report with its metrics and overlays."""

from __future__ import annotations

import json

import pytest

from medwss.cli.main import main


@pytest.mark.slow
def test_demo_tiny_writes_report(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-wsi", "8", "--n-ct", "6", "--epochs", "2", "--aggregators", "insight"]
    assert main(args) == 0
    html = (out / "report.html").read_text()
    assert "insight" in html and "data:image/png;base64" in html
    rows = json.loads((out / "demo_summary.json").read_text())
    assert [(r["data"], r["aggregator"]) for r in rows] == [("wsi", "insight"), ("ct", "insight")]
    assert any((out / "heatmaps" / "wsi_insight").glob("*_heatmap.tif"))
    assert any((out / "heatmaps" / "ct_insight").glob("*_heatmap.nii.gz"))
