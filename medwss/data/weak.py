"""The one weak-label module: annotations simulated from full masks, in 2D and 3D, multi-class.

Used by scribble training, the pseudo-label toolkit and active learning alike. Every generator
returns an int64 map of the mask's shape with `IGNORE` (-1) where nothing is known and
class ids where the simulated annotator drew. Each connected component of each class gets its own
mark (so multi-class masks keep their classes); background marks (class 0) fall only on mask == 0.
The same `seed` gives the same marks.

Kinds (`WEAK_KINDS`):
    circle: a circle (or an arc) of radius ``radius_fraction`` × the component's inscribed radius,
        centred on its deepest point, drawn in every slice of the component (``slices="all"``) or
        only in its largest slice (``slices="center"``) of 3D masks (Trombetta et al. 2024).
    random_disk: a disk (ball in 3D) of ``radius`` pixels at a random point inside the component
        where it fits.
    centroid_disk: a disk (ball) at the centroid, moved by ``shift`` pixels in a random direction
        (Kervadec et al.'s "small disc at the centre"); clipped to the component.
    skeleton: the skeleton of the component eroded ``erosion`` times.
    point: ``n_points`` clicks at random pixels at least ``depth`` pixels inside the component.
    block: a ``size``-wide square (cube) at the component's deepest point, clipped to it.
    box: no foreground pixel; everything outside the (``box_margin``-dilated) bounding boxes is
        background. Pair it with box size bounds (`box_map` + `medwss.seg.bounds.bounds_from_boxes`).

Image tags (which classes occur) are the cheapest weak label: `tags_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError
from medwss.registry import Registry

Draw = Callable[[np.ndarray, np.random.Generator, dict[str, Any]], np.ndarray]
"""``draw(component, rng, options) -> marks``: boolean marks inside one boolean component (its bounding box)."""
Background = Callable[[np.ndarray, np.random.Generator, dict[str, Any]], np.ndarray]
"""``background(mask, rng, options) -> marks``: boolean background marks on the whole mask (only where mask == 0)."""


@dataclass(frozen=True)
class WeakKind:
    """A registered weak-label kind: how it marks each component and, optionally, the background.

    Attributes:
        draw: Foreground marks of one component, or None for a kind that marks no foreground (``box``).
        background: Background marks, or None for the default (ring around the foreground + strokes).
    """

    draw: Draw | None
    background: Background | None = None


WEAK_KINDS: Registry[WeakKind] = Registry("weak label kind", package="medwss.data", marker="register_weak_kind")
"""Every weak-label kind; a module of `medwss.data` that calls `register_weak_kind` is found on first lookup."""


def register_weak_kind(name: str, background: Background | None = None) -> Callable[[Draw], Draw]:
    """Register a per-component ``draw(component, rng, options) -> marks`` as the kind `name` (a decorator).

    Args:
        name: The kind's name, as configs and `make_weak_label` take it.
        background: Background marks of the kind; None for the shared ring + strokes.
    """

    def decorate(draw: Draw) -> Draw:
        WEAK_KINDS.register(name, WeakKind(draw, background))
        return draw

    return decorate


def components(mask: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(class id, boolean component) for every connected component of every class > 0, in a fixed order."""
    for c in np.unique(mask):
        if c <= 0:
            continue
        lab, n = ndimage.label(mask == c)
        for i in range(1, n + 1):
            yield int(c), lab == i


def _deepest(comp: np.ndarray) -> tuple[np.ndarray, float]:
    """The point farthest from the component's border and that distance (the inscribed radius)."""
    dist = ndimage.distance_transform_edt(np.pad(comp, 1))[tuple(slice(1, -1) for _ in comp.shape)]
    idx = np.unravel_index(int(np.argmax(dist)), comp.shape)
    return np.array(idx), float(dist[idx])


def _ball(shape: tuple[int, ...], center: np.ndarray, radius: float) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum((g - c) ** 2 for g, c in zip(grids, center, strict=True))
    return np.asarray(d2 <= radius**2 + 1e-6)


def _circle_2d(
    comp: np.ndarray, rng: np.random.Generator, radius_fraction: float, arc: float, width: int
) -> np.ndarray:
    center, depth = _deepest(comp)
    out = np.zeros_like(comp)
    r = radius_fraction * depth
    if r >= 1.0:
        start = rng.uniform(0, 2 * np.pi)
        n = max(8, int(np.ceil(4 * np.pi * r * arc)))
        t = start + np.linspace(0, 2 * np.pi * arc, n, endpoint=arc < 1)
        ii = np.round(center[0] + r * np.cos(t)).astype(int)
        jj = np.round(center[1] + r * np.sin(t)).astype(int)
        keep = (ii >= 0) & (ii < comp.shape[0]) & (jj >= 0) & (jj < comp.shape[1])
        out[ii[keep], jj[keep]] = True
        if width > 1:
            out = ndimage.binary_dilation(out, iterations=width - 1)
        out &= comp
    if not out.any():
        out[tuple(center)] = True  # too small for a circle: one click at the deepest point
    return out


@register_weak_kind("circle")
def _circle(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    radius_fraction = float(opts.get("radius_fraction", 0.6))
    arc = float(opts.get("arc", 1.0))
    width = int(opts.get("width", 1))
    if comp.ndim == 2:
        return _circle_2d(comp, rng, radius_fraction, arc, width)
    axis = int(opts.get("slice_axis", -1)) % comp.ndim
    moved = np.moveaxis(comp, axis, 0)
    areas = moved.reshape(moved.shape[0], -1).sum(1)
    mode = opts.get("slices", "all")
    if mode not in ("all", "center"):
        raise InvalidDataError(f"circle: slices must be 'all' or 'center', got {mode!r}")
    chosen = np.flatnonzero(areas) if mode == "all" else [int(np.argmax(areas))]
    out = np.zeros_like(moved)
    for z in chosen:
        out[z] = _circle_2d(moved[z], rng, radius_fraction, arc, width)
    return np.moveaxis(out, 0, axis)


@register_weak_kind("random_disk")
def _random_disk(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    radius = float(opts.get("radius", 2.0))
    dist = ndimage.distance_transform_edt(np.pad(comp, 1))[tuple(slice(1, -1) for _ in comp.shape)]
    fits = np.argwhere(dist > radius)
    if len(fits) == 0:  # the disk fits nowhere: shrink it to the inscribed radius at the deepest point
        center, depth = _deepest(comp)
        return _ball(comp.shape, center, max(depth - 1.0, 0.0)) & comp
    center = fits[rng.integers(len(fits))]
    return _ball(comp.shape, center, radius) & comp


@register_weak_kind("centroid_disk")
def _centroid_disk(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    radius = float(opts.get("radius", 2.0))
    shift = float(opts.get("shift", 0.0))
    center = np.array(ndimage.center_of_mass(comp))
    if shift > 0:
        direction = rng.normal(size=comp.ndim)
        center = center + shift * direction / max(float(np.linalg.norm(direction)), 1e-9)
    out = _ball(comp.shape, center, radius) & comp
    if not out.any():  # centroid outside a concave component: use the deepest point
        deep, _ = _deepest(comp)
        out[tuple(deep)] = True
    return out


@register_weak_kind("skeleton")
def _skeleton(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    from skimage.morphology import skeletonize

    erosion = int(opts.get("erosion", 1))
    eroded = ndimage.binary_erosion(comp, iterations=erosion) if erosion > 0 else comp
    if not eroded.any():
        eroded = comp
    out = skeletonize(eroded).astype(bool) & comp
    if not out.any():
        deep, _ = _deepest(comp)
        out[tuple(deep)] = True
    return out


def _interior(comp: np.ndarray, depth: int) -> np.ndarray:
    inner = ndimage.binary_erosion(comp, iterations=depth) if depth > 0 else comp
    return inner if inner.any() else comp


@register_weak_kind("point")
def _point(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    idx = np.flatnonzero(_interior(comp, int(opts.get("depth", 2))))
    out = np.zeros_like(comp)
    out.flat[rng.choice(idx, size=min(int(opts.get("n_points", 1)), idx.size), replace=False)] = True
    return out


@register_weak_kind("block")
def _block(comp: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    half = int(opts.get("size", 3)) // 2
    center, _ = _deepest(comp)
    out = np.zeros_like(comp)
    out[tuple(slice(max(0, int(p) - half), int(p) + half + 1) for p in center)] = True
    return out & comp


def _bbox(comp: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    idx = np.argwhere(comp)
    lo, hi = idx.min(0) - margin, idx.max(0) + 1 + margin
    return tuple(slice(max(int(a), 0), min(int(b), s)) for a, b, s in zip(lo, hi, comp.shape, strict=True))


def box_map(mask: np.ndarray, margin: int = 0) -> np.ndarray:
    """Each component's bounding box (grown by `margin` pixels) painted with its class; 0 elsewhere.

    Args:
        mask: Integer label map (2D or 3D).
        margin: Pixels added on every side (a loose annotator).
    """
    out = np.zeros(mask.shape, dtype=np.int64)
    for c, comp in components(np.asarray(mask)):
        out[_bbox(comp, margin)] = c
    return out


def _box_background(mask: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    """``box``: everything outside the (``box_margin``-dilated) bounding boxes is background."""
    return box_map(mask, int(opts.get("box_margin", 0))) == 0


WEAK_KINDS.register("box", WeakKind(None, _box_background))


def _background(mask: np.ndarray, rng: np.random.Generator, opts: dict[str, Any]) -> np.ndarray:
    """Background marks: a one-pixel ring ``bg_margin`` pixels around the foreground plus random strokes."""
    margin = int(opts.get("bg_margin", 3))
    fg = mask > 0
    keep_out = ndimage.binary_dilation(fg, iterations=margin) if fg.any() and margin > 0 else fg
    ring = (ndimage.binary_dilation(keep_out) & ~keep_out) if fg.any() else np.zeros_like(fg)
    strokes = np.zeros_like(fg)
    n_strokes, length = int(opts.get("bg_strokes", 2)), int(opts.get("bg_length", max(4, min(mask.shape[:2]) // 4)))
    allowed = ~keep_out
    candidates = np.argwhere(allowed)
    for _ in range(n_strokes if len(candidates) else 0):
        start = candidates[rng.integers(len(candidates))].astype(float)
        direction = np.zeros(mask.ndim)
        direction[:2] = rng.normal(size=2)  # in-plane strokes (first two axes), as drawn on a slice
        direction /= max(float(np.linalg.norm(direction)), 1e-9)
        pts = np.round(start + np.arange(length)[:, None] * direction).astype(int)
        inside = np.all((pts >= 0) & (pts < np.array(mask.shape)), axis=1)
        pts = pts[inside]
        strokes[tuple(pts.T)] = True
    return (ring | strokes) & allowed


def make_weak_label(mask: np.ndarray, kind: str, seed: int, background: bool = True, **options: Any) -> np.ndarray:
    """A simulated weak annotation of an integer mask.

    Args:
        mask: (H, W) or (H, W, D) integer label map, 0 = background.
        kind: One of `WEAK_KINDS`.
        seed: Random seed (same seed, same marks).
        background: Also mark background pixels (ring around lesions + random strokes; for
            ``box``: everything outside the boxes).
        **options: Per kind (see the module docstring): ``radius_fraction``, ``arc``, ``width``,
            ``slices``, ``slice_axis`` (circle); ``radius`` (disks); ``shift`` (centroid_disk);
            ``erosion`` (skeleton); ``n_points``, ``depth`` (point); ``size`` (block); ``box_margin`` (box); ``bg_margin``, ``bg_strokes``,
            ``bg_length`` (background).

    Returns:
        int64 map of the mask's shape: -1 unlabelled, else the class id.

    Raises:
        UnknownNameError: (a `ConfigError`) unknown kind.
        InvalidDataError: A mask that is not 2D/3D integer.
    """
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise InvalidDataError(f"weak labels need a 2D or 3D mask, got shape {mask.shape}")
    is_int = np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.bool_)
    if not is_int and not np.all(np.equal(np.mod(mask, 1), 0)):
        raise InvalidDataError(f"mask must hold integer class ids, got dtype {mask.dtype}")
    mask = mask.astype(np.int64)
    entry = WEAK_KINDS.get(kind)
    rng = np.random.default_rng(seed)
    out = np.full(mask.shape, IGNORE, dtype=np.int64)
    if background:
        out[(entry.background or _background)(mask, rng, options) & (mask == 0)] = 0
    draw = entry.draw
    if draw is None:
        return out
    for c, comp in components(mask):
        box = _bbox(comp, margin=1)  # draw within the component's bounding box (fast on large volumes)
        out[box][draw(comp[box], rng, options)] = c
    return out


def weak_label_stats(weak: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How much a weak label covers and whether it is right: labelled fraction, precision per marked pixel.

    Args:
        weak: Output of `make_weak_label`.
        mask: The full mask it came from.
    """
    labelled = weak != IGNORE
    fg = labelled & (weak > 0)
    total_fg = int((mask > 0).sum())
    return {
        "labelled_fraction": float(labelled.mean()),
        "foreground_pixels": float(fg.sum()),
        "foreground_coverage": float(fg.sum() / total_fg) if total_fg else 0.0,
        "accuracy": float((weak[labelled] == mask[labelled]).mean()) if labelled.any() else 1.0,
    }


def tags_of(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K,)`` bool: which classes (background included) occur in a label map (image-level tags)."""
    m = np.asarray(mask)
    return np.array([(m == c).any() for c in range(num_classes)])
