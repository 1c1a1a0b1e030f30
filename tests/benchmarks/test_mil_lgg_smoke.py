"""The LGG slice-bag MIL benchmark runs in quick mode on the real MRI and writes its tables."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "mil_lgg.py"


@pytest.mark.slow
def test_mil_lgg_quick(real, tmp_path):
    if not (real / "mri" / "lgg" / "manifest.csv").is_file():
        pytest.skip("LGG data not found")
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(real), "--out", str(tmp_path), "--cache", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "stats_t32_c1.pkl").is_file()  # embedded bags kept for later runs
    res = json.loads((tmp_path / "mil_lgg_quick.json").read_text())
    assert {r["aggregator"] for r in res["summary"]} == {"insight", "abmil", "max", "flair_tile"}
    groups = {r["group"] for r in res["summary"]}
    assert {"val", "in-site", "test:DU", "test:HT", "held-out:CS"} <= groups
    trained = [r for r in res["runs"] if r["aggregator"] != "flair_tile"]
    pairs = {(q["a"], q["b"], q["group"]) for q in res["paired"]}  # INSIGHT − ABMIL / − FLAIR, same slices
    assert {("insight", "abmil", "held-out:CS"), ("insight", "flair_tile", "in-site")} <= pairs
    assert all(q["auc_diff_lo"] <= q["auc_diff"] <= q["auc_diff_hi"] for q in res["paired"])
    assert "insight − abmil" in (tmp_path / "mil_lgg_quick.md").read_text()
    assert all(len(r["curve"]) == r["epochs_run"] and "val_auc" in r["curve"][0] for r in trained)
    for r in res["summary"]:
        assert 0 <= r["auc_mean"] <= 1 and 0 <= r["dice_mean"] <= 1
    assert not res["failures"] and all(c["seconds_per_epoch"] > 0 for c in res["cost"])
    md = (tmp_path / "mil_lgg_quick.md").read_text()
    assert "| stats | insight |" in md and "held-out-site Dice" in md
    # --val-only: the val patients alone (settings are chosen on them), no test figures
    assert mod["main"](["--quick", "--val-only", "--data", str(real), "--out", str(tmp_path),
                        "--cache", str(tmp_path / "c")]) == 0  # fmt: skip
    val = json.loads((tmp_path / "mil_lgg_quick_val.json").read_text())
    assert {r["group"] for r in val["summary"]} == {"val"}
    assert "val AUC" in (tmp_path / "mil_lgg_quick_val.md").read_text()
    # --merge pools runs made in parallel (one process per held-out site) into one table
    other = {**res, "holdout": ["DU"], "runs": [{**r, "holdout": "DU"} for r in res["runs"]]}
    (tmp_path / "du.json").write_text(json.dumps(other))
    out = tmp_path / "merged"
    assert mod["main"](["--merge", str(tmp_path / "mil_lgg_quick.json"), str(tmp_path / "du.json"),
                        "--out", str(out)]) == 0  # fmt: skip
    merged = json.loads((out / "mil_lgg.json").read_text())
    assert merged["holdout"] == ["CS", "DU"] and len(merged["runs"]) == 2 * len(res["runs"])
    text = (out / "mil_lgg.md").read_text()
    assert "Held-out site CS" in text and "Held-out site DU" in text and "| DU | stats | insight |" in text
    assert mod["main"](["--merge", str(tmp_path / "nope.json"), "--out", str(out)]) == 2


def test_mil_lgg_missing_data(tmp_path, capsys):
    mod = runpy.run_path(str(BENCH))
    assert mod["main"](["--quick", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "manifest.csv" in capsys.readouterr().err
