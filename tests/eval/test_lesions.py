"""Lesion candidates, IoU matching, lesion AP and sensitivity at fixed false positives (hand-made maps)."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.eval.lesions import (
    froc_curve,
    label_lesions,
    lesion_ap,
    lesion_candidates,
    match_lesions,
    precision_recall,
    sensitivity_at_fp,
)


def two_peaks() -> np.ndarray:
    """A 2D map with two blobs: peak 0.9 (core 0.8, rim 0.5) and peak 0.6 (plateau 0.3)."""
    p = np.zeros((20, 20))
    p[2:7, 2:7] = 0.5
    p[3:6, 3:6] = 0.8
    p[4, 4] = 0.9
    p[12:16, 12:16] = 0.3
    p[13, 13] = 0.6
    return p


def test_dynamic_extraction_finds_both_peaks_with_their_values():
    labels, conf = lesion_candidates(two_peaks(), mode="dynamic")
    np.testing.assert_allclose(conf, [0.9, 0.6])
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1, 2}
    # peak 0.9: every voxel >= 0.36 joins (the 5x5 blob); peak 0.6: >= 0.24 (the 4x4 plateau)
    assert (labels == 1).sum() == 25 and labels[4, 4] == 1 and labels[2, 2] == 1
    assert (labels == 2).sum() == 16 and labels[13, 13] == 2


def test_dynamic_rel_threshold_floor_and_max_lesions():
    p = two_peaks()
    labels, conf = lesion_candidates(p, rel_threshold=0.9)  # only voxels >= 0.81 around the first peak
    assert (labels == 1).sum() == 1 and len(conf) >= 2
    _, conf = lesion_candidates(p, floor=0.7)
    np.testing.assert_allclose(conf, [0.9])
    _, conf = lesion_candidates(p, max_lesions=1)
    np.testing.assert_allclose(conf, [0.9])
    labels, conf = lesion_candidates(p, min_voxels=20)  # the second blob (16 voxels) is dropped
    np.testing.assert_allclose(conf, [0.9])
    assert (labels > 0).sum() == 25


def test_threshold_mode_components_and_ordering():
    p = two_peaks()
    p[0, 19] = 0.95  # a single strong voxel
    labels, conf = lesion_candidates(p, mode="threshold", threshold=0.5)
    np.testing.assert_allclose(conf, [0.95, 0.9, 0.6])  # by decreasing confidence
    assert labels[0, 19] == 1 and (labels == 2).sum() == 25 and (labels == 3).sum() == 1
    labels, conf = lesion_candidates(p, mode="threshold", threshold=0.5, min_voxels=2)
    np.testing.assert_allclose(conf, [0.9])
    assert labels[0, 19] == 0 and (labels == 1).sum() == 25
    with pytest.raises(ValueError, match="mode"):
        lesion_candidates(p, mode="watershed")


def test_candidates_3d_and_empty_map():
    p = np.zeros((10, 10, 6))
    p[1:3, 1:3, 1:3] = 0.7
    p[6:9, 6:9, 3:5] = 0.4
    p[0, 0, 0] = np.nan
    labels, conf = lesion_candidates(p)
    np.testing.assert_allclose(conf, [0.7, 0.4])
    assert (labels == 1).sum() == 8 and (labels == 2).sum() == 18
    labels, conf = lesion_candidates(np.zeros((4, 4, 4)))
    assert conf.shape == (0,) and not labels.any()


def gt_square() -> np.ndarray:
    gt = np.zeros((20, 20), dtype=bool)
    gt[2:12, 2:12] = True  # 100 voxels
    return gt


def test_tiny_overlapping_candidate_is_no_hit_with_iou_but_is_with_overlap():
    cand = np.zeros((20, 20), dtype=np.int32)
    cand[5, 5] = 1  # IoU 1/100
    dets, n_gt = match_lesions(cand, [0.8], gt_square())
    assert dets == [(0.8, False)] and n_gt == 1
    dets, _ = match_lesions(cand, [0.8], gt_square(), hit="overlap")
    assert dets == [(0.8, True)]


def test_good_candidate_hits_and_second_hit_is_a_false_positive():
    cand = np.zeros((20, 20), dtype=np.int32)
    cand[2:12, 2:7] = 2  # IoU 0.5, less confident
    cand[2:12, 7:12] = 1  # IoU 0.5, most confident
    dets, n_gt = match_lesions(cand, [0.9, 0.7], gt_square())
    assert n_gt == 1 and dets == [(0.9, True), (0.7, False)]
    # the order of matching follows the confidence, not the label
    dets, _ = match_lesions(cand, [0.5, 0.7], gt_square())
    assert dets == [(0.5, False), (0.7, True)]


def test_candidate_takes_the_lesion_with_the_best_iou_and_each_lesion_counts_once():
    gt = np.zeros((20, 20), dtype=bool)
    gt[0:4, 0:4] = True  # lesion A, 16 voxels
    gt[0:4, 6:16] = True  # lesion B, 40 voxels
    cand = np.zeros((20, 20), dtype=np.int32)
    cand[0:4, 2:16] = 1  # overlaps A (IoU 8/64) and B (IoU 40/56)
    cand[0:4, 0:2] = 2  # inside A (IoU 0.5)
    dets, n_gt = match_lesions(cand, [0.9, 0.8], gt)
    assert n_gt == 2 and dets == [(0.9, True), (0.8, True)]
    assert label_lesions(gt)[1] == 2


def test_match_checks_shapes_and_labels():
    with pytest.raises(ValueError, match="differ in shape"):
        match_lesions(np.zeros((3, 3), np.int32), [], np.zeros((4, 4)))
    with pytest.raises(ValueError, match="confidences"):
        match_lesions(np.ones((3, 3), np.int32), [], np.zeros((3, 3)))


# (confidence, is_tp) over two cases with 3 lesions: hit at 0.9, FP at 0.8, hit at 0.7, one lesion missed
DETS = [(0.9, True), (0.8, False), (0.7, True)]


def test_precision_recall_and_ap_by_hand():
    precision, recall, thr = precision_recall(DETS, 3)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3, 0])  # the miss enters at confidence 0, precision 0
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(thr, [0.9, 0.8, 0.7, 0])
    # AP = 1/3 * 1 + 0 * 0.5 + 1/3 * 2/3 + 1/3 * 0
    assert lesion_ap(DETS, 3) == pytest.approx(1 / 3 + 2 / 9)
    assert lesion_ap(DETS[::-1], 3) == pytest.approx(1 / 3 + 2 / 9)  # input order does not matter
    assert lesion_ap([(0.9, True), (0.7, True)], 2) == pytest.approx(1.0)
    assert lesion_ap([], 3) == 0.0 and np.isnan(lesion_ap([(0.5, False)], 0))


def test_ap_matches_scikit_learn_when_every_lesion_is_found():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    conf = np.round(rng.random(40), 1)  # ties included
    tp = rng.random(40) < 0.4
    dets = list(zip(conf.tolist(), tp.tolist(), strict=True))
    assert lesion_ap(dets, int(tp.sum())) == pytest.approx(average_precision_score(tp, conf))


def test_weights_count_a_detection_several_times():
    doubled = lesion_ap(DETS + DETS, 6)
    assert lesion_ap(DETS, 6, weights=np.full(3, 2.0)) == pytest.approx(doubled)


def test_froc_and_sensitivity_at_fixed_fp_by_hand():
    fps, sens, thr = froc_curve(DETS, 3, n_cases=2)
    np.testing.assert_allclose(fps, [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(sens, [0, 1 / 3, 1 / 3, 2 / 3])
    assert thr[0] == np.inf
    at = sensitivity_at_fp(DETS, 3, n_cases=2, fp_rates=(0.25, 0.5, 1.0))
    assert at == pytest.approx({0.25: 1 / 3, 0.5: 2 / 3, 1.0: 2 / 3})
    # one case: the FP costs 1 per case, so at 0.5 FP/case only the first hit counts
    assert sensitivity_at_fp(DETS, 3, n_cases=1, fp_rates=(0.5, 1.0)) == pytest.approx({0.5: 1 / 3, 1.0: 2 / 3})
    assert np.isnan(sensitivity_at_fp([(0.4, False)], 0, 1)[1.0])


def test_connectivity_of_lesions_and_candidates():
    gt = np.zeros((6, 6), dtype=bool)
    gt[0:2, 0:2] = gt[2:4, 2:4] = True  # two squares touching at a corner
    assert label_lesions(gt)[1] == 2 and label_lesions(gt, connectivity=2)[1] == 1
    labels, conf = lesion_candidates(gt * 0.8, mode="threshold", connectivity=2)
    assert len(conf) == 1 and (labels == 1).sum() == 8
