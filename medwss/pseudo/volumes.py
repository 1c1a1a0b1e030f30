"""Volumes as stacks of 2D slices for the pseudo-label methods (axial, along the last array axis).

A `SliceCase` holds a case's source volume (for the affine when writing), its normalised slices
(1, H, W) and, when the manifest has a mask, the remapped ground-truth slices. Downsampling is by
an integer in-plane factor; `to_volume` maps per-slice label maps back onto the source grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medwss.data.manifest import Case
from medwss.io.volume import Volume
from medwss.pseudo.config import LABEL_PRESETS, PseudoConfig
from medwss.pseudo.protocol import normalize_intensity


@dataclass
class SliceCase:
    """One case, sliced.

    Attributes:
        case_id: From the manifest.
        split: Manifest split (train/val/test) or None.
        volume: The source image volume.
        images: Per slice (1, H, W) float32, windowed to [0, 1].
        raw: Per slice (H, W) raw intensities (HU), downsampled like `images`.
        gts: Per slice (H, W) int64 classes, or None without a mask.
        scribbles: Per slice sparse labels from the manifest's scribble column, or None.
    """

    case_id: str
    split: str | None
    volume: Volume
    images: list[np.ndarray]
    raw: list[np.ndarray]
    gts: list[np.ndarray] | None = None
    scribbles: list[np.ndarray] | None = None
    meta: dict[str, object] = field(default_factory=dict)


def remap_labels(labels: np.ndarray, preset: str) -> np.ndarray:
    """Source label values → pseudo-label classes of `preset` (other values → 0)."""
    lut = np.zeros(int(max(labels.max(), max(LABEL_PRESETS[preset]))) + 1, dtype=np.int64)
    for src, (dst, _) in LABEL_PRESETS[preset].items():
        lut[src] = dst
    return lut[np.clip(labels.astype(np.int64), 0, len(lut) - 1)]


def _slices(a: np.ndarray, step: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(a[::step, ::step, k]) for k in range(a.shape[2])]


def slice_case(case: Case, cfg: PseudoConfig) -> SliceCase:
    """Load and slice one manifest case (image, and mask/scribble when present)."""
    from medwss.io.volumes import load_volume

    vol = load_volume(case.image)
    raw = np.asarray(vol.array[..., 0] if vol.array.ndim == 4 else vol.array, dtype=np.float32)
    step = cfg.downsample
    raws = _slices(raw, step)
    images = [normalize_intensity(r, cfg.window).astype(np.float32)[None] for r in raws]
    gts = None
    if case.mask is not None:
        gts = _slices(remap_labels(np.asarray(load_volume(case.mask).array), cfg.labels), step)
    scr = None
    if case.scribble is not None:
        s = np.asarray(load_volume(case.scribble).array).astype(np.int64)
        scr = _slices(np.where(s < 0, -1, remap_labels(np.maximum(s, 0), cfg.labels)), step)
    return SliceCase(case.case_id, case.split, vol, images, raws, gts, scr)


def to_volume(slices: Sequence[np.ndarray], shape: tuple[int, ...], step: int) -> np.ndarray:
    """Stack per-slice maps and upsample (nearest) by `step` in-plane onto a grid of `shape` (I, J, K)."""
    vol = np.stack(slices, axis=-1)
    if step > 1:
        vol = np.repeat(np.repeat(vol, step, axis=0), step, axis=1)
    return vol[: shape[0], : shape[1], : shape[2]]


def tags_of(gt: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) bool class presence of a slice (the cheapest weak label)."""
    return np.array([(gt == c).any() for c in range(n_classes)])
