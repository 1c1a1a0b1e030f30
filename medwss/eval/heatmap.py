"""Dense heatmaps from per-instance scores, and ground truth on the same grid.

A slide heatmap at downsample ``d`` is a grid over level 0 whose pixel ``(r, c)`` covers level-0
pixels ``[c d, (c + 1) d) × [r d, (r + 1) d)``; a slide of level-0 size ``W × H`` gives a grid of
``ceil(H / d) × ceil(W / d)``. Tiles (level-0 top-left ``(x, y)``, side ``span``) paint the pixels
they overlap, weighted by the overlapped area; where tiles overlap, their scores are averaged.
A volume heatmap lives on the voxel grid of its coordinates: for medwss tile sets and bags, the
canonical RAS+ grid (`medwss.data.orientation`); `medwss.mil.heatmaps.dense_heatmap` maps it back
onto the stored grid with `Orientation.to_source`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.embed.store import FeatureBag
from medwss.errors import InvalidDataError, require_file
from medwss.io.annotations import polygons_to_mask, read_camelyon_xml, read_geojson


def heatmap_shape(dims_level0: tuple[int, int], downsample: float) -> tuple[int, int]:
    """(h, w) of the heatmap grid of a slide of level-0 size ``(W, H)`` at `downsample`."""
    w0, h0 = (int(v) for v in dims_level0)
    d = float(downsample)
    if d <= 0:
        raise ValueError(f"downsample must be positive, got {downsample}")
    return max(1, math.ceil(h0 / d - 1e-9)), max(1, math.ceil(w0 / d - 1e-9))


def _interval_weights(starts: np.ndarray, length: float, cell: float, n_cells: int) -> Any:
    """(len(starts), n_cells) sparse overlap lengths of intervals ``[s, s + length)`` with cells ``[c cell, (c + 1) cell)``."""
    from scipy import sparse

    starts = np.asarray(starts, dtype=np.float64)
    first = np.floor(starts / cell).astype(np.int64)
    m = int(math.ceil(length / cell)) + 1  # cells an interval can touch
    cells = first[:, None] + np.arange(m)[None, :]
    lo = np.maximum(starts[:, None], cells * cell)
    hi = np.minimum(starts[:, None] + length, (cells + 1) * cell)
    overlap = np.clip(hi - lo, 0.0, None)
    keep = (overlap > 0) & (cells >= 0) & (cells < n_cells)
    rows = np.broadcast_to(np.arange(len(starts))[:, None], cells.shape)
    return sparse.csr_matrix((overlap[keep], (rows[keep], cells[keep])), shape=(len(starts), n_cells))


def _segments(
    starts: np.ndarray, length: float, cell: float, n_cells: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Covered fraction of cells ``[c cell, (c + 1) cell)`` by intervals ``[s, s + length)``, as three
    segments (first cell, whole cells, last cell): (first index, end index, fraction), clipped to the grid."""
    a, b = starts / cell, (starts + length) / cell
    first, last = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    single = last == first
    head = np.where(single, b - a, first + 1 - a)
    tail = np.where(single, 0.0, b - last)
    ones = np.where(single, 0.0, 1.0)
    out = []
    for lo, hi, frac in ((first, first + 1, head), (first + 1, last, ones), (last, last + 1, tail)):
        out.append((np.clip(lo, 0, n_cells), np.clip(hi, 0, n_cells), frac))
    return out


def slide_heatmap(
    scores: np.ndarray,
    coords: np.ndarray,
    span: float,
    dims_level0: tuple[int, int],
    downsample: float,
    fill: float = np.nan,
) -> np.ndarray:
    """Paint per-tile scores onto a slide grid at `downsample` of level 0.

    A tile at level-0 ``(x, y)`` with side ``span`` covers heatmap pixels
    ``[y / d, (y + span) / d) × [x / d, (x + span) / d)``; pixels it covers only in part get it
    with a weight equal to the covered fraction, and overlapping tiles are averaged by these
    weights.

    Args:
        scores: (N,) or (N, 1) per-tile scores.
        coords: (N, 2) level-0 (x, y) top-left corner of each tile.
        span: Tile side in level-0 pixels (`FeatureBag.attrs["span"]`).
        dims_level0: Level-0 (width, height) of the slide.
        downsample: Level-0 pixels per heatmap pixel.
        fill: Value of pixels no tile touches (NaN, or 0).

    Returns:
        (h, w) float32 heatmap, ``(h, w) = heatmap_shape(dims_level0, downsample)``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if s.ndim != 1 or len(s) != len(xy):
        raise ValueError(f"need one score per tile: scores {np.shape(scores)}, coords {np.shape(coords)}")
    if span <= 0:
        raise ValueError(f"span must be positive, got {span}")
    h, w = heatmap_shape(dims_level0, downsample)
    d = float(downsample)
    ys = _segments(xy[:, 1], float(span), d, h)
    xs = _segments(xy[:, 0], float(span), d, w)
    # A tile's weight on pixel (r, c) is the covered fraction wy(r)·wx(c); along each axis it is
    # constant on three segments, so the tile is nine weighted rectangles, summed with a
    # difference array (4 corners each) and two cumulative sums: O(N + h·w).
    num = np.zeros((h + 1, w + 1))
    den = np.zeros((h + 1, w + 1))
    for (r0, r1, vy), (c0, c1, vx) in itertools.product(ys, xs):
        weight = vy * vx
        ok = (weight > 0) & (r1 > r0) & (c1 > c0)
        r0, r1, c0, c1, weight = r0[ok], r1[ok], c0[ok], c1[ok], weight[ok]
        for rows, cols, sign in ((r0, c0, 1.0), (r0, c1, -1.0), (r1, c0, -1.0), (r1, c1, 1.0)):
            np.add.at(num, (rows, cols), sign * weight * s[ok])
            np.add.at(den, (rows, cols), sign * weight)
    for acc in (num, den):
        np.cumsum(acc, axis=0, out=acc)
        np.cumsum(acc, axis=1, out=acc)
    num, den = num[:h, :w], den[:h, :w]
    out = np.full((h, w), fill, dtype=np.float64)
    covered = den > 1e-6  # above the round-off of the sums
    out[covered] = num[covered] / den[covered]
    return out.astype(np.float32)


def volume_heatmap(
    scores: np.ndarray,
    coords: np.ndarray,
    patch_size: int | Sequence[int],
    shape: Sequence[int],
    fill: float = np.nan,
) -> np.ndarray:
    """Paint per-patch scores onto a volume's voxel grid, averaging where patches overlap.

    Args:
        scores: (N,) or (N, 1) per-patch scores.
        coords: (N, 3) voxel (i, j, k) of each patch's first voxel.
        patch_size: Patch extent (si, sj, sk) in voxels (an axial 2D tile is ``(t, t, 1)``), or one int.
        shape: (I, J, K) of the volume; patches are clipped to it.
        fill: Value of voxels no patch covers.

    Returns:
        (I, J, K) float32 heatmap.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    ijk = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    if s.ndim != 1 or len(s) != len(ijk):
        raise ValueError(f"need one score per patch: scores {np.shape(scores)}, coords {np.shape(coords)}")
    size = np.broadcast_to(np.asarray(patch_size, dtype=np.int64), (3,))
    dims = np.asarray(tuple(shape), dtype=np.int64)
    if dims.shape != (3,):
        raise ValueError(f"shape must be (I, J, K), got {tuple(shape)}")
    lo = np.clip(ijk, 0, dims)
    hi = np.clip(ijk + size, 0, dims)
    ok = np.all(hi > lo, axis=1)
    lo, hi, s = lo[ok], hi[ok], s[ok]
    # Difference arrays: +/- at the 8 corners of each box, then cumulative sums along each axis.
    num = np.zeros(tuple(dims + 1), dtype=np.float64)
    cnt = np.zeros(tuple(dims + 1), dtype=np.int64)
    for corner in np.ndindex(2, 2, 2):
        pick = np.where(np.asarray(corner, dtype=bool)[:, None], hi.T, lo.T)  # (3, N)
        sign = -1 if sum(corner) % 2 else 1
        np.add.at(num, tuple(pick), sign * s)
        np.add.at(cnt, tuple(pick), sign)
    for axis in range(3):
        num = np.cumsum(num, axis=axis)
        cnt = np.cumsum(cnt, axis=axis)
    num, cnt = num[:-1, :-1, :-1], cnt[:-1, :-1, :-1]
    out = np.full(tuple(dims), fill, dtype=np.float64)
    covered = cnt > 0
    out[covered] = num[covered] / cnt[covered]
    return out.astype(np.float32)


def coordinate_step(values: np.ndarray) -> int | None:
    """The lattice step of tile coordinates along one axis: the most common gap between the sorted
    distinct values (None for a single value)."""
    gaps = np.diff(np.unique(np.asarray(values, dtype=np.int64)))
    gaps = gaps[gaps > 0]
    return int(np.bincount(gaps).argmax()) if gaps.size else None


def tile_span(bag: FeatureBag) -> tuple[float, str]:
    """Level-0 side of a 2D bag's tiles, and where it came from.

    In order: medwss's ``span``; TRIDENT's ``patch_size_level0``; CLAM's ``patch_size`` times the
    ``downsample`` of its ``patch_level`` (``patch_size`` alone at level 0); else the coordinate step
    (the most common gap between neighbouring coordinates, which equals the tile side when tiles
    do not overlap).

    Raises:
        InvalidDataError: The bag has no 2D coords, an attribute is not a positive number, or there is
            neither an attribute nor a coordinate step (all tiles at one position).
    """
    where = bag.path or "feature bag"
    if bag.coords is None or bag.coords.ndim != 2 or bag.coords.shape[1] != 2:
        raise InvalidDataError("a tile span needs (N, 2) level-0 coords", where)
    a = bag.attrs
    span: Any = None
    source = ""
    if a.get("span") is not None:
        span, source = a["span"], "span"
    elif a.get("patch_size_level0") is not None:
        span, source = a["patch_size_level0"], "patch_size_level0"
    elif a.get("patch_size") is not None:
        level = int(np.asarray(a.get("patch_level") or 0).reshape(-1)[0])
        down = a.get("downsample")
        if level == 0:
            span, source = a["patch_size"], "patch_size"
        elif down is not None:
            span, source = (
                float(a["patch_size"]) * float(np.asarray(down, float).reshape(-1)[0]),
                "patch_size×downsample",
            )
    if span is not None:
        try:
            value = float(np.asarray(span, dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError) as exc:
            raise InvalidDataError(f"tile size attribute {source}={span!r} is not a number", where) from exc
        if not math.isfinite(value) or value <= 0:
            raise InvalidDataError(f"tile size attribute {source}={span!r} is not a positive number", where)
        return value, source
    steps = [s for s in (coordinate_step(bag.coords[:, 0]), coordinate_step(bag.coords[:, 1])) if s]
    if not steps:
        raise InvalidDataError(
            "no tile size attribute (span, patch_size_level0 or patch_size) and no coordinate step to infer it from",
            where,
        )
    return float(min(steps)), "coordinate step"


def bag_heatmap(
    bag: FeatureBag,
    scores: np.ndarray,
    extent: Sequence[int],
    downsample: float | None = None,
    fill: float = np.nan,
) -> np.ndarray:
    """The heatmap of a feature bag's per-instance scores, using the geometry stored in the bag.

    Slides (2D coords) use the tile side of `tile_span` (medwss ``span``, TRIDENT/CLAM attributes,
    or the coordinate step); volumes (3D coords) the bag's ``tile_size`` (patch extent in voxels).

    Args:
        bag: The case's `FeatureBag` (coords and attributes).
        scores: (N,) scores in the bag's instance order (e.g. one column of `MILOutput.scores`).
        extent: Level-0 (width, height) of the slide, or (I, J, K) of the volume.
        downsample: Level-0 pixels per heatmap pixel (slides only).
        fill: Value where no instance lies.

    Returns:
        (h, w) slide heatmap or (I, J, K) volume heatmap, float32.
    """
    where = bag.path or "feature bag"
    if bag.coords is None:
        raise InvalidDataError("the bag has no coords, so its scores cannot be placed", where)
    a = bag.attrs
    if bag.coords.shape[1] == 2:
        span, _ = tile_span(bag)
        if downsample is None:
            raise ValueError("a slide heatmap needs a downsample")
        w0, h0 = (int(v) for v in extent)
        return slide_heatmap(scores, bag.coords, span, (w0, h0), downsample, fill)
    size = a.get("tile_size")
    if size is None or np.size(size) not in (1, 3):
        raise InvalidDataError(f"no 3D 'tile_size' attribute (patch extent in voxels), got {size}", where)
    return volume_heatmap(
        scores, bag.coords, np.broadcast_to(np.asarray(size, dtype=np.int64), (3,)).tolist(), extent, fill
    )


def tile_grid_geometry(
    bag: FeatureBag, cells_per_tile: int = 2, max_cells: int = 1 << 24
) -> tuple[tuple[int, int], float, float]:
    """Geometry of a heatmap over a 2D bag's own tiles, when no slide is at hand.

    The frame is level 0 from the origin to the far edge of the last tile (``max(x) + span``,
    ``max(y) + span``), so contours drawn on it are in the slide's level-0 pixels.

    Args:
        bag: A bag with (N, 2) level-0 coords.
        cells_per_tile: Heatmap pixels per tile side.
        max_cells: Cap on heatmap pixels; above it the downsample grows (a coarser map), so hostile
            coordinates cannot ask for a huge allocation.

    Returns:
        (dims_level0, downsample, span): level-0 (width, height) covered, level-0 pixels per heatmap
        pixel, tile side.

    Raises:
        InvalidDataError: Empty bag, or negative coordinates.
    """
    span, _ = tile_span(bag)
    assert bag.coords is not None  # tile_span checked
    xy = np.asarray(bag.coords, dtype=np.float64)
    where = bag.path or "feature bag"
    if not len(xy):
        raise InvalidDataError("the bag holds no tiles", where)
    if (xy < 0).any() or not np.isfinite(xy).all():
        raise InvalidDataError("tile coordinates must be finite and non-negative level-0 pixels", where)
    w0, h0 = (int(math.ceil(v + span)) for v in xy.max(axis=0))
    ds = max(span / max(int(cells_per_tile), 1), 1.0)
    ds = max(ds, math.sqrt(float(w0) * float(h0) / float(max_cells)))
    return (w0, h0), ds, span


def resample_mask(
    mask: np.ndarray,
    source_downsample: float,
    downsample: float,
    dims_level0: tuple[int, int] | None = None,
    min_fraction: float = 0.5,
) -> np.ndarray:
    """Bring a binary mask from one downsample of level 0 to another, by area.

    An output pixel is set when at least `min_fraction` of its area is covered by set input
    pixels (a majority vote when shrinking; nearest-like when enlarging).

    Args:
        mask: (h, w) mask at `source_downsample`.
        source_downsample: Level-0 pixels per input pixel.
        downsample: Level-0 pixels per output pixel.
        dims_level0: Level-0 (width, height); the output is ``heatmap_shape(dims_level0, downsample)``.
            Without it, the output covers the input's extent.
        min_fraction: Covered fraction that sets an output pixel.

    Returns:
        (h', w') bool mask.
    """
    m = np.asarray(mask) > 0
    if m.ndim != 2:
        raise ValueError(f"expected a 2D mask, got shape {m.shape}")
    ds_in, ds_out = float(source_downsample), float(downsample)
    if dims_level0 is None:
        dims_level0 = (round(m.shape[1] * ds_in), round(m.shape[0] * ds_in))
    h, w = heatmap_shape(dims_level0, ds_out)
    rows = _interval_weights(np.arange(h) * ds_out, ds_out, ds_in, m.shape[0]) / ds_out  # (h, h_in)
    cols = _interval_weights(np.arange(w) * ds_out, ds_out, ds_in, m.shape[1]) / ds_out  # (w, w_in)
    frac = np.asarray(cols @ np.asarray(rows @ m.astype(np.float64)).T).T  # (h, w) covered fraction
    return frac >= min_fraction - 1e-9


def _read_mask_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 0
    except OSError as exc:
        raise InvalidDataError(f"cannot read the mask image ({exc})", path) from exc


def rasterize_gt(
    gt: str | Path | np.ndarray | Sequence[np.ndarray],
    dims_level0: tuple[int, int],
    downsample: float,
    gt_downsample: float | None = None,
) -> np.ndarray:
    """A slide's ground truth on the grid of its heatmap at `downsample`.

    Args:
        gt: A list of polygons (level-0 (x, y) arrays); a mask array at `gt_downsample`; or a file: QuPath
            GeoJSON (``.geojson``/``.json``), ASAP XML (``.xml``), or a mask image (PNG/TIFF, non-zero
            is tumour) at `gt_downsample` (e.g. the phantoms' ``*_tumor_ds16.png`` with 16).
        dims_level0: Level-0 (width, height) of the slide.
        downsample: Downsample of the heatmap.
        gt_downsample: Downsample of a mask array or image.

    Returns:
        (h, w) bool mask, ``(h, w) = heatmap_shape(dims_level0, downsample)``; polygons are
        rasterised by pixel centre, masks resampled by area (`resample_mask`).
    """
    shape = heatmap_shape(dims_level0, downsample)
    if isinstance(gt, (str, Path)):
        path = require_file(gt)
        suffix = path.suffix.lower()
        if suffix in (".geojson", ".json"):
            return polygons_to_mask(read_geojson(path), shape, downsample)
        if suffix == ".xml":
            return polygons_to_mask(read_camelyon_xml(path), shape, downsample)
        if gt_downsample is None:
            raise ValueError(f"{path}: a mask image needs gt_downsample (level-0 pixels per mask pixel)")
        return resample_mask(_read_mask_image(path), gt_downsample, downsample, dims_level0)
    if isinstance(gt, np.ndarray):
        if gt_downsample is None:
            raise ValueError("a mask array needs gt_downsample (level-0 pixels per mask pixel)")
        return resample_mask(gt, gt_downsample, downsample, dims_level0)
    return polygons_to_mask(list(gt), shape, downsample)
