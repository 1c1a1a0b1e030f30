"""Pseudo-label quality: per-class Dice and IoU on the pixels labelled, coverage, minor-class recall.

Dice and IoU are computed where the pseudo-label is not `IGNORE` (the quality of what was
labelled); coverage is the share of pixels not ignored; recall counts ignored ground-truth pixels
as missed, so a method cannot look good on a minor class by abstaining from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medwss.data.labels import IGNORE
from medwss.eval.overlap import dice_from_counts, iou_from_counts


class PseudoLabelMeter:
    """Accumulates a confusion matrix over images; `report` gives the metrics.

    Args:
        n_classes: Number of classes including background (0).
        names: Optional class names for the report.
        minor: Classes whose recall is reported as minor-class recall.
    """

    def __init__(self, n_classes: int, names: Sequence[str] | None = None, minor: Sequence[int] = ()) -> None:
        self.n_classes = n_classes
        self.names = list(names) if names is not None else [f"class_{k}" for k in range(n_classes)]
        self.minor = list(minor)
        self.cm = np.zeros((n_classes, n_classes + 1), dtype=np.int64)  # gt × (pred, last column = ignored)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: `pred` with `IGNORE`, `gt` with values 0..K-1 (other values skipped)."""
        if pred.shape != gt.shape:
            raise ValueError(f"pseudo-label shape {pred.shape} differs from ground truth {gt.shape}")
        g = gt.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        keep = (g >= 0) & (g < self.n_classes)
        g, p = g[keep], p[keep]
        p = np.where((p == IGNORE) | (p < 0) | (p >= self.n_classes), self.n_classes, p)
        self.cm += np.bincount(g * (self.n_classes + 1) + p, minlength=self.cm.size).reshape(self.cm.shape)

    def report(self) -> dict[str, object]:
        """``{"per_class": {name: {dice, iou, recall, gt_pixels}}, "mean_dice", "miou", "coverage", "minor_recall"}``.

        Means are over foreground classes present in the ground truth; values are NaN when undefined.
        """
        k = self.n_classes
        labelled = self.cm[:, :k]
        tp = np.diag(labelled).astype(np.float64)
        fp = labelled.sum(axis=0) - tp
        fn = labelled.sum(axis=1) - tp
        gt_all = self.cm.sum(axis=1).astype(np.float64)
        dice = dice_from_counts(tp, tp + fp, tp + fn, empty=np.nan)
        iou = iou_from_counts(tp, tp + fp, tp + fn, empty=np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(gt_all > 0, tp / gt_all, np.nan)
        per = {
            self.names[c]: {
                "dice": float(dice[c]),
                "iou": float(iou[c]),
                "recall": float(recall[c]),
                "gt_pixels": int(gt_all[c]),
            }
            for c in range(k)
        }
        fg = [c for c in range(1, k) if gt_all[c] > 0]
        total = self.cm.sum()
        minor = [c for c in self.minor if gt_all[c] > 0]
        return {
            "per_class": per,
            "mean_dice": _nanmean(dice[fg]),
            "miou": _nanmean(iou[fg]),
            "coverage": float(1.0 - self.cm[:, k].sum() / total) if total else float("nan"),
            "minor_recall": float(np.mean(recall[minor])) if minor else float("nan"),
        }


def _nanmean(values: np.ndarray) -> float:
    """Mean of the defined values; NaN (without a warning) when none is (e.g. nothing labelled)."""
    v = values[~np.isnan(values)]
    return float(v.mean()) if v.size else float("nan")


def pseudo_label_metrics(
    preds: Sequence[np.ndarray] | np.ndarray,
    gts: Sequence[np.ndarray] | np.ndarray,
    n_classes: int,
    names: Sequence[str] | None = None,
    minor: Sequence[int] = (),
) -> dict[str, object]:
    """Metrics of one pseudo-label map, or of a list of maps pooled (see `PseudoLabelMeter.report`)."""
    meter = PseudoLabelMeter(n_classes, names, minor)
    if isinstance(preds, np.ndarray):
        preds, gts = [preds], [np.asarray(gts)]
    for p, g in zip(preds, gts, strict=True):
        meter.update(np.asarray(p), np.asarray(g))
    return meter.report()
