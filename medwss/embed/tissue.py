"""Where the tissue is: slides at thumbnail scale, the body in volumes, and organ-ROI cropping.

Slides: the thumbnail is converted to HSV. A pixel is tissue when it is saturated (a fixed threshold
or Otsu's threshold on the saturation), not as bright as glass, not so dark that it is ink or debris,
and not pen ink (a green-to-blue hue). The mask is then closed, its holes filled, opened, and objects
smaller than a minimum area dropped. Sizes are given in µm and converted with the slide's mpp.

Fluorescence (multiplex) slides: Otsu's threshold on the log intensity of a nuclear channel
(DAPI, Hoechst, ...), then the same morphology.

Volumes: CT keeps voxels above a Hounsfield threshold, other modalities above Otsu's threshold;
the largest connected component is kept and its holes filled slice by slice along the axial axis.
QA images show axial slices of the canonical RAS+ grid, whatever the stored axis order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from medwss.data.orientation import canonical, orientation_of
from medwss.embed.config import TissueConfig
from medwss.errors import InvalidDataError
from medwss.io.atomic import atomic_path
from medwss.io.volume import Volume

if TYPE_CHECKING:
    from medwss.io.slide import Slide

CT_BODY_HU = -500.0


@dataclass
class TissueMask:
    """A slide's tissue mask at thumbnail scale.

    Attributes:
        mask: (h, w) bool, True on tissue.
        downsample: Level-0 pixels per mask pixel along x and y.
        thumbnail: (h, w, 3) uint8 RGB the mask was computed on.
        pen: (h, w) bool, pixels rejected as pen ink (None if pen rejection was off).
        threshold: Saturation threshold used, in [0, 1].
        mpp: Microns per mask pixel (mean of x and y), if the slide has mpp.
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    thumbnail: np.ndarray
    pen: np.ndarray | None = None
    threshold: float | None = None
    mpp: float | None = None

    @property
    def fraction(self) -> float:
        """Fraction of the slide covered by tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) the mask covers."""
        h, w = self.mask.shape
        return round(w * self.downsample[0]), round(h * self.downsample[1])


# --- slides -------------------------------------------------------------------------------------


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of `values` (finite ones): the cut maximising the between-class variance."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return otsu_from_histogram(hist, edges)


def otsu_from_histogram(hist: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold from a histogram (counts and the len(hist) + 1 bin edges).

    When the best cut falls in an empty gap between two modes, the middle of the gap is returned.
    """
    hist = np.asarray(hist, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    if between.size == 0 or between.max() <= 0:
        return float(edges[0])
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    gaps = np.flatnonzero(np.diff(best) > 1)
    run = best[: gaps[0] + 1] if gaps.size else best
    return float((edges[run[0] + 1] + edges[run[-1] + 1]) / 2)


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius + 0.5


def _px(um: float, mpp: float) -> int:
    return max(0, round(um / mpp))


def _remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0 or min_px <= 1:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]


def _fill(mask: np.ndarray, max_hole_px: float | None) -> np.ndarray:
    filled = ndimage.binary_fill_holes(mask)
    if max_hole_px is None:
        return filled
    holes = filled & ~mask
    return mask | (holes & ~_remove_small(holes, max_hole_px))


def tissue_from_rgb(
    rgb: np.ndarray, config: TissueConfig | None = None, mpp: float = 8.0
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Tissue mask of an RGB image (a slide thumbnail).

    Args:
        rgb: (h, w, 3) uint8.
        config: Detection settings (defaults if None).
        mpp: Microns per pixel of `rgb`, to convert the config's µm sizes to pixels.

    Returns:
        (mask, pen, threshold): (h, w) bool tissue, (h, w) bool pen ink or None, saturation threshold in [0, 1].
    """
    from PIL import Image

    cfg = config or TissueConfig()
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"))
    hue = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    sat = hsv[..., 1].astype(np.float32) / 255.0
    bright = hsv[..., 2].astype(np.float32) / 255.0  # brightest channel
    mean = rgb.mean(axis=-1, dtype=np.float32) / 255.0
    if cfg.saturation == "otsu":  # on the 8-bit saturation's histogram: fast on large thumbnails
        hist = np.bincount(hsv[..., 1].ravel(), minlength=256)
        edges = (np.arange(257) - 0.5) / 255.0
        threshold = max(otsu_from_histogram(hist, edges), cfg.min_saturation)
    else:
        threshold = float(cfg.saturation)
    tissue = (sat > threshold) & (mean <= cfg.max_brightness) & (bright >= cfg.min_brightness)
    ink = big_ink = None
    if cfg.reject_pen:
        lo, hi = cfg.pen_hue
        ink = (hue >= lo) & (hue <= hi) & (sat >= cfg.pen_min_saturation) & (mean <= cfg.max_brightness)
        ink |= bright < cfg.min_brightness  # black ink
        big_ink = _remove_small(ink, cfg.pen_min_area_um2 / mpp**2)
        margin = _px(cfg.pen_margin_um, mpp)
        if margin and ink.any():
            ink = ndimage.binary_dilation(ink, _disk(margin))
            big_ink = ndimage.binary_dilation(big_ink, _disk(margin))
        tissue &= ~ink
    r_close, r_open = _px(cfg.close_um, mpp), _px(cfg.open_um, mpp)
    if r_close:
        padded = np.pad(tissue, r_close)  # no closing against the border
        tissue = ndimage.binary_closing(padded, _disk(r_close))[r_close:-r_close, r_close:-r_close]
    if cfg.fill_holes:  # ink specks inside tissue (marking dye) are holes, filled here
        tissue = _fill(tissue, None if cfg.max_hole_um2 is None else cfg.max_hole_um2 / mpp**2)
    if r_open:
        tissue = ndimage.binary_opening(tissue, _disk(r_open))
    if big_ink is not None:
        tissue &= ~big_ink  # closing and filling must not bring pen strokes back
    tissue = _remove_small(tissue, max(cfg.min_area_um2 / mpp**2, cfg.min_area_px))
    pen = None if ink is None else ink & ~tissue
    return tissue, pen, threshold


NUCLEAR_NAMES = ("dapi", "hoechst", "dna", "nuclear", "nuclei", "draq5", "sytox")


def nuclear_channel(names: Sequence[str], choice: str | int | None = None) -> int:
    """Index of the nuclear channel: `choice` (name or index), else the first named like DAPI/Hoechst, else 0."""
    from medwss.io.slide import resolve_channel

    if choice is not None:
        return resolve_channel(choice, names)
    for i, name in enumerate(names):
        if any(key in name.lower() for key in NUCLEAR_NAMES):
            return i
    return 0


def tissue_from_fluorescence(
    channel: np.ndarray, config: TissueConfig | None = None, mpp: float = 8.0
) -> tuple[np.ndarray, float]:
    """Tissue mask of a fluorescence thumbnail: Otsu's threshold on the log intensity of a nuclear channel.

    Tissue is bright (stained nuclei) on a dark background, so a pixel is tissue above the threshold;
    the mask is then closed, filled, opened and cleaned as in `tissue_from_rgb` (the config's µm sizes).

    Args:
        channel: (h, w) intensities of the nuclear channel (any dtype).
        config: Detection settings (defaults if None).
        mpp: Microns per pixel of `channel`.

    Returns:
        (mask, threshold): (h, w) bool tissue, and the threshold in the channel's intensity units.
    """
    cfg = config or TissueConfig()
    logged = np.log1p(np.clip(np.asarray(channel, dtype=np.float32), 0, None))
    level = otsu_threshold(logged)
    tissue = logged > level
    r_close, r_open = _px(cfg.close_um, mpp), _px(cfg.open_um, mpp)
    if r_close:
        padded = np.pad(tissue, r_close)
        tissue = ndimage.binary_closing(padded, _disk(r_close))[r_close:-r_close, r_close:-r_close]
    if cfg.fill_holes:
        tissue = _fill(tissue, None if cfg.max_hole_um2 is None else cfg.max_hole_um2 / mpp**2)
    if r_open:
        tissue = ndimage.binary_opening(tissue, _disk(r_open))
    tissue = _remove_small(tissue, max(cfg.min_area_um2 / mpp**2, cfg.min_area_px))
    return tissue, float(np.expm1(level))


def detect_tissue(slide: Slide, config: TissueConfig | None = None) -> TissueMask:
    """Find the tissue of a slide on a thumbnail.

    Args:
        slide: The slide (needs microns per pixel, from the file or an override).
        config: Detection settings (defaults if None).

    Raises:
        MissingMetadataError: The slide has no mpp (pass one with ``open_slide(..., mpp=)``).
        CorruptFileError: The slide's pixels cannot be read.
    """
    cfg = config or TissueConfig()
    w0, h0 = slide.dimensions
    slide_mpp = slide.mpp
    size = cfg.thumbnail_max
    if cfg.mask_mpp is not None:
        size = min(size, max(64, math.ceil(max(w0, h0) * slide_mpp / cfg.mask_mpp)))
    thumb = slide.thumbnail(size)
    th, tw = thumb.shape[:2]
    downsample = (w0 / tw, h0 / th)
    mpp = slide_mpp * (downsample[0] + downsample[1]) / 2
    names = slide.channel_names
    if cfg.mode == "fluorescence" or (cfg.mode == "auto" and names is not None):
        if names is None:
            raise InvalidDataError(
                "fluorescence tissue detection needs a multiplex slide (QPTIFF, OME CYX)", slide.path
            )
        try:
            c = nuclear_channel(names, cfg.nuclear_channel)
        except ValueError as exc:
            raise InvalidDataError(f"tissue.nuclear_channel: {exc}", slide.path) from exc
        channel = slide.thumbnail_channels(size)[..., c]
        if channel.shape != thumb.shape[:2]:
            from PIL import Image

            channel = np.asarray(Image.fromarray(channel).resize((tw, th), Image.Resampling.BILINEAR))
        mask, threshold = tissue_from_fluorescence(channel, cfg, mpp)
        return TissueMask(mask, downsample, thumb, None, threshold, mpp)
    mask, pen, threshold = tissue_from_rgb(thumb, cfg, mpp)
    return TissueMask(mask, downsample, thumb, pen, threshold, mpp)


def _outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)


def upscale(image: np.ndarray, min_side: int = 512) -> tuple[np.ndarray, int]:
    """`image` repeated by an integer factor so its longer side is at least `min_side`; also the factor."""
    f = max(1, math.ceil(min_side / max(image.shape[:2])))
    if f == 1:
        return image, 1
    return np.repeat(np.repeat(image, f, axis=0), f, axis=1), f


def save_rgb_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an (h, w, 3) uint8 image as PNG, atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def save_tissue_png(tissue_mask: TissueMask, path: str | Path) -> Path:
    """QA image: the thumbnail, glass dimmed, tissue outlined in green, pen ink tinted red; atomic write."""
    rgb, f = upscale(tissue_mask.thumbnail)
    mask, _ = upscale(tissue_mask.mask)
    out = rgb.astype(np.float32)
    out[~mask] = out[~mask] * 0.5 + 127
    if tissue_mask.pen is not None:
        pen, _ = upscale(tissue_mask.pen)
        out[pen] = out[pen] * 0.5 + np.array([127, 0, 0], np.float32)
    out[_outline(mask, max(1, f))] = (0, 200, 0)
    return save_rgb_png(out.clip(0, 255).astype(np.uint8), path)


TISSUE_CLASS = "Tissue"


def tissue_polygons(tissue_mask: TissueMask) -> list:
    """The tissue as polygons with their holes, in level-0 pixels (rings ``[outer, hole, ...]`` where holed)."""
    from medwss.io.annotations import mask_to_polygons, rings

    scale = np.asarray(tissue_mask.downsample, dtype=np.float64)
    shapes = []
    for shape in mask_to_polygons(tissue_mask.mask, downsample=1.0, holes=True):
        loops = [r * scale for r in rings(shape)]
        shapes.append(loops[0] if len(loops) == 1 else loops)
    return shapes


def save_tissue_geojson(tissue_mask: TissueMask, path: str | Path) -> Path:
    """The tissue mask as QuPath GeoJSON: one ``annotation`` of class ``Tissue`` per piece, holes kept,
    level-0 pixels; edit it in QuPath and give it back to ``medwss tile --tissue-geojson``. Atomic write."""
    from medwss.io.annotations import write_geojson

    return write_geojson(tissue_polygons(tissue_mask), path, classification=TISSUE_CLASS, color=(0, 200, 0))


def tissue_from_geojson(path: str | Path, tissue_mask: TissueMask) -> TissueMask:
    """`tissue_mask` with its mask replaced by the polygons of a GeoJSON file (level-0 pixels, e.g. a
    mask edited in QuPath), rasterised on the same grid (a pixel is tissue when its centre is inside;
    holes are cut out). Every polygon of the file counts, whatever its class.

    Raises:
        FileNotFound, CorruptFileError: The file is missing or not GeoJSON. InvalidDataError: it has no polygon.
    """
    from medwss.io.annotations import polygons_to_mask, read_geojson, rings

    shapes = read_geojson(path)
    if not shapes:
        raise InvalidDataError("tissue GeoJSON holds no polygon", path)
    scale = np.asarray(tissue_mask.downsample, dtype=np.float64)
    scaled = [[r / scale for r in rings(s)] for s in shapes]
    mask = polygons_to_mask(scaled, tissue_mask.mask.shape, 1.0)
    return TissueMask(mask, tissue_mask.downsample, tissue_mask.thumbnail, None, None, tissue_mask.mpp)


# --- volumes ------------------------------------------------------------------------------------


def _first_channel(volume: Volume) -> np.ndarray:
    a = volume.array
    return a if a.ndim == 3 else a.reshape(a.shape[:3] + (-1,))[..., 0]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def body_mask(
    volume: Volume, modality: str | None = None, hu_threshold: float = CT_BODY_HU, low_fraction: float = 0.1
) -> np.ndarray:
    """The body (foreground) of a volume: (I, J, K) bool on the volume's grid.

    CT: voxels above `hu_threshold` HU. Other modalities: above Otsu's threshold, or above
    `low_fraction` of the 99th percentile if that is lower (when the field of view is all body, Otsu
    splits fat from muscle instead of body from air). A small opening detaches the table and noise,
    the largest connected component is kept, and its holes (lungs, bowel gas) are filled slice by
    slice along the axial axis (`Orientation.axial_axis`, whatever the stored axis order: a
    permuted copy of a file gets the permuted mask). Multi-channel volumes use channel 0.

    Args:
        volume: The volume.
        modality: ``CT``, ``MR``, ...; defaults to the volume's metadata.
        hu_threshold: CT threshold in Hounsfield units.
        low_fraction: Cap of the non-CT threshold, as a fraction of the 99th percentile.
    """
    a = _first_channel(volume)
    finite = np.isfinite(a) if np.issubdtype(a.dtype, np.floating) else np.ones(a.shape, bool)
    if (modality or volume.modality) == "CT":
        fg = finite & (a > hu_threshold)
    else:
        values = a[finite]
        cap = low_fraction * float(np.percentile(values, 99)) if values.size else 0.0
        fg = finite & (a > min(otsu_threshold(values), cap))
    opened = ndimage.binary_opening(fg, iterations=1)
    if opened.any():
        fg = ndimage.binary_dilation(_largest_component(opened), iterations=1) & fg
    else:
        fg = _largest_component(fg)
    axis = orientation_of(volume).axial_axis
    moved = np.moveaxis(fg, axis, -1)
    for k in range(moved.shape[-1]):
        if moved[..., k].any():
            moved[..., k] = ndimage.binary_fill_holes(moved[..., k])
    return np.ascontiguousarray(np.moveaxis(moved, -1, axis))


def crop_box(
    label_map: np.ndarray,
    labels: int | Sequence[int],
    spacing: Sequence[float],
    margin_mm: float | Sequence[float] = 0.0,
) -> tuple[slice, slice, slice]:
    """Bounding box of the voxels holding any of `labels`, grown by `margin_mm` and clipped to the grid.

    Raises:
        InvalidDataError: No voxel holds any of the labels.
    """
    wanted = np.isin(np.asarray(label_map)[..., 0] if label_map.ndim == 4 else label_map, np.atleast_1d(labels))
    if not wanted.any():
        raise InvalidDataError(f"no voxel holds label(s) {list(np.atleast_1d(labels))}")
    margins = np.broadcast_to(np.asarray(margin_mm, dtype=np.float64), (3,))
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(wanted.any(axis=other))
        m = math.ceil(margins[axis] / spacing[axis] - 1e-9)
        box.append(slice(max(0, int(idx[0]) - m), min(wanted.shape[axis], int(idx[-1]) + 1 + m)))
    return box[0], box[1], box[2]


def crop_to_labels(
    volume: Volume,
    label_map: Volume | np.ndarray,
    labels: int | Sequence[int],
    margin_mm: float | Sequence[float] = 0.0,
) -> Volume:
    """Crop `volume` to the box around some labels (an organ ROI), keeping every voxel's world position.

    Args:
        volume: The image (3D or 4D).
        label_map: Label map on the same grid (a `Volume` or an array).
        labels: Label value(s) to keep inside the box, e.g. ``[2, 3]`` for both kidneys.
        margin_mm: Margin around the labels, mm (one value or one per axis).

    Returns:
        The cropped volume; its affine is shifted so world coordinates are unchanged, and
        ``metadata["crop_offset"]`` holds the crop's first voxel in the original grid.

    Raises:
        InvalidDataError: The label map is on another grid, or holds none of the labels.
    """
    where = label_map.path if isinstance(label_map, Volume) else volume.path
    lab = label_map.array if isinstance(label_map, Volume) else np.asarray(label_map)
    if lab.shape[:3] != volume.shape[:3]:
        raise InvalidDataError(f"label map shape {lab.shape[:3]} is not the image's {volume.shape[:3]}", where)
    if isinstance(label_map, Volume) and not np.allclose(label_map.affine, volume.affine, atol=1e-3):
        raise InvalidDataError("label map is on another grid than the image; resample it first (resample_to)", where)
    try:
        box = crop_box(lab, labels, volume.spacing, margin_mm)
    except InvalidDataError as exc:
        raise InvalidDataError(exc.message, where) from exc
    offset = np.array([s.start for s in box], dtype=np.float64)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ offset + volume.affine[:3, 3]
    array = np.ascontiguousarray(volume.array[box])
    meta = {**volume.metadata, "crop_offset": tuple(int(s.start) for s in box)}
    return Volume(array, affine, meta, volume.path)


def slices_rgb(volume: Volume | np.ndarray, ks: Sequence[int], modality: str | None = None) -> list[np.ndarray]:
    """Axial slices `ks` as RGB images, rows = j, columns = i.

    A `Volume` is put on its canonical RAS+ grid first, so `ks` index the axial axis whatever the
    stored axis order; a bare array is taken as already canonical (k = third axis). Intensities are
    scaled once for the whole volume (`medwss.transforms.intensity.normalise`): the abdominal HU
    window for CT, the 1st–99th percentiles otherwise.
    """
    from medwss.transforms.intensity import normalise

    if isinstance(volume, Volume):
        volume = canonical(volume)[0]
    a = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    a = a if a.ndim == 3 else a.reshape(a.shape[:3] + (-1,))[..., 0]
    mod = modality or (volume.modality if isinstance(volume, Volume) else None)
    picks = list(ks)  # CT: a fixed window, so only the slices shown need scaling
    grey = normalise(a[:, :, picks], window="abdomen") if mod == "CT" else normalise(a, "percentile")[:, :, picks]
    out = []
    for n in range(len(ks)):
        g = np.ascontiguousarray((grey[:, :, n].T * 255).astype(np.uint8))
        out.append(np.repeat(g[..., None], 3, axis=-1))
    return out


def montage(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images side by side on white, top-aligned."""
    h = max(im.shape[0] for im in images)
    w = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.full((h, w, 3), 255, np.uint8)
    x = 0
    for im in images:
        out[: im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def save_body_png(
    volume: Volume, mask: np.ndarray, path: str | Path, modality: str | None = None, n_slices: int = 6
) -> Path:
    """QA image for volumes: a few axial slices with the foreground outlined in green; atomic write.

    `mask` lies on the volume's stored grid (as `body_mask` returns it); both are shown on the
    canonical grid, so the slices are axial whatever the stored axis order.
    """
    cvol, orient = canonical(volume)
    mask = orient.to_canonical(np.asarray(mask, dtype=bool))
    ks = np.flatnonzero(mask.any(axis=(0, 1)))
    if ks.size == 0:
        ks = np.arange(cvol.shape[2])
    picks = np.unique(ks[np.linspace(0, len(ks) - 1, min(n_slices, len(ks))).round().astype(int)])
    panels = []
    for k, image in zip(picks, slices_rgb(cvol, picks.tolist(), modality), strict=True):
        rgb, f = upscale(image, 256)
        m, _ = upscale(np.ascontiguousarray(mask[:, :, k].T), 256)
        rgb[_outline(m, max(1, f // 2))] = (0, 200, 0)
        panels.append(rgb)
    return save_rgb_png(montage(panels), path)
