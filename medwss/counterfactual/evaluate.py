"""Scoring weak masks against ground truth and choosing thresholds on validation slices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from medwss.counterfactual.segment import MaskSettings, threshold_maps
from medwss.eval.overlap import dice_per_slice, iou, iou_per_slice

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def seg_scores(pred: np.ndarray, gt: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean IoU and Dice over slices with a lesion (with a bootstrap 95% interval for IoU) and pooled IoU.

    Args:
        pred: Predicted masks (N, H, W).
        gt: True masks (N, H, W); slices without lesion are left out.
    """
    keep = np.asarray(gt).any(axis=(1, 2))
    if not keep.any():
        return {"n": 0}
    ious = iou_per_slice(pred[keep], gt[keep])
    dices = dice_per_slice(pred[keep], gt[keep])
    lo, hi = bootstrap_mean(ious, n_boot, seed)
    return {
        "n": int(keep.sum()),
        "iou": float(ious.mean()),
        "iou_lo": lo,
        "iou_hi": hi,
        "dice": float(dices.mean()),
        "iou_pooled": iou(pred[keep], gt[keep]),
    }


def bootstrap_mean(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% bootstrap interval of the mean."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def sweep_threshold(
    maps: np.ndarray, gt: np.ndarray, settings: MaskSettings = MaskSettings(), thresholds: Sequence[float] = THRESHOLDS
) -> tuple[float, dict[float, float]]:
    """The threshold with the best mean IoU on slices with a lesion, and the IoU at every threshold."""
    keep = np.asarray(gt).any(axis=(1, 2))
    curve = {}
    for t in thresholds:
        pred = threshold_maps(maps[keep], replace(settings, threshold=float(t)))
        curve[float(t)] = float(iou_per_slice(pred, gt[keep]).mean()) if keep.any() else 0.0
    best = max(curve, key=lambda t: curve[t])
    return best, curve
