"""IoU, validity and realism measures on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.counterfactual.evaluate import seg_scores, sweep_threshold
from medwss.counterfactual.metrics import frechet_distance, mmd_rbf, validity
from medwss.eval.overlap import iou, iou_per_slice


def test_iou_hand_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True  # 2 px
    b[0, 1:4] = True  # 3 px, overlap 1, union 4
    assert iou(a, b) == pytest.approx(0.25)
    assert iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert iou(a, np.zeros_like(a)) == 0.0
    np.testing.assert_allclose(iou_per_slice(np.stack([a, a]), np.stack([b, a])), [0.25, 1.0])
    with pytest.raises(ValueError):
        iou(a, np.zeros((3, 3)))


def test_validity_counts_confident_flips():
    before = np.array([0.95, 0.9, 0.85, 0.5, 0.99])
    after = np.array([0.05, 0.2, 0.01, 0.0, 0.3])
    # confident: 0.95, 0.9, 0.85, 0.99 -> drops 0.9, 0.7, 0.84, 0.69 -> 2 of 4
    assert validity(before, after) == pytest.approx(0.5)
    assert np.isnan(validity(np.array([0.1]), np.array([0.0])))


def test_frechet_and_mmd():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(4.0, rel=1e-6)
    assert mmd_rbf(a, a) == pytest.approx(0.0, abs=1e-9)
    assert mmd_rbf(a, shifted) > mmd_rbf(a, a + 0.1)


def test_seg_scores_and_sweep():
    gt = np.zeros((3, 8, 8), bool)
    gt[0, 2:4, 2:4] = True
    gt[1, 4:6, 4:6] = True
    pred = gt.copy()
    s = seg_scores(pred, gt)
    assert s["n"] == 2 and s["iou"] == 1.0 and s["dice"] == 1.0
    maps = gt.astype(np.float32) * 0.6 + 0.1  # background 0.1, lesion 0.7
    best, curve = sweep_threshold(maps, gt, thresholds=(0.05, 0.3, 0.8))
    assert best == 0.3 and curve[0.3] == 1.0 and curve[0.8] == 0.0
