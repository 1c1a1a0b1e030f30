"""Per-case evaluation, per-group summaries with bootstrap intervals, and comparison tables."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.eval.segmentation import compare, evaluate_case, paired_difference, summarize, summary_table


def blob_case(lesion: bool, peak: float, shape: tuple[int, ...] = (12, 12, 4)) -> tuple[np.ndarray, np.ndarray]:
    """A probability map with one blob of `peak` at the lesion's place, ground truth with it when `lesion`."""
    prob = np.zeros(shape)
    prob[3:7, 3:7, 1:3] = peak
    gt = np.zeros(shape, dtype=bool)
    if lesion:
        gt[3:7, 3:7, 1:3] = True
    return prob, gt


def test_evaluate_case_values():
    prob = np.zeros((10, 10))
    prob[2:6, 2:6] = 0.8  # 16 voxels predicted
    prob[8, 8] = 0.3  # a weak false candidate
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:6, 2:4] = True  # 8 voxels, all inside the prediction
    row = evaluate_case(prob, gt, spacing=(2.0, 2.0))
    assert row["case_score"] == pytest.approx(0.8) and row["label"] == 1
    assert row["dice"] == pytest.approx(2 * 8 / (16 + 8)) and not row["empty_agree"]
    assert row["n_gt_lesions"] == 1 and row["n_candidates"] == 2 and row["n_tp"] == 1 and row["n_fp"] == 1
    assert row["detections"] == [(0.8, True), (0.3, False)]
    assert row["gt_ml"] == pytest.approx(8 * 4 / 1000) and row["pred_ml"] == pytest.approx(16 * 4 / 1000)
    # boundary to boundary: prediction's ring (12) to truth 0 (x6), 1 (x2), 2 (x4) voxels; truth's (8)
    # to the ring 0 (x6), 1 (x2, its inner column's middle): HD95 2 voxels, ASSD 12 / 20; 2 mm voxels
    assert row["hd95"] == pytest.approx(2 * 2.0) and row["assd"] == pytest.approx(12 / 20 * 2.0)
    assert evaluate_case(prob, gt)["hd95"] == pytest.approx(2.0)  # without spacing: voxels
    assert "hd95" not in evaluate_case(prob, gt, surface=False)
    # threshold mode uses the Dice threshold unless told otherwise: the weak candidate disappears
    row = evaluate_case(prob, gt, mode="threshold")
    assert row["detections"] == [(0.8, True)]


def test_empty_ground_truth_and_empty_prediction_give_dice_one():
    row = evaluate_case(np.full((6, 6, 3), 0.2), np.zeros((6, 6, 3)))
    assert row["dice"] == 1.0 and row["empty_agree"] and row["label"] == 0
    assert row["hd95"] == row["assd"] == 0.0
    row = evaluate_case(np.full((6, 6, 3), 0.7), np.zeros((6, 6, 3)))
    assert row["dice"] == 0.0 and not row["empty_agree"]
    assert row["hd95"] == row["assd"] == np.inf
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_case(np.zeros((4, 4)), np.zeros((4, 5)))


def test_auroc_from_case_maxima():
    # positives peak at 0.9, 0.6, 0.4; negatives at 0.5, 0.3, 0.2: 8 of 9 pairs ordered
    peaks = [(True, 0.9), (True, 0.6), (True, 0.4), (False, 0.5), (False, 0.3), (False, 0.2)]
    rows = [evaluate_case(*blob_case(lesion, peak)) for lesion, peak in peaks]
    assert [r["case_score"] for r in rows] == pytest.approx([p for _, p in peaks])
    (all_row,) = summarize(rows, n_boot=50)
    assert all_row["group"] == "all" and all_row["n"] == 6 and all_row["n_pos"] == 3
    assert all_row["auroc"] == pytest.approx(8 / 9)
    # lesions: three hits (0.9, 0.6, 0.4) and three false positives (0.5, 0.3, 0.2) over 6 cases
    assert all_row["ap"] == pytest.approx(1 / 3 * 1 + 1 / 3 * 1 + 1 / 3 * 3 / 4)
    assert all_row["ranking"] == pytest.approx((all_row["auroc"] + all_row["ap"]) / 2)
    assert all_row["sens@0.5fp"] == pytest.approx(1.0) and all_row["n_lesions"] == 3


def test_group_by_site_gives_one_row_per_site_with_intervals_around_the_mean():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        lesion = i % 2 == 0
        prob, gt = blob_case(lesion, 0.55 + 0.4 * rng.random() if lesion else 0.6 * rng.random())
        prob = np.clip(prob + 0.1 * rng.random(prob.shape), 0, 1)
        rows.append({"site": ["b", "a", "c"][i % 3], **evaluate_case(prob, gt)})
    summary = summarize(rows, group_by="site", n_boot=100, seed=1)
    assert [r["group"] for r in summary] == ["a", "b", "c", "all"]
    assert [r["n"] for r in summary] == [8, 8, 8, 24]
    for r in summary:
        for name in ("dice", "dice_all", "auroc", "ap", "ranking"):
            assert r[f"{name}_lo"] <= r[name] <= r[f"{name}_hi"], (r["group"], name)
    overall = summary[-1]
    assert overall["dice_hi"] - overall["dice_lo"] < summary[0]["dice_hi"] - summary[0]["dice_lo"] + 1e-9
    # the same seed gives the same intervals
    assert summarize(rows, group_by="site", n_boot=100, seed=1) == summary
    with pytest.raises(ValueError, match="scanner"):
        summarize(rows, group_by="scanner")


def test_groups_without_lesions_or_one_class_give_nan():
    rows = [evaluate_case(*blob_case(False, 0.3)) for _ in range(3)]
    (r,) = summarize(rows, n_boot=20)
    assert np.isnan(r["auroc"]) and np.isnan(r["ap"]) and np.isnan(r["dice"]) and np.isnan(r["auroc_lo"])
    assert r["dice_all"] == 1.0 and r["n_empty_agree"] == 3
    assert "n/a" in summary_table([{"group": "all", **r}])


def test_compare_puts_settings_side_by_side():
    rows = [evaluate_case(*blob_case(i % 2 == 0, 0.3 + 0.1 * i)) for i in range(6)]
    for r, site in zip(rows, "aabbab", strict=True):
        r["site"] = site
    single = summarize(rows, group_by="site", n_boot=20)
    ensemble = summarize(rows, n_boot=0)
    table = compare({"single": single, "ensemble": ensemble})
    lines = table.strip().splitlines()
    assert lines[0].startswith("| group | setting | n | Dice")
    assert lines[2].startswith("| all | single | 6 |") and lines[3].startswith("| all | ensemble | 6 |")
    assert lines[4].startswith("| a | single | 3 |") and len(lines) == 6
    assert "[" in lines[2] and "[" not in lines[3]  # no intervals without resamples


def test_paired_difference_on_the_same_cases():
    rng = np.random.default_rng(0)
    good, bad = [], []
    for i in range(10):
        prob, gt = blob_case(i % 2 == 0, 0.9 if i % 2 == 0 else 0.2)
        noisy = np.clip(prob * (rng.random(prob.shape) < 0.6) + 0.1, 0, 1)  # holes: lower Dice
        good.append({"case_id": f"c{i}", **evaluate_case(prob, gt)})
        bad.append({"case_id": f"c{i}", **evaluate_case(noisy, gt)})
    diff = paired_difference(good, bad[::-1] + [{**bad[0], "case_id": "extra"}], n_boot=200)
    assert diff["n"] == 10 and diff["dice_a"] == pytest.approx(1.0)
    assert diff["dice_diff"] == pytest.approx(diff["dice_a"] - diff["dice_b"])
    assert 0 < diff["dice_diff_lo"] <= diff["dice_diff"] <= diff["dice_diff_hi"]
    same = paired_difference(good, good, metrics=("auroc", "ap"), n_boot=50)
    assert same["auroc_diff"] == 0 and same["ap_diff_lo"] == 0 and same["ap_diff_hi"] == 0
    with pytest.raises(ValueError, match="no case_id in common"):
        paired_difference(good, [{**bad[0], "case_id": "other"}])
    with pytest.raises(ValueError, match="differs"):
        paired_difference(good[:1], [{**good[1], "case_id": "c0"}])


def test_evaluate_manifest_refuses_an_empty_split(tmp_path):
    from medwss.data.manifest import Case, Manifest
    from medwss.errors import ManifestError
    from medwss.eval.runner import EvaluateConfig, evaluate_manifest

    m = Manifest(None, [Case("c0", "p0", "a", "MR", {}, split="train")])
    with pytest.raises(ManifestError, match="no case in split test"):
        evaluate_manifest(m, tmp_path, EvaluateConfig(split="test"), progress=False)
