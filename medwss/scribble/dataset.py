"""Manifest → `SegSample` list: 2D axial slices or 3D volumes on the crop grid, weak targets, bounds, tags.

The crop grid is built on the reference channel's canonical (RAS+) grid (`medwss.scribble.mri_input`),
so ``[..., z]`` of every crop-grid array is an axial slice whatever the stored axis order. 2D samples
are cut from it by the one slicer (`medwss.data.slicer.plan_slices`, resized to ``slice_size`` when
set), and predictions go back through the same geometry. Targets hold K classes (``num_classes``,
background included) with `IGNORE` where unlabelled; size bounds are per foreground class.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.labels import IGNORE
from medwss.data.manifest import Case
from medwss.data.slicer import SliceGeometry, plan_slices
from medwss.data.weak import box_map, make_weak_label
from medwss.errors import InvalidDataError, MedwssError
from medwss.io import load_volume
from medwss.io.volume import Volume
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.mri_input import CaseInput, load_case, to_grid
from medwss.seg.bounds import bounds_from_mask, bounds_from_tags, upper_only
from medwss.seg.train import SegSample

Prior = Sequence[tuple[float, float]] | tuple[float, float]


@dataclass
class PreparedCase:
    """A case on its crop grid with its training target.

    Attributes:
        case: The manifest row.
        input: Image, grids and mask (see `CaseInput`).
        target: (X, Y, Z) int64: the weak label (`IGNORE` unlabelled) or the full mask.
        negative: The case is known to hold no foreground (label 0, or an empty mask).
    """

    case: Case
    input: CaseInput
    target: np.ndarray
    negative: bool


def case_seed(case_id: str, seed: int) -> int:
    """A per-case seed for weak-label generation: stable across runs and independent of case order."""
    return (zlib.crc32(case_id.encode()) + 7919 * seed) % (2**31)


def prepare_case(case: Case, cfg: ScribbleConfig, root: Path | None) -> PreparedCase:
    """Load a case and build its target (weak from the scribble file or generated, or the full mask).

    An empty `cfg.sequences` takes the case's own channels (`ScribbleConfig.with_sequences`).

    Raises:
        InvalidDataError: The case has neither the label source the config needs nor a mask, or
            label values outside 0..``num_classes`` − 1.
    """
    cfg = cfg.with_sequences(list(case.images))
    k = cfg.num_classes
    ci = load_case(case, cfg.sequences, cfg.crop_mm, cfg.spacing_mm, root, cfg.use_zones, cfg.reference, k)
    negative = case.label == 0 if case.label is not None else ci.mask is not None and not (ci.mask > 0).any()
    if cfg.supervision == "weak" and cfg.use_scribble_column and case.scribble is not None:
        target = to_grid(load_volume(case.scribble), ci.grid, fill=IGNORE, num_classes=k)
    elif ci.mask is None:
        raise InvalidDataError(f"case {case.case_id} has no mask (needed for {cfg.supervision} targets)")
    elif cfg.supervision == "full":
        target = ci.mask.copy()
    else:
        options: dict[str, Any] = dict(cfg.weak_options)
        target = make_weak_label(ci.mask, cfg.weak_kind, case_seed(case.case_id, cfg.weak_seed), **options)
    return PreparedCase(case, ci, target.astype(np.int64), bool(negative))


def prior_pixels(cfg: ScribbleConfig, spacing: Sequence[float]) -> list[tuple[float, float]]:
    """`size_prior` (mm² per slice in 2D, mm³ per volume in 3D) in pixels, one pair per foreground class."""
    unit = float(np.prod(spacing[:2])) if cfg.spatial_dims == 2 or cfg.size_per_slice else float(np.prod(spacing))
    return [(lo / unit, hi / unit) for lo, hi in cfg.priors()]


def _pairs(prior: Prior, k: int) -> list[tuple[float, float]]:
    if np.ndim(prior) == 1:
        lo, hi = prior  # type: ignore[misc]
        return [(float(lo), float(hi))] * (k - 1)  # type: ignore[arg-type]
    return [(float(a), float(b)) for a, b in prior]  # type: ignore[misc]


def box_bounds(mask: np.ndarray, num_classes: int, fill: float) -> np.ndarray:
    """(K, 2) bounds from each class's bounding boxes, drawn per class (nested structures keep their own box)."""
    out = np.full((num_classes, 2), np.nan, np.float32)
    for c in range(1, num_classes):
        area = float((box_map((np.asarray(mask) == c).astype(np.int64)) > 0).sum())
        out[c] = (fill * area, area)
    return out


def image_bounds(
    cfg: ScribbleConfig, target: np.ndarray, mask: np.ndarray | None, empty: bool, prior: Prior
) -> np.ndarray | None:
    """(K, 2) bounds of one image (slice or volume) for the configured mode; None when unbounded.

    `prior` is one (lower, upper) pair in pixels for every foreground class, or one per class.
    For ``tag`` / ``upper``: a marked class gets its prior, every class of a known-empty image
    [0, 0], an unmarked class of another image no bound (or [0, 0] with ``negative_slices:
    unmarked``, which takes unmarked as absent).
    """
    if cfg.bounds == "none" or cfg.supervision == "full":
        return None
    k = cfg.num_classes
    if cfg.bounds in ("tag", "upper"):
        marked = [bool((target == c).any()) for c in range(1, k)]
        out = bounds_from_tags([m or not empty for m in marked], _pairs(prior, k))
        absent = cfg.negative_slices == "unmarked"
        for c, m in enumerate(marked, start=1):
            if empty:
                out[c] = 0.0
            elif not m:
                out[c] = 0.0 if absent else np.nan  # unknown: no bound
        return upper_only(out) if cfg.bounds == "upper" else out
    if mask is None:
        raise InvalidDataError(f"bounds '{cfg.bounds}' need the mask")
    if cfg.bounds == "true":
        return bounds_from_mask(mask, k, cfg.margin)
    return box_bounds(mask, k, cfg.box_fill)


def is_empty_slice(cfg: ScribbleConfig, negative: bool, target: np.ndarray) -> bool:
    """Whether a slice is trained as lesion-free: its case is negative, or (weak labels with
    ``negative_slices: unmarked``) no foreground is marked on it."""
    return negative or (cfg.negative_slices == "unmarked" and cfg.supervision == "weak" and not (target > 0).any())


def slice_geometry(grid: Volume, cfg: ScribbleConfig) -> SliceGeometry:
    """The 2D slices of a crop grid: every axial slice, resized to ``slice_size`` when set."""
    return plan_slices(grid, size=cfg.slice_size)


@dataclass
class CaseSlices:
    """The 2D slices of a prepared case: images (N, C, H, W), targets and masks (N, H, W), geometry, spacing."""

    images: np.ndarray
    targets: np.ndarray
    masks: np.ndarray | None
    geometry: SliceGeometry
    spacing: tuple[float, float, float]


def resize_marks(stack: np.ndarray, size: Sequence[int], num_classes: int) -> np.ndarray:
    """Weak labels (N, H, W) resized to `size` keeping thin marks: each output pixel takes the
    foreground class covering most of its footprint, else background if marked there, else `IGNORE`.

    Nearest-neighbour shrinking would drop every other pixel of a one-pixel scribble, and whole
    strokes on small structures.
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(stack, dtype=np.int64))
    onehot = torch.stack([(t == c) for c in range(num_classes)], dim=1).float()  # (N, K, H, W)
    hw = (int(size[0]), int(size[1]))
    if onehot.shape[-2] >= hw[0] and onehot.shape[-1] >= hw[1]:
        frac = F.adaptive_avg_pool2d(onehot, hw)
    else:  # enlarging: nearest is exact enough
        frac = F.interpolate(onehot, size=hw, mode="nearest-exact")
    fg = frac[:, 1:]
    best = fg.argmax(1) + 1
    best[fg.amax(1) <= 0] = 0
    best[frac.amax(1) <= 0] = IGNORE
    return best.numpy().astype(np.int64)


def case_slices(p: PreparedCase, cfg: ScribbleConfig) -> CaseSlices:
    """Cut a prepared case into axial slices through `medwss.data.slicer`.

    Images are resized bilinearly and masks by nearest neighbour (the slicer's own); weak targets
    by `resize_marks`, so that resizing keeps the scribbles.
    """
    geom = slice_geometry(p.input.grid, cfg)
    images = geom.cut(np.moveaxis(p.input.image, 0, -1))  # (N, C, H, W)
    if geom.size is not None and tuple(geom.size) != tuple(geom.crop_shape) and (p.target == IGNORE).any():
        full = plan_slices(p.input.grid).cut(p.target, label=True, fill=IGNORE)
        targets = resize_marks(full, geom.slice_shape, cfg.num_classes)
    else:
        targets = geom.cut(p.target, label=True, fill=IGNORE)
    masks = None if p.input.mask is None else geom.cut(p.input.mask, label=True)
    (ch, cw), (h, w) = geom.crop_shape, geom.slice_shape
    sp = p.input.grid.spacing
    spacing = (float(sp[0]) * ch / h, float(sp[1]) * cw / w, float(sp[2]))
    return CaseSlices(images.astype(np.float32), targets, masks, geom, spacing)


def case_samples(p: PreparedCase, cfg: ScribbleConfig) -> list[SegSample]:
    """Training samples of a prepared case: one per slice (2D) or one volume (3D)."""
    if cfg.spatial_dims == 2:
        cs = case_slices(p, cfg)
        prior = prior_pixels(cfg, cs.spacing)
        out = []
        for n in range(len(cs.targets)):
            t, m = cs.targets[n], None if cs.masks is None else cs.masks[n]
            empty = is_empty_slice(cfg, p.negative, t)
            sample = SegSample(cs.images[n], t, image_bounds(cfg, t, m, empty, prior), empty)
            out += [sample] * (cfg.oversample if (t > 0).any() else 1)
        return out
    prior = prior_pixels(cfg, p.input.grid.spacing)
    image, target, mask = p.input.image, p.target, p.input.mask
    if cfg.size_per_slice and cfg.bounds != "none" and cfg.supervision == "weak":
        per = [
            image_bounds(
                cfg,
                target[..., z],
                None if mask is None else mask[..., z],
                is_empty_slice(cfg, p.negative, target[..., z]),
                prior,
            )
            for z in range(target.shape[-1])
        ]
        bounds = np.stack([b for b in per if b is not None], axis=1) if all(b is not None for b in per) else None
    else:
        bounds = image_bounds(cfg, target, mask, p.negative, prior)
    return [SegSample(image, target, bounds, p.negative)] * (cfg.oversample if (target > 0).any() else 1)


def val_samples(p: PreparedCase, cfg: ScribbleConfig) -> list[SegSample]:
    """Validation samples with the full mask as target (the slices holding foreground in 2D, the volume in 3D)."""
    if p.input.mask is None:
        return []
    if cfg.spatial_dims == 2:
        cs = case_slices(p, cfg)
        assert cs.masks is not None
        return [SegSample(cs.images[n], cs.masks[n]) for n in range(len(cs.masks)) if (cs.masks[n] > 0).any()]
    return [SegSample(p.input.image, p.input.mask)]


INPUT_KEYS = (
    "sequences", "reference", "crop_mm", "spacing_mm", "use_zones", "num_classes",
    "supervision", "use_scribble_column", "weak_kind", "weak_options", "weak_seed",
)  # fmt: skip
"""The `ScribbleConfig` keys a `PreparedCase` depends on (the key of a `build_samples` cache)."""


def _cache_key(case: Case, cfg: ScribbleConfig) -> str:
    import json

    settings = {k: getattr(cfg, k) for k in INPUT_KEYS}
    files = [str(p) for p in (*case.images.values(), case.mask, case.scribble)]
    return json.dumps([case.case_id, files, settings], sort_keys=True, default=str)


def cached_case(case: Case, cfg: ScribbleConfig, cache: dict[str, PreparedCase]) -> PreparedCase | None:
    """The prepared case `build_samples` stored in `cache` for these input settings (None: not there)."""
    return cache.get(_cache_key(case, cfg.with_sequences(list(case.images))))


def build_samples(
    cases: Sequence[Case],
    cfg: ScribbleConfig,
    root: Path | None,
    validation: bool = False,
    progress: bool = False,
    cache: dict[str, PreparedCase] | None = None,
) -> tuple[list[SegSample], list[dict[str, str]]]:
    """Samples of many cases; a case that fails is skipped and reported as ``{"case_id", "error", "error_class"}``.

    Args:
        cache: A dict the caller keeps between calls: loaded cases are stored in it and reused by
            later calls with the same input settings (`INPUT_KEYS`) and files, e.g. when a
            benchmark trains several settings or seeds on the same cases.
    """
    from tqdm.auto import tqdm

    samples: list[SegSample] = []
    failures: list[dict[str, str]] = []
    for case in tqdm(cases, desc="load cases", disable=not progress, leave=False):
        try:
            key = _cache_key(case, cfg.with_sequences(list(case.images))) if cache is not None else ""
            p = cache[key] if cache is not None and key in cache else prepare_case(case, cfg, root)
            if cache is not None:
                cache[key] = p
            samples += val_samples(p, cfg) if validation else case_samples(p, cfg)
        except (MedwssError, OSError, ValueError) as exc:
            failures.append({"case_id": case.case_id, "error": str(exc), "error_class": type(exc).__name__})
    return samples, failures
