"""`medwss mil heatmap`: per-tile scores of a trained aggregator turned into viewer files.

For every case with a bag: ``<case>_scores.csv`` and ``.h5`` (coordinates and scores). Then, by
what the case has:

- a slide (2D bag, image column): ``<case>_overlay.png`` (heatmap over the thumbnail),
  ``<case>_heatmap.tif`` (pyramidal TIFF with the slide's physical size, for QuPath) and
  ``<case>_heatmap.geojson`` (contours at the threshold, level-0 pixels) and
  ``<case>_detections.geojson`` (one square detection per tile with its score as a measurement,
  `export_tile_detections`: QuPath's *Measure › Show measurement maps* colours them);
- no slide (2D bag of a bag-only manifest, e.g. CLAM or TRIDENT bags): ``<case>_heatmap.png``, the
  scores on the bag's own tile grid (inferno colour map over [0, 1] with a colour bar at the right;
  cells without a tile grey), and ``<case>_heatmap.geojson`` (contours at the threshold in level-0
  pixels, from the bag's coords and tile side, `medwss.eval.heatmap.tile_span`) and
  ``<case>_detections.geojson``;
- a volume (3D bag, image column): ``<case>_heatmap.nii.gz`` (on the image's stored grid, its affine
  kept, for 3D Slicer; the bag's coordinates are on the canonical RAS+ grid and are mapped back with
  `Orientation.to_source`) and ``<case>_montage.png``; without the image only the scores.

Every output is named by the case id through `medwss.data.manifest.case_path`, which refuses an id
that would leave the output folder. One failing case is recorded in ``failures.csv`` and the rest
go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.manifest import Case, case_path
from medwss.embed.store import FeatureBag
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume

GRID_BACKGROUND = 200  # grey of tile-grid cells without a tile


@dataclass
class CaseHeatmap:
    """A case's dense heatmap and where it lies.

    Attributes:
        heatmap: (h, w) at `downsample` of level 0 (slides), or (I, J, K) on the image's stored grid
            (volumes).
        downsample: Level-0 pixels per heatmap pixel (slides), None for volumes.
        extent: Level-0 (width, height) of the slide, or the volume's shape.
        affine: The volume's affine (volumes).
    """

    heatmap: np.ndarray
    downsample: float | None
    extent: tuple[int, ...]
    affine: np.ndarray | None = None


def is_slide_bag(fb: FeatureBag) -> bool:
    return fb.coords is not None and fb.coords.shape[1] == 2


def dense_heatmap(
    case: Case,
    fb: FeatureBag,
    scores: np.ndarray,
    cells_per_tile: int = 2,
    dims: tuple[int, int] | None = None,
    volume: Volume | None = None,
) -> CaseHeatmap:
    """The dense heatmap of per-instance `scores` on the case's slide or volume geometry (NaN off-tissue).

    Volumes: the scores are painted on the canonical RAS+ grid the tile coordinates refer to, then
    mapped back onto the image's stored grid (`Orientation.to_source`), so the heatmap matches the
    stored image, its label map and its affine whatever the stored axis order.
    `dims` (the slide's level-0 size) or `volume` (the loaded image) spare reading the image again.
    """
    from medwss.data.orientation import orientation_of
    from medwss.eval.heatmap import bag_heatmap

    if is_slide_bag(fb):
        from medwss.eval.heatmap import tile_grid_geometry, tile_span

        if dims is None and not case.images:  # bag only: the frame of the bag's own tiles
            dims, ds, _ = tile_grid_geometry(fb, cells_per_tile)
            return CaseHeatmap(bag_heatmap(fb, scores, dims, ds), ds, tuple(dims))
        if dims is None:
            from medwss.io.slide import open_slide

            with open_slide(case.image) as s:
                dims = s.dimensions
        span, _ = tile_span(fb)
        ds = max(span / cells_per_tile, 1.0)
        return CaseHeatmap(bag_heatmap(fb, scores, dims, ds), ds, tuple(dims))
    if volume is None:
        from medwss.io.volumes import load_volume

        volume = load_volume(case.image, nan="fill")
    orient = orientation_of(volume)
    heat = orient.to_source(bag_heatmap(fb, scores, orient.canonical_shape))
    return CaseHeatmap(heat, None, volume.shape[:3], volume.affine)


def export_tile_detections(
    fb: FeatureBag, scores: np.ndarray, path: Path, name: str = "medwss tile", measurement: str = "score"
) -> Path:
    """Each tile of a 2D bag as a QuPath detection: a square of the tile's level-0 side at its coords,
    with ``measurements: {<measurement>: score}``; written atomically.

    The side is `medwss.eval.heatmap.tile_span` (medwss, CLAM and TRIDENT bags), so the squares lie
    on the slide exactly where the tiles were read.
    """
    from medwss.eval.heatmap import tile_span
    from medwss.io.annotations import write_geojson

    if fb.coords is None or fb.coords.ndim != 2 or fb.coords.shape[1] != 2:
        raise InvalidDataError("tile detections need a 2D bag with (N, 2) level-0 coords", fb.path)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(values) != len(fb.coords):
        raise InvalidDataError(f"{len(values)} scores for {len(fb.coords)} tiles", fb.path)
    span, _ = tile_span(fb)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64) * span
    squares = [corners + np.asarray(xy, dtype=np.float64) for xy in fb.coords]
    rows = [{measurement: float(v)} for v in values]
    return write_geojson(squares, path, classification=name, color=(255, 120, 0), object_type="detection",
                         measurements=rows)  # fmt: skip


def grid_png(heatmap: np.ndarray, path: Path, max_side: int = 1024) -> Path:
    """The heatmap on its own grid as PNG: inferno over [0, 1], a colour bar at the right, grey where
    no tile lies; each cell drawn as a square of whole pixels (longer side up to `max_side`)."""
    from medwss.viz.overlay import heatmap_overlay_png

    h, w = heatmap.shape
    k = max(1, min(32, max_side // max(h, w)))
    base = np.full((h * k, w * k, 3), GRID_BACKGROUND, dtype=np.uint8)
    return heatmap_overlay_png(base, heatmap, path, alpha=1.0, colorbar=True)


def write_case(case: Case, fb: FeatureBag, scores: np.ndarray, out: Path, threshold: float) -> dict[str, Any]:
    """Write every file of one case (see the module docstring); returns their paths."""
    from medwss.transforms.intensity import CT_WINDOWS
    from medwss.viz.exports import (
        export_geojson_contours,
        export_heatmap_tiff,
        export_nifti_heatmap,
        export_scores_table,
    )
    from medwss.viz.overlay import heatmap_overlay_png, volume_montage_png

    cid = case.case_id
    files: dict[str, Any] = {}
    if fb.coords is None:
        raise InvalidDataError("the bag has no coords, so its scores cannot be placed", fb.path)
    scores_csv = case_path(out, cid, "_scores.csv")
    export_scores_table(cid, fb.coords, scores, scores_csv, case_path(out, cid, "_scores.h5"), attrs=dict(fb.attrs))
    files["scores"] = str(scores_csv)
    if is_slide_bag(fb) and not case.images:  # bag only: the bag's own tile grid, level-0 contours
        hm = dense_heatmap(case, fb, scores)
        assert hm.downsample is not None
        files["png"] = str(grid_png(hm.heatmap, case_path(out, cid, "_heatmap.png")))
        files["geojson"] = str(
            export_geojson_contours(hm.heatmap, hm.downsample, threshold, case_path(out, cid, "_heatmap.geojson"))
        )
        files["detections"] = str(export_tile_detections(fb, scores, case_path(out, cid, "_detections.geojson")))
    elif is_slide_bag(fb):
        from medwss.io.slide import open_slide

        with open_slide(case.image) as s:
            thumb, mpp, dims = s.thumbnail(1024), s.mpp, s.dimensions
        hm = dense_heatmap(case, fb, scores, dims=dims)
        assert hm.downsample is not None
        files["overlay"] = str(heatmap_overlay_png(thumb, hm.heatmap, case_path(out, cid, "_overlay.png"),
                                                   downsample=hm.downsample, dims_level0=dims))  # fmt: skip
        filled = np.nan_to_num(hm.heatmap, nan=0.0)
        files["tiff"] = str(export_heatmap_tiff(filled, hm.downsample, dims, mpp, case_path(out, cid, "_heatmap.tif")))
        files["geojson"] = str(
            export_geojson_contours(filled, hm.downsample, threshold, case_path(out, cid, "_heatmap.geojson"))
        )
        files["detections"] = str(export_tile_detections(fb, scores, case_path(out, cid, "_detections.geojson")))
    elif case.images:
        from medwss.io.volumes import load_volume

        volume = load_volume(case.image, nan="fill")
        hm = dense_heatmap(case, fb, scores, volume=volume)
        files["nifti"] = str(export_nifti_heatmap(hm.heatmap, volume.affine, case_path(out, cid, "_heatmap.nii.gz")))
        image = volume.array
        window = CT_WINDOWS["abdomen"] if case.modality == "CT" else None
        files["overlay"] = str(
            volume_montage_png(image, hm.heatmap, case_path(out, cid, "_montage.png"), window=window, affine=hm.affine)
        )
    return files
