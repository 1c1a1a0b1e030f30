"""Evaluation: classification metrics with bootstrap intervals, overlap metrics, FROC, dense heatmaps."""

from medwss.eval.froc import CAMELYON_FP_RATES, FROCResult, camelyon_lesions, detections_from_heatmap, froc
from medwss.eval.heatmap import bag_heatmap, heatmap_shape, rasterize_gt, resample_mask, slide_heatmap, volume_heatmap
from medwss.eval.metrics import bootstrap_ci, classification_report, dice, heatmap_dice, roc_auc, roc_curve

__all__ = [
    "CAMELYON_FP_RATES",
    "FROCResult",
    "bag_heatmap",
    "bootstrap_ci",
    "camelyon_lesions",
    "classification_report",
    "detections_from_heatmap",
    "dice",
    "froc",
    "heatmap_dice",
    "heatmap_shape",
    "rasterize_gt",
    "resample_mask",
    "roc_auc",
    "roc_curve",
    "slide_heatmap",
    "volume_heatmap",
]
