"""The self-contained HTML report."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from medwss.viz.overlay import heatmap_overlay_png
from medwss.viz.report import format_value, metrics_table_html, write_report


def test_format_value() -> None:
    assert format_value(0.95312) == "0.953"
    assert format_value(12345.6) == "1.235e+04"
    assert format_value(7) == "7"
    assert format_value(float("nan")) == "–" and format_value(None) == "–"


def test_metrics_table_folds_intervals() -> None:
    rows = [
        {"model": "insight", "auc": 0.95312, "auc_lo": 0.9101, "auc_hi": 0.98712, "n": 40},
        {"model": "abmil", "auc": 0.9, "auc_lo": float("nan"), "auc_hi": float("nan"), "dice": 0.5},
    ]
    table = metrics_table_html(rows)
    assert "<th>auc_lo</th>" not in table
    assert "0.953 [0.910, 0.987]" in table
    assert "<td>0.900</td>" in table  # no interval shown when the bounds are NaN
    assert re.findall(r"<th>(\w+)</th>", table) == ["model", "auc", "n", "dice"]


def test_report_is_self_contained(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, 40), 0, 1)
    y3 = np.arange(40) % 3
    p3 = np.eye(3)[y3] * 0.7 + 0.1
    overlay = heatmap_overlay_png(
        np.full((40, 60, 3), 255, np.uint8), rng.random((10, 15)), tmp_path / "overlays" / "case_1.png"
    )
    path = write_report(
        tmp_path / "report.html",
        "CAMELYON <demo>",
        [{"model": "insight", "auc": 0.95312, "auc_lo": 0.9101, "auc_hi": 0.98712, "accuracy": 0.875}],
        {"insight": (y, p), "three-class": (y3, p3), "one-class": (np.ones(5, int), np.ones(5))},
        [("case_1 heatmap", overlay), ("case_2 heatmap", tmp_path / "missing.png")],
        notes="Trained on site A.\n\nTested on site B & C.",
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "CAMELYON &lt;demo&gt;" in text and "site B &amp; C" in text
    assert "0.953 [0.910, 0.987]" in text and "0.875" in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 2  # the ROC figure and the overlay
    assert base64.b64decode(images[1]) == overlay.read_bytes()
    assert base64.b64decode(images[0]).startswith(b"\x89PNG")
    assert "image not found" in text and "missing.png" in text
    assert text.count("not drawn") == 1 and "one-class: a ROC curve needs both" in text
    assert not re.search(r'(src|href)="(https?:|/)', text)  # nothing outside the file
    assert list(tmp_path.glob(".report.html*")) == []  # no temporary left behind


def test_report_without_curves_or_images(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.html", "Empty", [], {}, [])
    text = path.read_text(encoding="utf-8")
    assert "No metrics." in text and "base64" not in text
