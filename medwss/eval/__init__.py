"""Evaluation: classification metrics with bootstrap intervals, overlap metrics, FROC, dense heatmaps."""

from medwss.eval.froc import CAMELYON_FP_RATES, FROCResult, camelyon_lesions, detections_from_heatmap, froc
from medwss.eval.heatmap import bag_heatmap, heatmap_shape, rasterize_gt, resample_mask, slide_heatmap, volume_heatmap
from medwss.eval.metrics import bootstrap_ci, classification_report, heatmap_dice, roc_auc, roc_curve
from medwss.eval.overlap import (
    assd,
    dice,
    dice_per_class,
    dice_per_slice,
    hd95,
    iou,
    iou_per_class,
    iou_per_slice,
    nsd,
    surface_per_class,
)

__all__ = [
    "CAMELYON_FP_RATES",
    "FROCResult",
    "assd",
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
    "heatmap_dice",
    "heatmap_shape",
    "iou",
    "iou_per_class",
    "iou_per_slice",
    "nsd",
    "surface_per_class",
    "rasterize_gt",
    "resample_mask",
    "roc_auc",
    "roc_curve",
    "slide_heatmap",
    "volume_heatmap",
]
