"""The COIN LGG benchmark runs in quick mode on the real MRI and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "coin_lgg.py"


@pytest.mark.slow
def test_coin_lgg_quick(real, tmp_path):
    if not (real / "mri" / "lgg" / "manifest.csv").is_file():
        pytest.skip("LGG data not found")
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(real), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "coin_lgg_quick.json").read_text())
    methods = {"coin", "coin@0.25", "gradcam", "layercam", "scorecam", "rise", "occlusion", "cf_blur", "cf_mean_normal"}
    assert set(res["methods"]) == methods
    assert set(res["groups"]) == {"val", "in-site", "held-out:CS"} and res["train_sites"] == ["DU", "HT"]
    for r in res["methods"].values():
        for g in ("in-site", "held-out:CS"):
            assert 0 <= r[g]["iou"] <= r[g]["dice"] <= 1
            assert np.isnan(r[g]["iou_lo"]) or r[g]["iou_lo"] <= r[g]["iou"] <= r[g]["iou_hi"]
    assert res["methods"]["rise"]["fill"] in (0.0, -1.0) and not res["failures"]
    md = (tmp_path / "coin_lgg_quick.md").read_text()
    assert "| coin |" in md and "held-out IoU" in md


def test_coin_lgg_missing_data(tmp_path, capsys):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "manifest.csv" in capsys.readouterr().err
