"""Tiling: the grid of tiles of a slide (at a target mpp, inside tissue) or of a volume (inside the body).

Tissue fractions are box sums over the mask, computed for the whole grid at once from cumulative
sums along each axis (linear interpolation between cumulative sums gives exact area-weighted sums
for boxes that cut mask pixels), so a slide of 100,000 tiles costs no Python loop per tile.
Volumes are tiled on their canonical RAS+ grid (axial = last axis), whatever their stored axis order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from medwss.data.orientation import canonical
from medwss.embed.tiles import TileSet, check_tile_size
from medwss.embed.tissue import (
    TissueConfig,
    TissueMask,
    body_mask,
    detect_tissue,
    montage,
    save_rgb_png,
    slices_rgb,
    upscale,
)
from medwss.io.limits import LimitExceededError, check_count, check_mpp, limit
from medwss.io.volume import Volume

if TYPE_CHECKING:
    from medwss.io.slide import Slide

VolumeMode = Literal["axial2d", "stack25d", "patch3d"]
VOLUME_MODES: tuple[str, ...] = ("axial2d", "stack25d", "patch3d")


# --- grids and box sums -------------------------------------------------------------------------


def grid_starts(length: float, size: float, stride: float) -> np.ndarray:
    """Start positions (float) of tiles of `size` every `stride` covering ``[0, length)``.

    The last tile may stick out of the image; a single tile when the image is smaller than a tile.
    """
    return np.arange(grid_count(length, size, stride), dtype=np.float64) * stride


def grid_count(length: float, size: float, stride: float) -> int:
    """How many tiles `grid_starts` gives (computed without allocating them)."""
    if not (math.isfinite(length) and math.isfinite(size) and math.isfinite(stride)) or size <= 0 or stride <= 0:
        raise ValueError(f"grid of length {length}, tile {size}, stride {stride}: need finite positive sizes")
    return 1 if length <= size else math.ceil((length - size) / stride - 1e-9) + 1


MAX_UPSAMPLING = 8.0
"""Slides: largest ratio of the slide's mpp to the target mpp (reading finer than scanned) accepted without force."""


def _interp_cumsum(c: np.ndarray, axis: int, pos: np.ndarray) -> np.ndarray:
    """Cumulative sums `c` (leading zero, length n + 1 along `axis`) read at fractional positions `pos`."""
    n = c.shape[axis] - 1
    pos = np.clip(np.asarray(pos, dtype=np.float64), 0, n)
    i0 = np.minimum(np.floor(pos).astype(np.int64), max(n - 1, 0))
    t = pos - i0
    lo = np.take(c, i0, axis=axis).astype(np.float64)
    hi = np.take(c, np.minimum(i0 + 1, n), axis=axis).astype(np.float64)
    shape = [1] * c.ndim
    shape[axis] = -1
    return lo + (hi - lo) * t.reshape(shape)


def box_sums(a: np.ndarray, axis: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of `a` over ``[lo, hi)`` along `axis` (fractional bounds weigh the cut pixels by overlap).

    Bounds outside ``[0, n]`` are clipped, so the outside of the array counts as zeros. The result has
    `a`'s shape with `axis` replaced by ``len(lo)``.
    """
    dtype: type = np.float64
    if a.dtype == bool:
        dtype = np.int32 if a.shape[axis] < 2**31 else np.int64
    elif np.issubdtype(a.dtype, np.integer):
        dtype = np.int64
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 0)
    c: np.ndarray = np.pad(np.cumsum(a, axis=axis, dtype=dtype), pad)
    return _interp_cumsum(c, axis, hi) - _interp_cumsum(c, axis, lo)


def mask_fractions(mask: np.ndarray, starts: Sequence[np.ndarray], sizes: Sequence[float]) -> np.ndarray:
    """Fraction of each box of a grid that lies in `mask` (outside the mask's array counts as outside).

    Args:
        mask: N-D bool array.
        starts: Per axis, the box starts in mask pixels (fractional allowed).
        sizes: Per axis, the box size in mask pixels.

    Returns:
        Array of shape ``(len(starts[0]), len(starts[1]), ...)``.
    """
    out: np.ndarray = np.asarray(mask)
    for axis, (s, size) in enumerate(zip(starts, sizes, strict=True)):
        s = np.asarray(s, dtype=np.float64)
        out = box_sums(out, axis, s, s + size)
    volume = float(np.prod(sizes))
    return np.clip(out / volume, 0.0, 1.0)


# --- slides -------------------------------------------------------------------------------------


def tile_slide(
    slide: Slide,
    case_id: str,
    tile_size: int = 224,
    mpp: float = 0.5,
    overlap: float = 0.0,
    min_tissue: float = 0.25,
    tissue: TissueMask | None = None,
    tissue_config: TissueConfig | None = None,
    force_mpp: bool = False,
) -> TileSet:
    """The tiles of a slide that lie in tissue.

    Tiles are `tile_size` pixels at `mpp` µm/px, so they span ``tile_size * mpp / slide.mpp`` level-0
    pixels, every ``span * (1 - overlap)`` pixels over the whole slide (the last row and column may stick
    out; readers pad with white). They are read from the coarsest level not coarser than `mpp`.

    Args:
        slide: The slide (needs mpp).
        case_id: Case identifier stored in the tile set.
        tile_size: Tile side in output pixels.
        mpp: Target microns per pixel.
        overlap: Fraction of a tile shared with its neighbour, in [0, 1).
        min_tissue: Keep tiles whose tissue fraction is at least this.
        tissue: A tissue mask already computed (else `detect_tissue` runs with `tissue_config`).
        tissue_config: Tissue detection settings.
        force_mpp: Accept a slide or target mpp outside `medwss.io.limits.MPP_RANGE`, or reading more
            than `MAX_UPSAMPLING` times finer than the slide.

    Raises:
        ValueError: Invalid sizes. MissingMetadataError: the slide has no mpp. CorruptFileError: unreadable pixels.
        LimitExceededError: Implausible mpp, or a tile or a grid over the limits (checked before allocating).
    """
    if tile_size < 1 or not mpp > 0 or not 0 <= overlap < 1 or not 0 <= min_tissue <= 1:
        raise ValueError(
            f"{slide.path}: need tile_size >= 1, mpp > 0, 0 <= overlap < 1, 0 <= min_tissue <= 1; "
            f"got {tile_size}, {mpp}, {overlap}, {min_tissue}"
        )
    level, span, stride, xs, ys = slide_grid(slide, tile_size, mpp, overlap, force_mpp)
    width, height = slide.dimensions
    if tissue is None:
        tissue = detect_tissue(slide, tissue_config)
    dx, dy = tissue.downsample
    frac = mask_fractions(tissue.mask, (ys / dy, xs / dx), (span / dy, span / dx))  # (rows, cols)
    rows, cols = np.nonzero(frac >= min_tissue - 1e-9)
    coords = np.stack([np.round(xs[cols]), np.round(ys[rows])], axis=1).astype(np.int64)
    attrs = {
        "overlap": float(overlap),
        "stride": float(stride),
        "min_tissue": float(min_tissue),
        "slide_mpp": float(slide.mpp),
        "dimensions": [int(width), int(height)],
        "mask_downsample": [float(dx), float(dy)],
        "tissue_fraction_slide": round(tissue.fraction, 6),
    }
    if tissue_config is not None:
        attrs["tissue_config"] = tissue_config.model_dump_json()
    return TileSet(
        case_id=case_id,
        source=str(slide.path),
        kind="slide",
        coords=coords,
        grid_index=np.stack([rows, cols], axis=1),
        grid_shape=frac.shape,
        tile_size=(tile_size,),
        tissue_fraction=frac[rows, cols],
        mpp=float(mpp),
        level=int(level),
        span=float(span),
        attrs=attrs,
    )


def slide_grid(
    slide: Slide, tile_size: int, mpp: float, overlap: float, force_mpp: bool
) -> tuple[int, float, float, np.ndarray, np.ndarray]:
    """Level, span, stride and grid starts of a slide's tiling, after the plausibility and size checks."""
    path = slide.path
    check_mpp(float(slide.mpp), "slide resolution", path, force_mpp)
    check_mpp(float(mpp), "target --mpp", path, force_mpp)
    if not force_mpp and slide.mpp / mpp > MAX_UPSAMPLING:
        raise LimitExceededError(
            f"target {mpp:g} µm/px is {slide.mpp / mpp:.3g}x finer than the slide's {slide.mpp:g} µm/px "
            f"(more than {MAX_UPSAMPLING:g}x upsampling: wrong slide mpp?); pass --mpp-override or --force-mpp",
            path,
        )
    check_tile_size((tile_size,), path)
    factor = mpp / slide.mpp
    span = tile_size * factor
    stride = span * (1 - overlap)
    width, height = slide.dimensions
    nx, ny = grid_count(width, span, stride), grid_count(height, span, stride)
    check_count(
        f"tile grid {nx}x{ny} ({tile_size} px at {mpp:g} µm/px on a {width}x{height} slide at {slide.mpp:g} µm/px)",
        nx * ny, "MEDWSS_MAX_TILES", path,
    )  # fmt: skip
    level = slide.best_level_for_downsample(factor)
    read = span / float(slide.level_downsamples[level])
    cap = 4 * limit("MEDWSS_MAX_TILE_VOXELS")
    if read * read > cap:
        raise LimitExceededError(
            f"each {tile_size}-px tile needs a {read:.0f}x{read:.0f} region read from level {level} "
            f"(the slide has no level near {mpp:g} µm/px), over {cap:,} pixels (MEDWSS_MAX_TILE_VOXELS x 4)",
            path,
        )
    return level, span, stride, grid_starts(width, span, stride), grid_starts(height, span, stride)


# --- volumes ------------------------------------------------------------------------------------


def _three(value: float | Sequence[float], name: str) -> tuple[float, ...]:
    v = tuple(float(x) for x in np.atleast_1d(np.asarray(value, dtype=np.float64)))
    if len(v) == 1:
        v = v * 3
    elif len(v) == 2:
        v = v + (v[1],)
    if len(v) != 3 or min(v) <= 0:
        raise ValueError(f"{name} must be one, two or three positive values, got {value}")
    return v


def patch_size(
    mode: str,
    spacing: Sequence[float],
    tile_size: int | Sequence[int] = 32,
    depth: int = 3,
    tile_mm: float | Sequence[float] | None = None,
) -> tuple[int, int, int]:
    """Patch extent in voxels (si, sj, sk) for a tiling mode.

    In-plane from `tile_size` (voxels), or from `tile_mm` (mm, converted with `spacing`) when given.
    Along k: 1 for ``axial2d``, `depth` for ``stack25d``, the third value (or the in-plane size) for ``patch3d``.
    """
    if mode not in VOLUME_MODES:
        raise ValueError(f"mode must be one of {VOLUME_MODES}, got {mode!r}")
    if tile_mm is not None:
        mm = _three(tile_mm, "tile_mm")
        size = tuple(max(1, round(m / s)) for m, s in zip(mm, spacing, strict=True))
    else:
        size = tuple(max(1, round(s)) for s in _three(tile_size, "tile_size"))
    if mode == "axial2d":
        return size[0], size[1], 1
    if mode == "stack25d":
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        return size[0], size[1], int(depth)
    return size[0], size[1], size[2]


def tile_volume(
    volume: Volume,
    case_id: str,
    mode: VolumeMode = "axial2d",
    tile_size: int | Sequence[int] = 32,
    depth: int = 3,
    stride: int | Sequence[int] | None = None,
    min_foreground: float = 0.25,
    foreground: np.ndarray | None = None,
    modality: str | None = None,
    tile_mm: float | Sequence[float] | None = None,
    overlap: float = 0.0,
) -> TileSet:
    """The patches of a volume that lie in the body (or in `foreground`), on its canonical RAS+ grid.

    The volume is first put on its canonical grid (`medwss.data.orientation.canonical`: axes
    right, anterior, superior; k is the axial axis whatever the stored axis order), so a file
    stored as (slices, H, W) gives the same tiles as its RAS copy. Coordinates, grid and spacing are
    those of the canonical grid; ``attrs["orientation"]`` (`TileSet.orientation`) maps results back
    onto the stored grid, ``attrs["source_orientation"]`` is the stored orientation code.

    Modes: ``axial2d`` tiles every axial slice (patch (si, sj, 1)); ``stack25d`` gives, for every
    slice, the stack of `depth` slices centred on it (patch (si, sj, depth), first slice
    ``k - depth // 2``, which may be negative or run past the end: readers pad with zeros; its
    foreground fraction is that of its centre slice); ``patch3d`` tiles 3D blocks. Coordinates are
    the patch's first voxel (i, j, k); grid indices (gi, gj, gk).

    Args:
        volume: The volume as stored (3D, or 4D: channel 0 gives the foreground).
        case_id: Case identifier stored in the tile set.
        mode: ``axial2d``, ``stack25d`` or ``patch3d``.
        tile_size: In-plane size in voxels (one value or (si, sj), or (si, sj, sk) for patch3d).
        depth: Slices per 2.5D stack.
        stride: Step in voxels (one value or three, on the canonical grid); default: the patch size
            times ``1 - overlap`` in-plane, one slice along k for axial2d and stack25d, the patch
            depth times ``1 - overlap`` for patch3d.
        min_foreground: Keep patches whose foreground fraction is at least this.
        foreground: (I, J, K) bool mask on the volume's stored grid; default `body_mask(volume, modality)`.
        modality: ``CT``, ``MR``, ... (chooses the body-mask rule); default from the volume.
        tile_mm: Patch size in mm instead of `tile_size` (one, two or three values, along the canonical axes).
        overlap: Fraction of a patch shared with its neighbour, in [0, 1) (when `stride` is None).

    Raises:
        ValueError: Invalid sizes, or a foreground mask of the wrong shape.
    """
    if not 0 <= min_foreground <= 1 or not 0 <= overlap < 1:
        raise ValueError(
            f"{volume.path}: need 0 <= min_foreground <= 1 and 0 <= overlap < 1, got {min_foreground}, {overlap}"
        )
    if foreground is not None and np.shape(foreground) != volume.shape[:3]:
        raise ValueError(
            f"{volume.path}: foreground shape {np.shape(foreground)} is not the volume's {volume.shape[:3]}"
        )
    cvol, orient = canonical(volume)
    shape = cvol.shape[:3]
    size = patch_size(mode, cvol.spacing, tile_size, depth, tile_mm)
    if stride is None:
        step = [max(1, round(s * (1 - overlap))) for s in size]
        if mode != "patch3d":
            step[2] = 1
    else:
        step = [max(1, round(s)) for s in _three(stride, "stride")]
    fg = body_mask(cvol, modality) if foreground is None else orient.to_canonical(np.asarray(foreground, bool))
    si, sj, sk = size
    check_tile_size(size, volume.path)
    n_k = math.ceil(shape[2] / step[2]) if mode == "stack25d" else grid_count(shape[2], sk, step[2])
    grid = (grid_count(shape[0], si, step[0]), grid_count(shape[1], sj, step[1]), n_k)
    check_count(
        f"patch grid {'x'.join(map(str, grid))} ({mode} {si}x{sj}x{sk}, stride {step} on {'x'.join(map(str, shape))})",
        math.prod(grid), "MEDWSS_MAX_TILES", volume.path,
    )  # fmt: skip
    starts_i, starts_j = grid_starts(shape[0], si, step[0]), grid_starts(shape[1], sj, step[1])
    if mode == "stack25d":
        centres = np.arange(0, shape[2], step[2], dtype=np.float64)
        frac = mask_fractions(fg, (starts_i, starts_j, centres), (si, sj, 1))
        starts_k = centres - sk // 2
    else:
        starts_k = grid_starts(shape[2], sk, step[2])
        frac = mask_fractions(fg, (starts_i, starts_j, starts_k), size)
    gi, gj, gk = np.nonzero(frac >= min_foreground - 1e-9)
    coords = np.stack([starts_i[gi], starts_j[gj], starts_k[gk]], axis=1).astype(np.int64)
    mod = modality or volume.modality
    attrs = {
        "stride": list(step),
        "min_foreground": float(min_foreground),
        "shape": list(shape),
        "source_orientation": orient.codes,
        "orientation": orient.as_dict(),
    }
    if mod:
        attrs["modality"] = mod
    return TileSet(
        case_id=case_id,
        source=str(volume.path or ""),
        kind=mode,
        coords=coords,
        grid_index=np.stack([gi, gj, gk], axis=1),
        grid_shape=frac.shape,
        tile_size=size,
        tissue_fraction=frac[gi, gj, gk],
        spacing=cvol.spacing,
        attrs=attrs,
    )


# --- QA images ----------------------------------------------------------------------------------


def _draw_boxes(rgb: np.ndarray, boxes: np.ndarray, values: np.ndarray, width: int = 1) -> np.ndarray:
    """Boxes (N, 4) x0, y0, x1, y1 in pixels: tinted by `values` in [0, 1] (yellow→green) and outlined."""
    from PIL import Image, ImageDraw

    base = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for (x0, y0, x1, y1), v in zip(boxes.tolist(), values.tolist(), strict=True):
        colour = (int(230 * (1 - v)), 160 + int(40 * v), 0)
        draw.rectangle(
            (x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=colour + (50,), outline=colour + (230,), width=width
        )
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))


def _slide_png(source: Slide | TissueMask | np.ndarray, tiles: TileSet, max_size: int) -> np.ndarray:
    if isinstance(source, TissueMask):
        thumb, dims = source.thumbnail, source.dimensions
    elif isinstance(source, np.ndarray):
        if "dimensions" not in tiles.attrs:
            raise ValueError("a bare thumbnail needs the slide's dimensions in tiles.attrs['dimensions']")
        thumb, dims = source, tuple(tiles.attrs["dimensions"])
    else:
        thumb, dims = source.thumbnail(max_size), source.dimensions
    thumb, f = upscale(thumb, 768)
    scale = thumb.shape[1] / dims[0], thumb.shape[0] / dims[1]
    span = tiles.span if tiles.span is not None else float(tiles.tile_size[0])
    c = tiles.coords.astype(np.float64)
    boxes = np.stack(
        [c[:, 0] * scale[0], c[:, 1] * scale[1], (c[:, 0] + span) * scale[0], (c[:, 1] + span) * scale[1]], 1
    )
    return _draw_boxes(thumb, np.round(boxes).astype(np.int64), tiles.tissue_fraction, width=1)


def _volume_png(source: Volume | np.ndarray, tiles: TileSet, n_slices: int) -> np.ndarray:
    if isinstance(source, Volume):  # the tiles are on its canonical grid
        source = canonical(source)[0]
    shape = source.shape[:3]
    k0 = np.clip(tiles.coords[:, 2], 0, shape[2] - 1) if len(tiles) else np.arange(shape[2])
    k1 = np.clip(tiles.coords[:, 2] + tiles.tile_size[2] - 1, 0, shape[2] - 1) if len(tiles) else k0
    lo, hi = int(k0.min()), int(k1.max())
    picks = np.unique(np.linspace(lo, hi, min(n_slices, hi - lo + 1)).round().astype(int))
    mod = tiles.attrs.get("modality")
    panels = []
    for k, image in zip(picks, slices_rgb(source, picks.tolist(), mod), strict=True):
        rgb, f = upscale(image, 256)
        if tiles.kind == "stack25d":  # a stack is drawn on its centre slice
            sel = tiles.coords[:, 2] + tiles.tile_size[2] // 2 == k
        else:
            sel = (tiles.coords[:, 2] <= k) & (k < tiles.coords[:, 2] + tiles.tile_size[2])
        c = tiles.coords[sel]
        si, sj = tiles.tile_size[0], tiles.tile_size[1]
        boxes = np.stack([c[:, 0], c[:, 1], c[:, 0] + si, c[:, 1] + sj], axis=1) * f  # x = i, y = j
        panels.append(_draw_boxes(rgb, boxes, tiles.tissue_fraction[sel]))
    return montage(panels)


def tiles_png(
    source: Slide | TissueMask | Volume | np.ndarray,
    tiles: TileSet,
    path: str | Path,
    max_size: int = 1024,
    n_slices: int = 6,
) -> Path:
    """QA image of a tile set, written atomically.

    Slides: the thumbnail (from the slide, a `TissueMask`, or an RGB array) with the tiles drawn,
    tinted from yellow (little tissue) to green (all tissue). Volumes (a `Volume` as stored, or an
    (I, J, K) array already on the tiles' canonical grid): a montage of up to `n_slices` axial
    slices with the patches that cross each slice.

    Args:
        source: What to draw on.
        tiles: The tile set.
        path: Output PNG.
        max_size: Thumbnail size when `source` is a slide.
        n_slices: Slices shown for volumes.
    """
    if tiles.kind == "slide":
        if isinstance(source, Volume):
            raise ValueError("slide tiles need a slide, a TissueMask or a thumbnail to draw on")
        rgb = _slide_png(source, tiles, max_size)
    else:
        if not isinstance(source, (Volume, np.ndarray)):
            raise ValueError("volume tiles need a Volume or an array to draw on")
        rgb = _volume_png(source, tiles, n_slices)
    return save_rgb_png(rgb, path)
