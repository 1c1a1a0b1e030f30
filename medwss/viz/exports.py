"""Heatmap exports for the viewers: pyramidal TIFF and GeoJSON contours (QuPath), NIfTI (3D Slicer),
and per-tile score tables (CSV, HDF5). Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import CorruptFileError, require_file
from medwss.io.annotations import mask_to_polygons, write_geojson
from medwss.io.atomic import atomic_path, write_text
from medwss.io.tiff_writer import downsample2, write_pyramid_tiff
from medwss.io.volumes import save_nifti
from medwss.viz.overlay import colorize

TIFF_DESCRIPTION_PREFIX = "medwss heatmap "
"""ImageDescription of an exported heatmap TIFF: this prefix, then a JSON object of its geometry."""


def _check_covers(shape: tuple[int, ...], downsample: float, dims_level0: tuple[int, int]) -> None:
    w0, h0 = dims_level0
    h, w = shape
    if abs(h - h0 / downsample) >= 1 or abs(w - w0 / downsample) >= 1:
        raise ValueError(
            f"a heatmap of {w}×{h} px at downsample {downsample:g} does not cover a {w0}×{h0} slide "
            f"(expected about {w0 / downsample:.1f}×{h0 / downsample:.1f})"
        )


def _write_gray_pyramid(image: np.ndarray, path: Path, mpp: float, tile: int, min_size: int, description: str) -> None:
    import tifffile

    levels = [image]
    while min(levels[-1].shape[:2]) // 2 >= min_size:
        levels.append(downsample2(levels[-1]))
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31) as tw:
        for i, level in enumerate(levels):
            px_per_cm = 1e4 / (mpp * 2**i)
            tw.write(
                level,
                tile=(tile, tile),
                photometric="minisblack",
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                description=description if i == 0 else None,
                compression="zlib",
                metadata=None,
            )


def export_heatmap_tiff(
    heatmap: np.ndarray,
    downsample: float,
    dims_level0: tuple[int, int],
    mpp_level0: float,
    path: str | Path,
    mode: str = "rgb",
    cmap: str = "inferno",
    vmin: float = 0.0,
    vmax: float = 1.0,
    tile: int = 256,
    min_size: int = 256,
) -> Path:
    """Write a slide heatmap as a tiled pyramidal TIFF that overlays the slide's level 0.

    The heatmap keeps its own resolution; its pixel size is ``mpp_level0 × downsample`` so that
    its physical extent is the slide's (to within one heatmap pixel, as the grid rounds up).
    Pixel ``(r, c)`` covers level-0 ``[c d, (c + 1) d) × [r d, (r + 1) d)``. In QuPath, open it as
    its own image (the pixel size is read from the TIFF), then overlay it on the slide with
    *Analyze › Interactive image alignment* (identity transform, since the physical sizes match),
    or read it from a script and scale by the downsample stored in the ImageDescription.
    OpenSlide opens it as ``generic-tiff`` with ``openslide.mpp-x`` = the heatmap pixel size.

    Args:
        heatmap: (h, w) scores in ``[vmin, vmax]`` at `downsample`; NaN is written as 0 (black).
        downsample: Level-0 pixels per heatmap pixel.
        dims_level0: Level-0 (width, height) of the slide.
        mpp_level0: Microns per level-0 pixel of the slide.
        path: Output ``.tif``.
        mode: ``rgb`` (colour-mapped with `cmap`) or ``gray`` (uint8, 0..255 for vmin..vmax).
        cmap: Matplotlib colour map of the ``rgb`` mode.
        vmin: Score of the first colour / of 0.
        vmax: Score of the last colour / of 255.
        tile: TIFF tile side (a multiple of 16).
        min_size: Pyramid levels are added while the short side stays at least this.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2D, got {heat.shape}")
    if mode not in ("rgb", "gray"):
        raise ValueError(f"mode must be 'rgb' or 'gray', got {mode!r}")
    d = float(downsample)
    _check_covers(heat.shape, d, dims_level0)
    mpp = float(mpp_level0) * d
    info = {
        "downsample": d,
        "level0_width": int(dims_level0[0]),
        "level0_height": int(dims_level0[1]),
        "mpp_level0": float(mpp_level0),
        "mpp": mpp,
        "mode": mode,
        "cmap": cmap if mode == "rgb" else None,
        "vmin": float(vmin),
        "vmax": float(vmax),
    }
    description = TIFF_DESCRIPTION_PREFIX + json.dumps(info)
    clean = np.nan_to_num(heat, nan=vmin)
    if mode == "rgb":
        rgb, _ = colorize(clean, cmap, vmin, vmax)
        rgb[~np.isfinite(heat)] = 0
        write_pyramid_tiff(rgb, path, mpp, tile=tile, min_size=min_size, compression="zlib", description=description)
    else:
        scaled = np.clip((clean - vmin) / max(vmax - vmin, 1e-12), 0, 1)
        _write_gray_pyramid(np.round(scaled * 255).astype(np.uint8), Path(path), mpp, tile, min_size, description)
    return Path(path)


def read_heatmap_tiff(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Level 0 of a TIFF written by `export_heatmap_tiff`, and its geometry.

    Returns:
        (pixels, info): (h, w, 3) or (h, w) uint8, and the dict stored in the ImageDescription
        (``downsample``, ``level0_width``, ``level0_height``, ``mpp_level0``, ``mpp``, ``mode``, ...).
    """
    import tifffile

    p = require_file(path)
    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages.first
            pixels = page.asarray()
            description = page.description
    except (tifffile.TiffFileError, ValueError) as exc:
        raise CorruptFileError(f"not a readable TIFF ({exc})", p) from exc
    if not description.startswith(TIFF_DESCRIPTION_PREFIX):
        raise CorruptFileError("not a medwss heatmap TIFF (ImageDescription lacks its geometry)", p)
    return pixels, json.loads(description[len(TIFF_DESCRIPTION_PREFIX) :])


def export_geojson_contours(
    heatmap: np.ndarray,
    downsample: float,
    threshold: float,
    path: str | Path,
    name: str = "medwss heatmap",
    min_area: float = 0.0,
    color: tuple[int, int, int] | None = None,
) -> Path:
    """Write the outlines of the heatmap region ``>= threshold`` as QuPath GeoJSON annotations.

    Polygons are in level-0 pixels (holes are filled, one polygon per connected region); QuPath
    imports them onto the slide with *File › Import objects* or by drag and drop.

    Args:
        heatmap: (h, w) scores at `downsample`; NaN is below any threshold.
        downsample: Level-0 pixels per heatmap pixel.
        threshold: Score at and above which a pixel is inside.
        path: Output ``.geojson``.
        name: Classification of the annotations, as QuPath shows it.
        min_area: Drop regions smaller than this, in level-0 pixels².
        color: RGB colour of the class.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2D, got {heat.shape}")
    mask = np.nan_to_num(heat, nan=-np.inf) >= threshold
    polygons = mask_to_polygons(mask, downsample=float(downsample), min_area=min_area)
    return write_geojson(polygons, path, classification=name, color=color)


def export_nifti_heatmap(heatmap: np.ndarray, affine: np.ndarray, path: str | Path, nan_value: float = 0.0) -> Path:
    """Write a volume heatmap as float32 NIfTI with the source volume's affine.

    3D Slicer loads it beside the scan (*Add data*, or drag and drop) and shows it as a foreground
    overlay or colour-maps it; both share the world grid because the affine is the source's.

    Args:
        heatmap: (I, J, K) scores on the volume's stored voxel grid (a heatmap on the canonical RAS+
            grid, as tile coordinates are, goes back first with `Orientation.to_source`).
        affine: (4, 4) voxel-to-world affine of the source volume (`Volume.affine`).
        path: Output ``.nii.gz`` or ``.nii``.
        nan_value: Value written for NaN voxels (no patch), which viewers handle poorly.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 3:
        raise ValueError(f"a volume heatmap must be 3D, got {heat.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4):
        raise ValueError(f"affine must be 4×4, got {aff.shape}")
    return save_nifti(np.nan_to_num(heat, nan=nan_value), path, affine=aff)


def export_scores_table(
    case_id: str,
    coords: np.ndarray,
    scores: np.ndarray,
    path_csv: str | Path | None = None,
    path_h5: str | Path | None = None,
    attrs: dict[str, Any] | None = None,
) -> list[Path]:
    """Write per-tile (or per-patch) scores with their coordinates as CSV and/or HDF5.

    CSV columns: ``case_id, x, y`` (slides, level-0 top-left) or ``case_id, i, j, k`` (volumes,
    first voxel), then ``score`` (one column of scores) or ``score_0 … score_{K-1}``. HDF5:
    datasets ``coords`` and ``scores`` (float32), attributes ``case_id``, ``coord_names`` and `attrs`
    (e.g. ``span``, ``mpp``, ``patch_size``).

    Args:
        case_id: The case's identifier.
        coords: (N, 2) or (N, 3).
        scores: (N,) or (N, K).
        path_csv: Output ``.csv``, or None.
        path_h5: Output ``.h5``, or None.
        attrs: Extra HDF5 attributes.

    Returns:
        The paths written.
    """
    xy = np.asarray(coords)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or s.ndim != 2 or len(s) != len(xy):
        raise ValueError(f"need (N, 2|3) coords and (N,) or (N, K) scores, got {xy.shape} and {np.shape(scores)}")
    coord_names = ["x", "y"] if xy.shape[1] == 2 else ["i", "j", "k"]
    score_names = ["score"] if s.shape[1] == 1 else [f"score_{k}" for k in range(s.shape[1])]
    written = []
    if path_csv is not None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["case_id", *coord_names, *score_names])
        integral = np.issubdtype(xy.dtype, np.integer)
        for c, row in zip(xy.tolist(), s.tolist(), strict=True):
            cs = [str(int(v)) if integral else f"{v:g}" for v in c]
            writer.writerow([case_id, *cs, *(f"{v:.6g}" for v in row)])
        written.append(write_text(path_csv, buf.getvalue()))
    if path_h5 is not None:
        import h5py

        with atomic_path(path_h5) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("coords", data=xy)
            f.create_dataset("scores", data=s.astype(np.float32) if s.shape[1] > 1 else s[:, 0].astype(np.float32))
            f.attrs["case_id"] = case_id
            f.attrs["coord_names"] = ",".join(coord_names)
            for key, value in (attrs or {}).items():
                if value is not None:
                    f.attrs[key] = np.asarray(value) if isinstance(value, (list, tuple)) else value
        written.append(Path(path_h5))
    return written


def read_scores_table(path_h5: str | Path) -> tuple[str, np.ndarray, np.ndarray, dict[str, Any]]:
    """Read an HDF5 table written by `export_scores_table`: (case_id, coords, scores, attrs)."""
    import h5py

    p = require_file(path_h5)
    try:
        with h5py.File(p, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            return str(attrs.pop("case_id", "")), f["coords"][()], f["scores"][()], attrs
    except (OSError, KeyError) as exc:
        raise CorruptFileError(f"not a medwss scores table ({exc})", p) from exc
