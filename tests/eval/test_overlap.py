"""Overlap metrics against hand-computed values: Dice, IoU, HD95, ASSD, NSD, empty masks, ignore."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.labels import IGNORE
from medwss.eval.overlap import (
    assd,
    dice,
    dice_from_counts,
    dice_per_class,
    dice_per_slice,
    hd95,
    iou,
    iou_per_class,
    iou_per_slice,
    nsd,
    overlap_counts,
    surface_per_class,
)


def _strips() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :2] = True  # 2 px
    b[0, 1:4] = True  # 3 px, overlap 1, union 4
    return a, b


def test_dice_and_iou_hand_values() -> None:
    a, b = _strips()
    assert dice(a, b) == pytest.approx(2 * 1 / 5)
    assert iou(a, b) == pytest.approx(1 / 4)
    assert dice(a, a) == iou(a, a) == 1.0
    np.testing.assert_allclose(dice_per_slice(np.stack([a, a]), np.stack([b, a])), [0.4, 1.0])
    np.testing.assert_allclose(iou_per_slice(np.stack([a, a]), np.stack([b, a])), [0.25, 1.0])
    with pytest.raises(ValueError, match="shape"):
        dice(a, b[:3])


def test_empty_masks_follow_the_convention() -> None:
    a, _ = _strips()
    z = np.zeros_like(a)
    assert dice(z, z) == iou(z, z) == nsd(z, z, tolerance=1.0) == 1.0
    assert hd95(z, z) == assd(z, z) == 0.0
    assert dice(a, z) == dice(z, a) == iou(a, z) == nsd(a, z, tolerance=1.0) == 0.0
    assert hd95(a, z) == hd95(z, a) == assd(z, a) == np.inf


def test_surface_distances_scale_with_spacing() -> None:
    pred = np.zeros((5, 6), bool)
    gt = np.zeros((5, 6), bool)
    pred[0, 0] = True
    gt[0, 3] = True  # 3 voxels apart along the second axis
    assert hd95(pred, gt) == pytest.approx(3.0)
    assert assd(pred, gt) == pytest.approx(3.0)
    assert hd95(pred, gt, spacing=(1.0, 2.0)) == pytest.approx(6.0)
    assert hd95(pred, gt, spacing=(5.0, 1.0)) == pytest.approx(3.0)  # the first axis does not matter here
    assert nsd(pred, gt, tolerance=5.0, spacing=(1.0, 2.0)) == 0.0
    assert nsd(pred, gt, tolerance=7.0, spacing=(1.0, 2.0)) == 1.0
    with pytest.raises(ValueError, match="spacing"):
        hd95(pred, gt, spacing=(1.0, 2.0, 3.0))


def test_surface_metrics_of_boxes_in_3d() -> None:
    gt = np.zeros((12, 12, 12), bool)
    gt[3:9, 3:9, 3:9] = True
    shifted = np.roll(gt, 2, axis=0)  # every boundary voxel moves 2 along axis 0
    assert hd95(gt, gt, spacing=(0.7, 0.7, 3.0)) == 0.0
    assert hd95(shifted, gt) == pytest.approx(2.0)
    assert hd95(shifted, gt, spacing=(1.5, 1.0, 1.0)) == pytest.approx(3.0)
    assert 0 < assd(shifted, gt) <= 2.0
    assert nsd(shifted, gt, tolerance=2.0) == 1.0
    assert 0 < nsd(shifted, gt, tolerance=0.5) < 1


def test_per_class_with_ignore() -> None:
    gt = np.array([[1, 1, 2, 0], [0, 0, 2, IGNORE]])
    pred = np.array([[1, 0, 2, 0], [0, 1, 2, 2]])  # the 2 at the ignored voxel does not count
    np.testing.assert_allclose(dice_per_class(pred, gt, 3), [2 * 1 / 4, 1.0])
    np.testing.assert_allclose(iou_per_class(pred, gt, 3), [1 / 3, 1.0])
    # without ignore the extra 2 is a false positive of class 2
    np.testing.assert_allclose(dice_per_class(pred, gt, 3, ignore=None), [0.5, 2 * 2 / 5])
    np.testing.assert_array_equal(overlap_counts(pred, gt, 3)[0], [2, 3, 3])  # background row
    assert dice_per_class(pred, gt, 4).tolist()[-1] == 1.0  # class 3 absent from both
    assert dice_per_class(pred, gt, 3, include_background=True).shape == (3,)


def test_binary_ignore_leaves_out_unlabelled() -> None:
    gt = np.array([1, 1, IGNORE, 0])
    pred = np.array([1, 1, 1, 0])
    assert dice(pred, gt) == 1.0
    assert dice(pred, gt, ignore=None) == pytest.approx(4 / 5)


def test_surface_per_class() -> None:
    gt = np.zeros((6, 8), np.int64)
    gt[1:3, 1:3] = 1
    gt[1:3, 5:7] = 2
    pred = gt.copy()
    pred[pred == 2] = 0
    pred[4, 5] = 2  # class 2 shifted by 2-3 rows
    hd = surface_per_class(pred, gt, 4, "hd95", spacing=(2.0, 1.0))
    assert hd[0] == 0.0 and hd[1] > 0 and hd[2] == 0.0  # class 3 empty in both
    ad = surface_per_class(pred, gt, 4, "assd")
    assert ad[0] == 0.0 and ad[2] == 0.0
    ns = surface_per_class(pred, gt, 4, "nsd", tolerance=1.0)
    assert ns[0] == 1.0 and ns[1] < 1.0 and ns[2] == 1.0
    gt_only = np.where(gt == 2, 0, gt)
    assert surface_per_class(gt_only, gt, 3)[1] == np.inf


def test_counts_helpers() -> None:
    np.testing.assert_allclose(dice_from_counts(np.array([0, 1]), np.array([0, 1]), np.array([0, 3])), [1.0, 0.5])
    assert np.isnan(dice_from_counts(0, 0, 0, empty=np.nan))
