"""PNG overlays of heatmaps: on a slide thumbnail, and on the axial slices of a volume.

Colours come from a matplotlib colour map over ``[vmin, vmax]``; NaN pixels (no tile) and pixels
below `min_value` stay transparent. PNGs are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medwss.io.atomic import atomic_path


def colorize(
    heatmap: np.ndarray, cmap: str = "inferno", vmin: float = 0.0, vmax: float = 1.0, min_value: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map a heatmap to colours.

    Args:
        heatmap: (...,) float scores.
        cmap: Name of a matplotlib colour map.
        vmin: Score mapped to the first colour.
        vmax: Score mapped to the last colour.
        min_value: Scores below it are marked invisible (as NaN is).

    Returns:
        (rgb, visible): (..., 3) uint8 colours and a (...,) bool mask of pixels to show.
    """
    import matplotlib

    h = np.asarray(heatmap, dtype=np.float64)
    visible = np.isfinite(h)
    if min_value is not None:
        visible &= np.nan_to_num(h, nan=-np.inf) >= min_value
    scale = (np.nan_to_num(h, nan=vmin) - vmin) / max(vmax - vmin, 1e-12)
    rgba = matplotlib.colormaps[cmap](np.clip(scale, 0.0, 1.0), bytes=True)
    return np.ascontiguousarray(rgba[..., :3]), visible


def _sample(heatmap: np.ndarray, out_hw: tuple[int, int], scale_rc: tuple[float, float]) -> np.ndarray:
    """Nearest-neighbour sampling: output pixel centre ``(r + 0.5) s`` in heatmap pixels."""
    rows = np.floor((np.arange(out_hw[0]) + 0.5) * scale_rc[0]).astype(np.int64)
    cols = np.floor((np.arange(out_hw[1]) + 0.5) * scale_rc[1]).astype(np.int64)
    rows = np.clip(rows, 0, heatmap.shape[0] - 1)
    cols = np.clip(cols, 0, heatmap.shape[1] - 1)
    return heatmap[rows[:, None], cols[None, :]]


def _blend(base: np.ndarray, heat_rgb: np.ndarray, visible: np.ndarray, alpha: float) -> np.ndarray:
    a = (float(alpha) * visible)[..., None]
    return np.round(base.astype(np.float64) * (1 - a) + heat_rgb.astype(np.float64) * a).astype(np.uint8)


def _colorbar(height: int, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """An (height, width, 3) white strip with a vertical gradient (vmax at the top) and its end values."""
    from PIL import Image, ImageDraw

    width = max(48, height // 10)
    bar_w = max(8, width // 4)
    margin = max(6, height // 40)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    inner = max(height - 2 * margin, 2)
    values = np.linspace(vmax, vmin, inner)[:, None].repeat(bar_w, axis=1)
    rgb, _ = colorize(values, cmap, vmin, vmax)
    strip[margin : margin + inner, 4 : 4 + bar_w] = rgb
    img = Image.fromarray(strip)
    draw = ImageDraw.Draw(img)
    draw.text((bar_w + 7, margin), f"{vmax:g}", fill=(0, 0, 0))
    draw.text((bar_w + 7, margin + inner - 11), f"{vmin:g}", fill=(0, 0, 0))
    return np.asarray(img)


def _save_png(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return Path(path)


def heatmap_overlay_png(
    thumbnail_rgb: np.ndarray,
    heatmap: np.ndarray,
    path: str | Path,
    alpha: float = 0.5,
    cmap: str = "inferno",
    colorbar: bool = False,
    vmin: float = 0.0,
    vmax: float = 1.0,
    min_value: float | None = None,
    downsample: float | None = None,
    dims_level0: tuple[int, int] | None = None,
) -> Path:
    """Write a slide thumbnail with a heatmap blended over it as PNG.

    The heatmap is resized (nearest neighbour) to the thumbnail. Given `downsample` and
    `dims_level0`, the resizing follows the geometry exactly (a heatmap grid reaches up to one
    pixel beyond the slide's edge); otherwise the heatmap is stretched over the thumbnail.

    Args:
        thumbnail_rgb: (H, W, 3) uint8, e.g. `Slide.thumbnail()`.
        heatmap: (h, w) scores; NaN is transparent.
        path: Output ``.png``.
        alpha: Opacity of the heatmap.
        cmap: Matplotlib colour map.
        colorbar: Append a colour bar on the right (the PNG is then wider than the thumbnail).
        vmin: Score of the first colour.
        vmax: Score of the last colour.
        min_value: Scores below it are transparent.
        downsample: Level-0 pixels per heatmap pixel.
        dims_level0: Level-0 (width, height) of the slide.
    """
    thumb = np.asarray(thumbnail_rgb)
    if thumb.ndim == 2:
        thumb = np.repeat(thumb[..., None], 3, axis=2)
    if thumb.ndim != 3 or thumb.shape[2] not in (3, 4):
        raise ValueError(f"thumbnail must be (H, W, 3) RGB, got {thumb.shape}")
    thumb = thumb[..., :3].astype(np.uint8)
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2D, got {heat.shape}")
    th, tw = thumb.shape[:2]
    if downsample is not None and dims_level0 is not None:
        w0, h0 = dims_level0
        scale = (h0 / th / float(downsample), w0 / tw / float(downsample))
    else:
        scale = (heat.shape[0] / th, heat.shape[1] / tw)
    rgb, visible = colorize(_sample(heat, (th, tw), scale), cmap, vmin, vmax, min_value)
    image = _blend(thumb, rgb, visible, alpha)
    if colorbar:
        image = np.concatenate([image, _colorbar(th, cmap, vmin, vmax)], axis=1)
    return _save_png(image, path)


def pick_slices(heatmap: np.ndarray, n_slices: int, axis: int = 2) -> list[int]:
    """The `n_slices` slices along `axis` where the heatmap is highest (by maximum, then sum), ascending.

    Without any finite value, slices are spread evenly.
    """
    heat = np.moveaxis(np.asarray(heatmap, dtype=np.float64), axis, 0)
    n = heat.shape[0]
    k = min(int(n_slices), n)
    flat = np.where(np.isfinite(heat), heat, -np.inf).reshape(n, -1)
    peak = flat.max(axis=1)
    if not np.isfinite(peak).any():
        return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})
    total = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1)
    order = np.lexsort((np.arange(n), -total, -peak))
    return sorted(int(i) for i in order[:k])


def _axial_view(slice_ij: np.ndarray) -> np.ndarray:
    """Radiological display of an (i, j) slice of a RAS array: anterior up, patient's right on the left."""
    return slice_ij.T[::-1, ::-1]


def volume_montage_png(
    volume_array: np.ndarray,
    heatmap: np.ndarray,
    path: str | Path,
    n_slices: int = 8,
    window: tuple[float, float] | None = None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    columns: int = 4,
    vmin: float = 0.0,
    vmax: float = 1.0,
    min_value: float | None = None,
    slices: Sequence[int] | None = None,
    affine: np.ndarray | None = None,
    min_panel: int = 192,
    captions: bool = True,
) -> Path:
    """Write a montage of axial slices with the heatmap blended over them as PNG.

    Slices are taken along the third array axis (k) and shown in the radiological convention of 3D
    Slicer (anterior up, the patient's right on the viewer's left) when the array is RAS-oriented;
    with `affine`, both arrays are first reoriented to RAS, the slices are axial whatever the
    storage order, and panels are captioned with their world z (mm). Slices are chosen where the
    heatmap is highest (`pick_slices`) unless given.

    Args:
        volume_array: (I, J, K) intensities.
        heatmap: (I, J, K) scores on the same grid; NaN is transparent.
        path: Output ``.png``.
        n_slices: Number of slices shown.
        window: Intensity (low, high) mapped to black and white, e.g. ``(-160, 240)`` for soft
            tissue in CT; the 1st and 99th percentiles if None.
        alpha: Opacity of the heatmap.
        cmap: Matplotlib colour map.
        columns: Panels per row.
        vmin: Score of the first colour.
        vmax: Score of the last colour.
        min_value: Scores below it are transparent.
        slices: Slice indices (of the RAS-oriented array when `affine` is given) to show instead.
        affine: (4, 4) voxel-to-world affine of the volume (`Volume.affine`).
        min_panel: Small slices are enlarged by a whole factor until their short side reaches this.
        captions: Write each slice's position and heatmap maximum in its corner.
    """
    from PIL import Image, ImageDraw

    vol = np.asarray(volume_array, dtype=np.float64)
    heat = np.asarray(heatmap, dtype=np.float64)
    if vol.ndim != 3 or heat.shape != vol.shape:
        raise ValueError(f"volume and heatmap must be 3D of one shape, got {vol.shape} and {heat.shape}")
    ras_affine = None
    if affine is not None:
        from medwss.data.orientation import orientation_of
        from medwss.io.volume import Volume

        o = orientation_of(Volume(vol, np.asarray(affine, dtype=np.float64)))
        vol, heat, ras_affine = o.to_canonical(vol), o.to_canonical(heat), o.canonical_affine
    chosen = [int(k) for k in slices] if slices is not None else pick_slices(heat, n_slices)
    if not chosen:
        raise ValueError("no slice to show")
    from medwss.transforms.intensity import window_bounds

    lo, hi = window_bounds(vol, window)
    hi = hi if hi > lo else lo + 1.0
    zoom = max(1, int(np.ceil(min_panel / max(min(vol.shape[:2]), 1))))
    panels = []
    for k in chosen:
        gray = np.clip((_axial_view(vol[:, :, k]) - lo) / max(hi - lo, 1e-12), 0, 1)
        base = np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=2)
        h_slice = _axial_view(heat[:, :, k])
        rgb, visible = colorize(h_slice, cmap, vmin, vmax, min_value)
        panel = _blend(base, rgb, visible, alpha).repeat(zoom, axis=0).repeat(zoom, axis=1)
        if captions:
            img = Image.fromarray(panel)
            peak = np.nanmax(h_slice) if np.isfinite(h_slice).any() else float("nan")
            where = f"k={k}" if ras_affine is None else f"z={float((ras_affine @ [0, 0, k, 1])[2]):.1f}mm"
            ImageDraw.Draw(img).text((4, 2), f"{where} max={peak:.2f}", fill=(255, 255, 0))
            panel = np.asarray(img)
        panels.append(panel)
    ncol = max(1, min(int(columns), len(panels)))
    nrow = -(-len(panels) // ncol)
    ph, pw = panels[0].shape[:2]
    gap = 2
    sheet = np.zeros((nrow * ph + (nrow - 1) * gap, ncol * pw + (ncol - 1) * gap, 3), dtype=np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, ncol)
        sheet[r * (ph + gap) : r * (ph + gap) + ph, c * (pw + gap) : c * (pw + gap) + pw] = panel
    return _save_png(sheet, path)
