"""Evaluation: classification metrics with bootstrap intervals, overlap metrics, FROC, dense heatmaps."""

from medwss.eval.froc import CAMELYON_FP_RATES, FROCResult, camelyon_lesions, detections_from_heatmap, froc
from medwss.eval.heatmap import bag_heatmap, heatmap_shape, rasterize_gt, resample_mask, slide_heatmap, volume_heatmap
from medwss.eval.metrics import bootstrap_ci, classification_report, heatmap_dice, roc_auc, roc_curve
from medwss.eval.overlap import (
    assd,
    assd_per_class,
    dice,
    dice_per_class,
    dice_per_slice,
    hd95,
    hd95_per_class,
    iou,
    iou_per_class,
    iou_per_slice,
    nsd,
    nsd_per_class,
)

__all__ = [
    "CAMELYON_FP_RATES",
    "FROCResult",
    "assd",
    "assd_per_class",
    "bag_heatmap",
    "bootstrap_ci",
    "camelyon_lesions",
    "classification_report",
    "detections_from_heatmap",
    "dice",
    "dice_per_class",
    "dice_per_slice",
    "froc",
    "hd95",
    "hd95_per_class",
    "heatmap_dice",
    "heatmap_shape",
    "iou",
    "iou_per_class",
    "iou_per_slice",
    "nsd",
    "nsd_per_class",
    "rasterize_gt",
    "resample_mask",
    "roc_auc",
    "roc_curve",
    "slide_heatmap",
    "volume_heatmap",
]
