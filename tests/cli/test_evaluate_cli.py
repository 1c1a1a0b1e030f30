"""`medwss evaluate`: tiny NIfTI cases end to end; failures reported per case; config file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medwss.cli.main import main
from medwss.config import load_config
from medwss.eval.runner import EvaluateConfig
from medwss.io import load_volume, save_nifti

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def make_cases(tmp_path: Path) -> tuple[Path, Path]:
    """Three cases on 16x16x6 grids (two with a lesion), predictions for all, one on a shifted grid."""
    preds = tmp_path / "preds"
    rows = []
    for i, (site, lesion) in enumerate([("a", True), ("b", False), ("b", True)]):
        mask = np.zeros((16, 16, 6), dtype=np.uint8)
        prob = np.full((16, 16, 6), 0.05, dtype=np.float32)
        prob[4:8, 4:8, 2:4] = 0.9 if lesion else 0.3
        if lesion:
            mask[4:8, 4:8, 2:4] = 1
        save_nifti(mask, tmp_path / f"case{i}_mask.nii.gz", affine=AFFINE)
        affine = AFFINE.copy()
        if i == 2:
            affine[0, 3] = 5.0  # another grid: reported, not evaluated
        save_nifti(prob, preds / f"case{i}.nii.gz", affine=affine)
        rows.append(
            {"case_id": f"case{i}", "patient_id": f"p{i}", "site": site, "modality": "MR",
             "image": f"case{i}_mask.nii.gz", "mask": f"case{i}_mask.nii.gz", "meta_gt": f"case{i}_mask.nii.gz"}
        )  # fmt: skip
    rows.append({**rows[0], "case_id": "case3", "patient_id": "p3"})  # no prediction file
    rows.append(
        {
            **rows[0],
            "case_id": "case4",
            "patient_id": "p4",
            "image": "gone.nii.gz",
            "mask": "gone.nii.gz",
            "meta_gt": "gone.nii.gz",
        }
    )
    save_nifti(np.zeros((16, 16, 6), np.float32), preds / "case4.nii.gz", affine=AFFINE)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest, preds


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_end_to_end_reports_bad_cases_and_evaluates_the_others(tmp_path, capsys):
    manifest, preds = make_cases(tmp_path)
    out = tmp_path / "eval"
    argv = ["evaluate", str(manifest), "--predictions", str(preds), "--out", str(out)]
    assert main([*argv, "--group-by", "site", "--n-boot", "50", "--quiet"]) == 3  # 3 of 5 cases failed
    names = ("cases.csv", "detections.csv", "failures.csv", "summary.json", "summary.md", "pr_froc.png", "run.json")
    assert all((out / name).is_file() for name in names)
    cases = read_csv(out / "cases.csv")
    assert [c["case_id"] for c in cases] == ["case0", "case1"]
    assert float(cases[0]["dice"]) == pytest.approx(1.0) and cases[0]["label"] == "1"
    assert float(cases[1]["case_score"]) == pytest.approx(0.3) and cases[1]["empty_agree"] == "True"
    failures = {f["case_id"]: f["message"] for f in read_csv(out / "failures.csv")}
    assert set(failures) == {"case2", "case3", "case4"}
    assert "affine" in failures["case2"] and "no prediction" in failures["case3"] and "gone" in failures["case4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 5 and summary["n_evaluated"] == 2
    assert [r["group"] for r in summary["summary"]] == ["a", "b", "all"]
    overall = summary["summary"][-1]
    assert overall["auroc"] == 1.0 and overall["ap"] == 1.0 and overall["ranking"] == 1.0
    assert summary["summary"][0]["auroc"] is None  # one class in site a: NaN written as null
    assert summary["config"]["group_by"] == "site"
    md = (out / "summary.md").read_text()
    assert "| all | 2 | 1 |" in md and "case2" in md and "IoU > 0.1" in md
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "evaluate" and run["metrics"]["n_failed"] == 3
    assert "failed: case2" in capsys.readouterr().out


def test_evaluate_threshold_mode_labels_and_config(tmp_path):
    manifest, preds = make_cases(tmp_path)
    out = tmp_path / "eval"
    argv = ["evaluate", str(manifest), "--predictions", str(preds), "--out", str(out), "--quiet"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: threshold\nthreshold: 0.5\nn_boot: 0\ngt_labels: [2]\n")
    assert main([*argv, "--config", str(cfg), "--column", "meta_gt", "--group-by", "meta_gt"]) == 3
    cases = read_csv(out / "cases.csv")  # label 2 is absent: every case is negative
    assert [c["label"] for c in cases] == ["0", "0"] and cases[0]["n_candidates"] == "1"
    assert json.loads((out / "run.json").read_text())["config"]["mode"] == "threshold"
    assert len(json.loads((out / "summary.json").read_text())["summary"]) == 3  # two meta_gt values and all


def test_evaluate_with_no_case_evaluated_exits_2(tmp_path, capsys):
    manifest, _ = make_cases(tmp_path)
    empty = tmp_path / "none"
    empty.mkdir()
    out = tmp_path / "eval"
    assert main(["evaluate", str(manifest), "--predictions", str(empty), "--out", str(out), "--quiet"]) == 2
    assert len(read_csv(out / "failures.csv")) == 5 and not (out / "summary.md").exists()
    assert main(["evaluate", str(manifest), "--predictions", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_shipped_config_validates():
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs" / "evaluate.yaml", EvaluateConfig)
    assert cfg == EvaluateConfig()


def test_prediction_on_real_ct_grid(tmp_path, real):
    """The real CT's kidney map as ground truth; a prediction on its grid scores Dice 1."""
    seg = load_volume(real / "volumes" / "example_seg.nii.gz")
    kidneys = np.isin(seg.array, [2, 3])
    save_nifti(seg.with_array(kidneys.astype(np.float32)), tmp_path / "preds" / "ct.nii.gz")
    manifest = tmp_path / "m.csv"
    path = real / "volumes" / "example_seg.nii.gz"
    manifest.write_text(f"case_id,patient_id,site,modality,image,mask\nct,p,s,CT,{path},{path}\n")
    out = tmp_path / "eval"
    argv = ["evaluate", str(manifest), "--predictions", str(tmp_path / "preds"), "--out", str(out)]
    assert main([*argv, "--gt-labels", "2", "3", "--n-boot", "0", "--quiet"]) == 0
    (case,) = read_csv(out / "cases.csv")
    assert float(case["dice"]) == 1.0 and case["n_gt_lesions"] == "2" and case["n_tp"] == "2"
