"""Manifest → `SegSample` list: 2D axial slices or 3D volumes on the crop grid, weak targets, bounds, tags.

The crop grid is built on the reference channel's canonical (RAS+) grid (`medwss.scribble.mri_input`),
so ``[..., z]`` of every crop-grid array is an axial slice whatever the stored axis order.
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
from medwss.data.weak import box_map, make_weak_label
from medwss.errors import InvalidDataError, MedwssError
from medwss.io import load_volume
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.mri_input import CaseInput, load_case, to_grid
from medwss.seg.bounds import bounds_from_boxes, bounds_from_mask, bounds_from_tags, upper_only
from medwss.seg.train import SegSample


@dataclass
class PreparedCase:
    """A case on its crop grid with its training target.

    Attributes:
        case: The manifest row.
        input: Image, grids and mask (see `CaseInput`).
        target: (X, Y, Z) int64: the weak label (`IGNORE` unlabelled) or the full mask.
        negative: The case is known to hold no lesion (label 0).
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

    Raises:
        InvalidDataError: The case has neither the label source the config needs nor a mask.
    """
    ci = load_case(case, cfg.sequences, cfg.crop_mm, cfg.spacing_mm, root, cfg.use_zones)
    negative = case.label == 0 if case.label is not None else ci.mask is not None and not (ci.mask > 0).any()
    if cfg.supervision == "weak" and cfg.use_scribble_column and case.scribble is not None:
        target = to_grid(load_volume(case.scribble), ci.grid, fill=IGNORE, num_classes=2)
    elif ci.mask is None:
        raise InvalidDataError(f"case {case.case_id} has no mask (needed for {cfg.supervision} targets)")
    elif cfg.supervision == "full":
        target = ci.mask.copy()
    else:
        options: dict[str, Any] = dict(cfg.weak_options)
        target = make_weak_label(ci.mask, cfg.weak_kind, case_seed(case.case_id, cfg.weak_seed), **options)
    return PreparedCase(case, ci, target.astype(np.int64), bool(negative))


def prior_pixels(cfg: ScribbleConfig, spacing: Sequence[float]) -> tuple[float, float]:
    """`size_prior` (mm² per slice in 2D, mm³ per volume in 3D) in pixels of the crop grid."""
    unit = float(np.prod(spacing[:2])) if cfg.spatial_dims == 2 or cfg.size_per_slice else float(np.prod(spacing))
    return cfg.size_prior[0] / unit, cfg.size_prior[1] / unit


def image_bounds(
    cfg: ScribbleConfig, target: np.ndarray, mask: np.ndarray | None, empty: bool, prior: tuple[float, float]
) -> np.ndarray | None:
    """(2, 2) bounds of one image (slice or volume) for the configured mode; None when unbounded."""
    if cfg.bounds == "none" or cfg.supervision == "full":
        return None
    if cfg.bounds in ("tag", "upper"):
        marked = bool((target > 0).any())
        out = bounds_from_tags([marked or not empty], prior)
        if not marked and not empty:
            out[1] = np.nan  # lesion status unknown: no bound
        elif empty:
            out[1] = 0.0
        return upper_only(out) if cfg.bounds == "upper" else out
    if mask is None:
        raise InvalidDataError(f"bounds '{cfg.bounds}' need the mask")
    if cfg.bounds == "true":
        return bounds_from_mask(mask, 2, cfg.margin)
    return bounds_from_boxes(box_map(mask), 2, cfg.box_fill)


def _empty(cfg: ScribbleConfig, negative: bool, target: np.ndarray) -> bool:
    return negative or (cfg.negative_slices == "unmarked" and cfg.supervision == "weak" and not (target > 0).any())


def case_samples(p: PreparedCase, cfg: ScribbleConfig) -> list[SegSample]:
    """Training samples of a prepared case: one per slice (2D) or one volume (3D)."""
    prior = prior_pixels(cfg, p.input.grid.spacing)
    image, target, mask = p.input.image, p.target, p.input.mask
    if cfg.spatial_dims == 2:
        out = []
        for z in range(target.shape[-1]):
            t, m = target[..., z], None if mask is None else mask[..., z]
            empty = _empty(cfg, p.negative, t)
            sample = SegSample(image[..., z], t, image_bounds(cfg, t, m, empty, prior), empty)
            out += [sample] * (cfg.oversample if (t > 0).any() else 1)
        return out
    if cfg.size_per_slice and cfg.bounds != "none" and cfg.supervision == "weak":
        per = [
            image_bounds(
                cfg,
                target[..., z],
                None if mask is None else mask[..., z],
                _empty(cfg, p.negative, target[..., z]),
                prior,
            )
            for z in range(target.shape[-1])
        ]
        bounds = np.stack([b for b in per if b is not None], axis=1) if all(b is not None for b in per) else None
    else:
        bounds = image_bounds(cfg, target, mask, p.negative, prior)
    return [SegSample(image, target, bounds, p.negative)] * (cfg.oversample if (target > 0).any() else 1)


def val_samples(p: PreparedCase, cfg: ScribbleConfig) -> list[SegSample]:
    """Validation samples with the full mask as target (the slices holding a lesion in 2D, the volume in 3D)."""
    if p.input.mask is None:
        return []
    image, mask = p.input.image, p.input.mask
    if cfg.spatial_dims == 2:
        return [SegSample(image[..., z], mask[..., z]) for z in range(mask.shape[-1]) if (mask[..., z] > 0).any()]
    return [SegSample(image, mask)]


def build_samples(
    cases: Sequence[Case], cfg: ScribbleConfig, root: Path | None, validation: bool = False, progress: bool = False
) -> tuple[list[SegSample], list[dict[str, str]]]:
    """Samples of many cases; a case that fails is skipped and reported as ``{"case_id", "error"}``."""
    from tqdm.auto import tqdm

    samples: list[SegSample] = []
    failures: list[dict[str, str]] = []
    for case in tqdm(cases, desc="load cases", disable=not progress, leave=False):
        try:
            p = prepare_case(case, cfg, root)
            samples += val_samples(p, cfg) if validation else case_samples(p, cfg)
        except (MedwssError, OSError, ValueError) as exc:
            failures.append({"case_id": case.case_id, "error": str(exc)})
    return samples, failures
