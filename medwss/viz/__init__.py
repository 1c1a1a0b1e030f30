"""Visualisation: heatmap overlays (PNG), exports for QuPath and 3D Slicer, and the HTML report."""

from medwss.viz.exports import (
    export_geojson_contours,
    export_heatmap_tiff,
    export_nifti_heatmap,
    export_scores_table,
    read_heatmap_tiff,
    read_scores_table,
)
from medwss.viz.overlay import colorize, heatmap_overlay_png, pick_slices, volume_montage_png
from medwss.viz.report import write_report

__all__ = [
    "colorize",
    "export_geojson_contours",
    "export_heatmap_tiff",
    "export_nifti_heatmap",
    "export_scores_table",
    "heatmap_overlay_png",
    "pick_slices",
    "read_heatmap_tiff",
    "read_scores_table",
    "volume_montage_png",
    "write_report",
]
