"""Synthetic H&E whole-slide images with exact tumour ground truth.

Each slide is a pyramidal tiled TIFF (OpenSlide opens it as generic-tiff, with microns per pixel):
a few irregular tissue blobs on a white background, coloured by a Beer–Lambert model of
haematoxylin and eosin (pink stroma, purple nuclei); tumour regions are denser, darker and have
larger nuclei. About half the slides hold tumour (slide label 1), some only small lesions of a few
tiles (200–400 µm across). Some slides carry a green or blue pen stroke.

`WSIOptions` makes them harder (the defaults give the original phantoms, draw for draw): fainter
tumour (`tumor_contrast`), isolated tumour-like patches in every slide that are not tumour
(`lookalikes`, so a single tumour-like tile does not make a slide positive and only the spatial
context of a lesion does), lesion sizes, and a stain shift between sites (`stain_shift`).

Geometry (tissue, tumour, pen) is drawn on a grid of `GEOMETRY_DOWNSAMPLE` level-0 pixels per
pixel and repeated onto level 0, so the level-0 tumour region is known exactly; the ground-truth
masks are that region averaged over `MASK_DOWNSAMPLE` × `MASK_DOWNSAMPLE` blocks (a pixel is set
when at least half of its block is tumour).

Files per case, under the output folder::

    slides/<case>.tif                      the slide
    masks/<case>_tumor_ds16.png            tumour mask, 0/1, one pixel per 16×16 level-0 pixels
    masks/<case>_tissue_ds16.png           tissue mask, 0/1, same grid
    annotations/<case>.geojson             tumour outlines, QuPath GeoJSON, level-0 pixels
    annotations/<case>.xml                 the same, CAMELYON16-style ASAP XML
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from pydantic import Field
from scipy import ndimage

from medwss.config import StrictConfig
from medwss.data.manifest import write_manifest
from medwss.data.phantoms.common import (
    add_splits,
    balanced_label,
    case_rng,
    check_kind_args,
    ellipsoid,
    parse_options,
    register_phantom,
    rotation_2d,
    save_png,
    site_of,
    smooth_noise,
    track,
)
from medwss.io.annotations import mask_to_polygons, write_camelyon_xml, write_geojson
from medwss.io.tiff_writer import write_pyramid_tiff

KIND = "wsi"
MPP = 0.5
BASE_SHAPE = (3072, 4096)  # (H, W) of level 0 at scale 1
MASK_DOWNSAMPLE = 16
GEOMETRY_DOWNSAMPLE = 4
SMALL_LESION_UM = (200.0, 400.0)
PEN_PROBABILITY = 0.35
LOOKALIKE_STREAM = 3  # look-alikes draw from their own generator, so the rest of a slide is unchanged


class WSIOptions(StrictConfig):
    """Difficulty of the slide phantoms; the defaults give the original phantoms, draw for draw."""

    tumor_contrast: float = Field(1.0, ge=0, le=1)
    """How far tumour differs from stroma (nuclear crowding, size and darkness, eosin, haematoxylin
    wash): 1 the original phantoms, 0 no difference at all."""
    large_lesion_probability: float = Field(0.6, ge=0, le=1)
    """Chance that a positive slide holds one large lesion (a quarter to half of the short side)."""
    small_lesion_um: tuple[float, float] = Field(SMALL_LESION_UM)
    """Diameter range of the small lesions, µm."""
    lookalikes: tuple[int, int] = (0, 0)
    """Range of isolated tumour-like patches per slide, of either label; they are not tumour in the masks."""
    lookalike_um: tuple[float, float] = (150.0, 220.0)
    """Diameter range of the look-alike patches, µm."""
    lookalike_balance: float = Field(0.0, ge=0)
    """Positive slides drop this × (their tumour area / a look-alike's mean area) look-alikes, so the
    total tumour-like area overlaps between the classes (defeats mean pooling)."""
    stain_shift: float = Field(0.0, ge=0, le=0.8)
    """Extra stain difference between sites: sites after the first get ×(1 + s) haematoxylin,
    ×(1 − s/2) eosin and a denser glass; 0 the original sites."""


class WSISite(TypedDict):
    """Staining of one site (optical densities are per unit stain, RGB)."""

    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    h_strength: float
    e_strength: float
    background_od: float


WSI_SITES: dict[str, WSISite] = {
    "site_a": {
        "hematoxylin": (0.65, 0.70, 0.29),  # optical density per unit stain, RGB
        "eosin": (0.05, 0.8, 0.45),
        "h_strength": 1.0,
        "e_strength": 1.0,
        "background_od": 0.035,
    },
    "site_b": {
        "hematoxylin": (0.55, 0.78, 0.33),
        "eosin": (0.12, 0.85, 0.25),
        "h_strength": 0.85,
        "e_strength": 1.25,
        "background_od": 0.06,
    },
}
"""Per-site staining: stain optical-density vectors, stain strengths and glass background density."""

PEN_COLORS = {"green": (0.85, 0.25, 0.75), "blue": (0.9, 0.55, 0.12)}
"""Optical density of pen inks (green absorbs red and blue, blue absorbs red and green)."""


@dataclass
class SlidePhantom:
    """One synthetic slide and its ground truth.

    Attributes:
        rgb: (H, W, 3) uint8 level-0 image.
        tumor: (H / 16, W / 16) uint8 tumour mask (0/1) at `MASK_DOWNSAMPLE`.
        tissue: (H / 16, W / 16) uint8 tissue mask (0/1) at `MASK_DOWNSAMPLE`.
        polygons: Tumour outlines, (N, 2) arrays of (x, y) in level-0 pixels.
        label: 1 iff the slide holds tumour.
        site: Site name (a key of `WSI_SITES`).
        pen: Pen colour, or "" without pen mark.
        ink: (H / 16, W / 16) uint8 mask (0/1) of the pen stroke at `MASK_DOWNSAMPLE`.
        meta: Other facts (lesion count, tumour area in µm², mpp).
    """

    rgb: np.ndarray
    tumor: np.ndarray
    tissue: np.ndarray
    polygons: list[np.ndarray]
    label: int
    site: str
    pen: str
    ink: np.ndarray
    meta: dict[str, object] = field(default_factory=dict)


def _slide_shape(scale: float) -> tuple[int, int]:
    step = MASK_DOWNSAMPLE
    h, w = (max(4 * step, int(round(s * scale / step)) * step) for s in BASE_SHAPE)
    return h, w


def _level0_coords(h4: int, w4: int) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 (x, y) of the centres of the geometry grid's pixels, as broadcastable arrays."""
    g = GEOMETRY_DOWNSAMPLE
    x = ((np.arange(w4, dtype=np.float32) + 0.5) * g)[None, :]
    y = ((np.arange(h4, dtype=np.float32) + 0.5) * g)[:, None]
    return np.broadcast_to(x, (h4, w4)), np.broadcast_to(y, (h4, w4))


def _tissue(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Irregular tissue blobs on the geometry grid (bool, no holes)."""
    g = GEOMETRY_DOWNSAMPLE
    h4, w4 = h // g, w // g
    x, y = _level0_coords(h4, w4)
    side = min(h, w)
    field = np.full((h4, w4), -np.inf, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        center = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h)
        radii = (rng.uniform(0.14, 0.3) * side, rng.uniform(0.1, 0.22) * side)
        r = ellipsoid((x, y), center, radii, rotation_2d(rng.uniform(0, np.pi)))
        field = np.maximum(field, 1.0 - r)
    field += 0.22 * smooth_noise(rng, (h4, w4), cell=side / g / 8) + 0.05 * smooth_noise(rng, (h4, w4), cell=10)
    margin = 0.04 * side / g
    border = np.minimum(np.minimum(x, w - x), np.minimum(y, h - y)) / g
    field -= np.clip((margin - border) / margin, 0, None) * 2.0
    tissue = ndimage.binary_fill_holes(field > 0)
    labels, n = ndimage.label(tissue)
    if n > 1:
        sizes = ndimage.sum(tissue, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= 0.02 * tissue.sum()) + 1
        tissue = np.isin(labels, keep)
    if not tissue.any():  # never seen, but a slide needs tissue: fall back to a central ellipse
        tissue = ellipsoid((x, y), (w / 2, h / 2), (w / 4, h / 4)) < 1
    return tissue


def _blob(rng: np.random.Generator, shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """A star-shaped irregular blob on the geometry grid; `center` (row, col) and `radius` in grid pixels."""
    h4, w4 = shape
    reach = int(np.ceil(radius * 1.6)) + 2
    r0, r1 = max(0, int(center[0]) - reach), min(h4, int(center[0]) + reach + 1)
    c0, c1 = max(0, int(center[1]) - reach), min(w4, int(center[1]) + reach + 1)
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dy, dx = rr - center[0], cc - center[1]
    theta = np.arctan2(dy, dx)
    bound = np.ones_like(theta)
    for k in range(2, 7):
        bound += rng.uniform(0, 0.22 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    out = np.zeros(shape, dtype=bool)
    out[r0:r1, c0:c1] = np.hypot(dy, dx) < radius * bound
    return out


def _tumor(
    rng: np.random.Generator, tissue: np.ndarray, h: int, w: int, mpp: float, options: WSIOptions
) -> tuple[np.ndarray, int]:
    """Tumour lesions inside the tissue on the geometry grid; also returns the number of small lesions."""
    g = GEOMETRY_DOWNSAMPLE
    depth = ndimage.distance_transform_edt(tissue)
    diameters = []  # level-0 pixels
    if rng.random() < options.large_lesion_probability:
        diameters.append(rng.uniform(0.25, 0.5) * min(h, w))
        n_small = int(rng.integers(0, 3))
    else:
        n_small = int(rng.integers(1, 4))
    diameters += [rng.uniform(*options.small_lesion_um) / mpp for _ in range(n_small)]
    tumor = np.zeros_like(tissue)
    for d in diameters:
        radius = d / 2 / g
        ok = np.flatnonzero(depth.ravel() >= min(0.8 * radius, 0.9 * depth.max()))
        center = np.unravel_index(ok[rng.integers(len(ok))], tissue.shape)
        tumor |= _blob(rng, tissue.shape, (float(center[0]), float(center[1])), radius)
    tumor = ndimage.binary_fill_holes(tumor & tissue)
    return tumor, n_small


def _lookalikes(
    rng: np.random.Generator, tissue: np.ndarray, tumor: np.ndarray, mpp: float, options: WSIOptions
) -> np.ndarray:
    """Isolated tumour-like patches in the tissue, away from the tumour and from each other (geometry grid).

    Centres are drawn by rejection: inside the tissue by the patch's radius, a look-alike's largest
    radius of stroma from each other and two from the tumour.
    """
    lo, hi = options.lookalikes
    count = int(rng.integers(lo, hi + 1))
    g = GEOMETRY_DOWNSAMPLE
    radius_lo, radius_hi = (d / mpp / 2 / g for d in options.lookalike_um)
    if count and tumor.any() and options.lookalike_balance > 0:
        mean_area = np.pi * ((radius_lo + radius_hi) / 2) ** 2
        count = max(0, count - int(round(options.lookalike_balance * tumor.sum() / mean_area)))
    looks = np.zeros_like(tissue)
    if count == 0:
        return looks
    depth = ndimage.distance_transform_edt(tissue)
    to_tumor = ndimage.distance_transform_edt(~tumor) if tumor.any() else np.full(tissue.shape, np.inf)
    gap = radius_hi
    centres: list[tuple[float, float, float]] = []  # row, col, radius
    for _ in range(50 * count):
        if len(centres) == count:
            break
        radius = rng.uniform(radius_lo, radius_hi)
        i, j = int(rng.integers(tissue.shape[0])), int(rng.integers(tissue.shape[1]))
        if depth[i, j] < radius or to_tumor[i, j] < radius + 2 * gap:
            continue
        if any(np.hypot(i - r2, j - c2) < radius + r3 + gap for r2, c2, r3 in centres):
            continue
        centres.append((float(i), float(j), radius))
    for r, c, radius in centres:
        looks |= _blob(rng, tissue.shape, (r, c), radius)
    return looks & tissue


def _shifted_stains(site: str, shift: float) -> WSISite:
    """The stains of `site`, with the extra between-site shift for sites after the first."""
    stains = WSI_SITES[site]
    if shift <= 0 or site == next(iter(WSI_SITES)):
        return stains
    return {
        **stains,
        "h_strength": stains["h_strength"] * (1 + shift),
        "e_strength": stains["e_strength"] * (1 - shift / 2),
        "background_od": stains["background_od"] + 0.05 * shift,
    }


def _mix(a: float, b: float, c: float) -> float:
    """``a`` at c = 0, ``b`` at c = 1 (exactly)."""
    return a * (1 - c) + b * c


def _pen(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Ink density of a smooth pen stroke on the geometry grid (float32, 0 outside the stroke)."""
    g = GEOMETRY_DOWNSAMPLE
    h4, w4 = h // g, w // g
    # Quadratic Bézier through a random arc across a part of the slide.
    p0 = np.array([rng.uniform(0.05, 0.4) * w4, rng.uniform(0.05, 0.95) * h4])
    p2 = np.array([rng.uniform(0.6, 0.95) * w4, rng.uniform(0.05, 0.95) * h4])
    p1 = (p0 + p2) / 2 + rng.normal(0, 0.2, 2) * np.array([w4, h4])
    t = np.linspace(0, 1, 400)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    seeds = np.zeros((h4, w4), dtype=bool)
    cols = np.clip(pts[:, 0].astype(int), 0, w4 - 1)
    rows = np.clip(pts[:, 1].astype(int), 0, h4 - 1)
    seeds[rows, cols] = True
    half_width = rng.uniform(12, 22) / g * max(1.0, min(h, w) / BASE_SHAPE[0]) ** 0.5
    dist = ndimage.distance_transform_edt(~seeds)
    ink = np.clip(half_width - dist, 0, 1.5).astype(np.float32) / 1.5
    ink *= 0.75 + 0.15 * smooth_noise(rng, (h4, w4), cell=20)
    return np.clip(ink, 0, None)


def _upsample_axis(a: np.ndarray, f: int, axis: int) -> np.ndarray:
    """Bilinear upsampling by the integer `f` along `axis` (pixel centres aligned, edges clamped)."""
    n = a.shape[axis]
    first, last = np.take(a, [0], axis=axis), np.take(a, [n - 1], axis=axis)
    padded = np.concatenate([first, a, last], axis=axis)
    lead = (slice(None),) * axis
    before, here, after = (
        padded[lead + (slice(0, n),)],
        padded[lead + (slice(1, n + 1),)],
        padded[lead + (slice(2, None),)],
    )
    out = np.empty(a.shape[: axis + 1] + (f,) + a.shape[axis + 1 :], dtype=np.float32)
    for p in range(f):
        offset = (p + 0.5) / f - 0.5  # position of output pixel p inside input pixel q, in input pixels
        other, wt = (before, -offset) if offset < 0 else (after, offset)
        view = out[lead + (slice(None), p)]
        np.multiply(here, np.float32(1 - wt), out=view)
        view += other * np.float32(wt)
    return out.reshape(a.shape[:axis] + (n * f,) + a.shape[axis + 1 :])


def _upsample_rows(a: np.ndarray, r0: int, r1: int, f: int) -> np.ndarray:
    """Rows ``r0:r1`` (multiples of `f`) of the bilinear upsampling of 2D `a` by the integer `f`."""
    q0, q1 = r0 // f, r1 // f
    rows = np.arange(q0 - 1, q1 + 1).clip(0, a.shape[0] - 1)  # one input row of margin each side
    up = _upsample_axis(a[rows], f, axis=0)[f:-f]
    return _upsample_axis(up, f, axis=1)


def _nucleus_kernels(
    rng: np.random.Generator, semi_major: tuple[float, float], semi_minor: tuple[float, float], count: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Soft elliptical nucleus stamps as (row offsets, col offsets, values), with chromatin texture."""
    kernels = []
    for _ in range(count):
        a, b = rng.uniform(*semi_major), rng.uniform(*semi_minor)
        reach = int(np.ceil(a)) + 1
        yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1].astype(np.float32)
        r = ellipsoid((xx, yy), (0.0, 0.0), (a, b), rotation_2d(rng.uniform(0, np.pi)))
        value = np.clip((1.0 - r) * max(a, b) * 0.8, 0, 1) * (0.8 + 0.2 * rng.random(r.shape))
        keep = value > 0.02
        kernels.append((yy[keep].astype(np.int64), xx[keep].astype(np.int64), value[keep].astype(np.float32)))
    return kernels


def _nuclei(
    rng: np.random.Generator, tissue: np.ndarray, tumor: np.ndarray, h: int, w: int, contrast: float = 1.0
) -> np.ndarray:
    """Haematoxylin density of nuclei at level 0, (H, W) float32 in [0, 1.6]; `contrast` as in `WSIOptions`."""
    g = GEOMETRY_DOWNSAMPLE
    # Expected nuclei per level-0 pixel: stroma, tumour (crowded), lymphocytes.
    lam_stroma, lam_tumor, lam_lymph = 1 / 700, _mix(1 / 700, 1 / 330, contrast), 1 / 6000
    density = tissue * (lam_stroma * (1 + 0.5 * smooth_noise(rng, tissue.shape, cell=25)).clip(0.2, None))
    density = np.where(tumor, lam_tumor, density).astype(np.float32)
    lam_max = float(density.max()) if density.size else 0.0
    stroma_kernels = _nucleus_kernels(rng, (3.5, 6.5), (2.0, 3.2), 12)  # small, elongated
    tumor_kernels = _nucleus_kernels(  # large, round
        rng,
        (_mix(3.5, 6.0, contrast), _mix(6.5, 9.5, contrast)),
        (_mix(2.0, 4.5, contrast), _mix(3.2, 7.5, contrast)),
        12,
    )
    lymph_kernels = _nucleus_kernels(rng, (3.0, 4.0), (2.8, 3.6), 4)  # small, round
    populations = []  # (rows, cols, kernels, darkness)
    if lam_max > 0:
        n = rng.poisson(lam_max * h * w)
        ys, xs = rng.random(n) * h, rng.random(n) * w
        accept = rng.random(n) * lam_max < density[(ys // g).astype(int), (xs // g).astype(int)]
        ys, xs = ys[accept].astype(np.int64), xs[accept].astype(np.int64)
        in_tumor = tumor[ys // g, xs // g]
        populations.append((ys[~in_tumor], xs[~in_tumor], stroma_kernels, 0.85))
        populations.append((ys[in_tumor], xs[in_tumor], tumor_kernels, _mix(0.85, 1.25, contrast)))
        nl = rng.poisson(lam_lymph * tissue.sum() * g * g)
        ly, lx = (rng.random(nl) * h).astype(np.int64), (rng.random(nl) * w).astype(np.int64)
        inside = tissue[ly // g, lx // g]
        populations.append((ly[inside], lx[inside], lymph_kernels, 1.5))
    rows, cols, vals = [], [], []
    for cy, cx, kernels, darkness in populations:
        which = rng.integers(len(kernels), size=len(cy))
        strength = darkness * rng.uniform(0.8, 1.2, size=len(cy)).astype(np.float32)
        for k, (dy, dx, v) in enumerate(kernels):
            pick = which == k
            yy, xx = cy[pick, None] + dy, cx[pick, None] + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            rows.append(yy[ok])
            cols.append(xx[ok])
            vals.append((v[None, :] * strength[pick, None])[ok])
    if not rows:
        return np.zeros((h, w), dtype=np.float32)
    flat = np.concatenate(rows) * w + np.concatenate(cols)
    nuc = np.bincount(flat, weights=np.concatenate(vals), minlength=h * w).astype(np.float32)
    np.minimum(nuc, 1.6, out=nuc)
    return nuc.reshape(h, w)


_OD_STEP = 512  # optical-density quantisation of the lookup table: 1/512
_OD_TO_RGB = np.round(255 * np.exp(-np.arange(8 * _OD_STEP) / _OD_STEP)).astype(np.uint8)


def _render(
    rng: np.random.Generator,
    tissue: np.ndarray,
    tumor: np.ndarray,
    pen: np.ndarray | None,
    pen_color: str,
    site: str,
    h: int,
    w: int,
    band: int = 256,
    options: WSIOptions | None = None,
) -> np.ndarray:
    """The level-0 RGB image from the geometry: Beer–Lambert mixing of stains and ink.

    Stain densities are drawn on the geometry grid and upsampled bilinearly; nuclei are stamped at
    level 0. The image is composed in bands of rows, so temporaries stay small.
    """
    g = GEOMETRY_DOWNSAMPLE
    options = options or WSIOptions()
    contrast = options.tumor_contrast
    stains = _shifted_stains(site, options.stain_shift)
    shape4 = tissue.shape
    texture = 0.6 * smooth_noise(rng, shape4, cell=8) + 0.4 * smooth_noise(rng, shape4, cell=2)
    loose = smooth_noise(rng, shape4, cell=12) > 1.6  # pale loose stroma / fat spaces
    soft = ndimage.gaussian_filter(tissue.astype(np.float32), 0.7)
    eosin4 = soft * np.where(loose, 0.12, 0.5 + 0.16 * texture) * np.where(tumor, _mix(1.0, 0.8, contrast), 1.0)
    eosin4 = (eosin4 * float(stains["e_strength"])).astype(np.float32)
    hema4 = ((0.05 * soft + _mix(0.0, 0.1, contrast) * tumor) * float(stains["h_strength"])).astype(np.float32)
    pen4 = None if pen is None else pen.astype(np.float32)
    nuc = _nuclei(rng, tissue, tumor, h, w, contrast)
    h_strength = np.float32(stains["h_strength"])
    h_vec = np.asarray(stains["hematoxylin"], dtype=np.float32)
    e_vec = np.asarray(stains["eosin"], dtype=np.float32)
    ink = np.asarray(PEN_COLORS.get(pen_color, (0, 0, 0)), dtype=np.float32)
    background = np.float32(stains["background_od"])
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    for r0 in range(0, h, band):
        r1 = min(h, r0 + band)
        n_b = nuc[r0:r1]
        eosin = _upsample_rows(eosin4, r0, r1, g)
        eosin *= 1.0 - 0.5 * np.minimum(n_b, 1.0)  # nuclei hide the eosin beneath
        hema = _upsample_rows(hema4, r0, r1, g)
        hema += n_b * h_strength
        pen_b = None if pen4 is None else _upsample_rows(pen4, r0, r1, g)
        grain = rng.random((r1 - r0, w), dtype=np.float32)
        grain *= np.float32(0.14)
        grain += np.float32(0.93)
        od = np.empty((3, r1 - r0, w), dtype=np.float32)  # channel planes: fast contiguous arithmetic
        tmp = np.empty((r1 - r0, w), dtype=np.float32)
        for c in range(3):
            np.multiply(hema, h_vec[c], out=od[c])
            od[c] += np.multiply(eosin, e_vec[c], out=tmp)
            if pen_b is not None:
                od[c] += np.multiply(pen_b, ink[c], out=tmp)
        od *= grain
        od += background
        od *= _OD_STEP
        np.clip(od, 0, len(_OD_TO_RGB) - 1, out=od)
        rgb[r0:r1] = np.take(_OD_TO_RGB, od.astype(np.int32)).transpose(1, 2, 0)
    return rgb


def _block_fraction(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f, a.shape[1] // f
    return a[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3))


def make_slide(
    seed: int,
    index: int,
    scale: float = 1.0,
    site: str = "site_a",
    label: int | None = None,
    mpp: float = MPP,
    options: WSIOptions | None = None,
) -> SlidePhantom:
    """Synthesise slide `index` of the run seeded by `seed` (the same whatever the other cases).

    Args:
        seed: Run seed.
        index: Case number.
        scale: Multiplies the level-0 size (4096 × 3072 at scale 1); nuclei keep their size.
        site: Staining site, a key of `WSI_SITES`.
        label: 1 to place tumour, 0 for none; drawn with `balanced_label` if None.
        mpp: Microns per level-0 pixel (sets the physical size of small lesions).
        options: Difficulty (`WSIOptions`); None for the original phantoms.
    """
    options = options or WSIOptions()
    rng = case_rng(seed, KIND, index)
    label = balanced_label(seed, KIND, index) if label is None else int(label)
    h, w = _slide_shape(scale)
    tissue = _tissue(rng, h, w)
    n_small = 0
    if label:
        tumor, n_small = _tumor(rng, tissue, h, w, mpp, options)
    else:
        tumor = np.zeros_like(tissue)
    looks = (
        _lookalikes(case_rng(seed, KIND, index, LOOKALIKE_STREAM), tissue, tumor, mpp, options)
        if options.lookalikes[1] > 0
        else np.zeros_like(tissue)
    )
    pen_color = ""
    pen = None
    if rng.random() < PEN_PROBABILITY:
        pen_color = str(rng.choice(sorted(PEN_COLORS)))
        pen = _pen(rng, h, w)
    rgb = _render(rng, tissue, tumor | looks, pen, pen_color, site, h, w, options=options)
    f = MASK_DOWNSAMPLE // GEOMETRY_DOWNSAMPLE
    tumor_frac = _block_fraction(tumor.astype(np.float32), f)
    tumor_mask = tumor_frac >= 0.5
    if tumor.any() and not tumor_mask.any():  # keep "label 1 iff the mask holds tumour"
        tumor_mask.flat[np.argmax(tumor_frac)] = True
    tissue_mask = (_block_fraction(tissue.astype(np.float32), f) >= 0.5) | tumor_mask
    ink = np.zeros_like(tissue_mask) if pen is None else _block_fraction(pen, f) >= 0.25
    polygons = mask_to_polygons(tumor, downsample=GEOMETRY_DOWNSAMPLE)
    area_um2 = float(tumor.sum()) * (GEOMETRY_DOWNSAMPLE * mpp) ** 2
    n_lesions = int(ndimage.label(tumor)[1])
    meta: dict[str, object] = {
        "n_lesions": n_lesions,
        "n_small_lesions": n_small,
        "tumor_area_um2": round(area_um2, 1),
        "mpp": mpp,
    }
    if options.lookalikes[1] > 0:
        meta["n_lookalikes"] = int(ndimage.label(looks)[1])
    return SlidePhantom(
        rgb,
        tumor_mask.astype(np.uint8),
        tissue_mask.astype(np.uint8),
        polygons,
        label,
        site,
        pen_color,
        ink.astype(np.uint8),
        meta,
    )


@register_phantom("wsi")
def generate_wsi(
    out: str | Path,
    n: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
    sites: Sequence[str] = ("site_a", "site_b"),
    mpp: float = MPP,
    options: WSIOptions | dict[str, object] | None = None,
) -> Path:
    """Write `n` synthetic slides, their masks and annotations, and ``out/manifest.csv``.

    Manifest columns: case_id, patient_id, site, modality (``WSI``), image (slide), label, mask
    (tumour mask at downsample 16), split, meta_mask_downsample, meta_tissue (tissue mask),
    meta_geojson, meta_xml, meta_mpp, meta_pen, meta_n_lesions, meta_n_small_lesions,
    meta_tumor_area_um2.

    Args:
        out: Output folder.
        n: Number of slides (one patient each).
        seed: Run seed.
        scale: Multiplies the slide size.
        progress: Show a progress bar.
        sites: Sites taken in turn (keys of `WSI_SITES`).
        mpp: Microns per level-0 pixel.
        options: Difficulty (`WSIOptions` or its fields as a dict); None for the original phantoms.

    Returns:
        Path of the manifest.
    """
    check_kind_args(n, seed, scale)
    opts = parse_options(WSIOptions, options)
    out = Path(out)
    ds = MASK_DOWNSAMPLE
    rows: list[dict[str, object]] = []
    for i in track(range(n), total=n, desc="phantom wsi", enabled=progress):
        case_id = f"wsi_{i:03d}"
        site = site_of(i, sites)
        s = make_slide(seed, i, scale, site=site, mpp=mpp, options=opts)
        image = write_pyramid_tiff(
            s.rgb, out / "slides" / f"{case_id}.tif", mpp=mpp, description=f"medwss phantom wsi seed={seed} case={i}"
        )
        mask = save_png(s.tumor, out / "masks" / f"{case_id}_tumor_ds{ds}.png")
        tissue = save_png(s.tissue, out / "masks" / f"{case_id}_tissue_ds{ds}.png")
        geojson = write_geojson(s.polygons, out / "annotations" / f"{case_id}.geojson")
        xml = write_camelyon_xml(s.polygons, out / "annotations" / f"{case_id}.xml")
        rows.append(
            {
                "case_id": case_id,
                "patient_id": f"wsi_patient_{i:03d}",
                "site": site,
                "modality": "WSI",
                "image": Path(image),
                "label": s.label,
                "mask": Path(mask),
                "meta_mask_downsample": ds,
                "meta_tissue": Path(tissue),
                "meta_geojson": Path(geojson),
                "meta_xml": Path(xml),
                "meta_pen": s.pen,
                **{f"meta_{k}": v for k, v in s.meta.items()},
            }
        )
    add_splits(rows, seed)
    return write_manifest(rows, out / "manifest.csv")
