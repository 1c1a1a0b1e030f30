"""From counterfactuals to masks: ``|x − x_cf|`` scaled to [0, 1], thresholded, cleaned, put back in the volume.

The same `threshold_maps` serves the attribution baselines, whose maps are already in [0, 1].
`volume_mask` pastes a case's slice masks onto its source grid (the shared `SliceGeometry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from medwss.data.slicer import SliceGeometry


@dataclass(frozen=True)
class MaskSettings:
    """Threshold and morphological clean-up.

    Attributes:
        threshold: Pixels with map value ≥ threshold are foreground (paper: 0.25).
        opening: Radius (pixels) of a binary opening; 0 = none.
        closing: Radius (pixels) of a binary closing; 0 = none.
        largest: Keep only the largest 4-connected component.
        scale: ``"max"``: divide each difference map by its maximum; ``"range"``: by 2, the width of [-1, 1].
    """

    threshold: float = 0.25
    opening: int = 0
    closing: int = 0
    largest: bool = False
    scale: str = "max"


def difference_maps(x: np.ndarray, x_cf: np.ndarray, scale: str = "max") -> np.ndarray:
    """``|x − x_cf|`` (N, H, W) scaled to [0, 1] from slices (N, 1, H, W); an unchanged slice gives zeros.

    With ``"max"``, a slice whose largest change is below 2e-3 (round-off of the tanh at ±1) counts as unchanged.
    """
    d = np.abs(np.asarray(x, np.float32) - np.asarray(x_cf, np.float32)).reshape(len(x), *np.shape(x)[-2:])
    if scale == "range":
        return np.clip(d / 2.0, 0, 1)
    if scale != "max":
        raise ValueError(f"unknown scale {scale!r}; use 'max' or 'range'")
    peak = d.reshape(len(d), -1).max(1)[:, None, None] if len(d) else np.zeros((0, 1, 1))
    return np.where(peak > 2e-3, d / np.maximum(peak, 2e-3), 0.0).astype(np.float32)  # below: round-off only


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy**2 + xx**2) <= radius**2


def clean_mask(mask: np.ndarray, s: MaskSettings) -> np.ndarray:
    """Opening, closing and largest-component selection of one 2D mask."""
    m = np.asarray(mask, bool)
    if s.opening > 0:
        m = ndimage.binary_opening(m, _disk(s.opening))
    if s.closing > 0:
        m = ndimage.binary_closing(m, _disk(s.closing))
    if s.largest and m.any():
        lab, n = ndimage.label(m)
        if n > 1:
            sizes = ndimage.sum(m, lab, range(1, n + 1))
            m = lab == (1 + int(np.argmax(sizes)))
    return m


def threshold_maps(maps: np.ndarray, s: MaskSettings) -> np.ndarray:
    """Binary masks (N, H, W) from maps (N, H, W) in [0, 1]."""
    return np.stack([clean_mask(m >= s.threshold, s) for m in maps]) if len(maps) else np.zeros(maps.shape, bool)


def coin_masks(
    x: np.ndarray, x_cf: np.ndarray, decisions: np.ndarray, s: MaskSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Difference maps (N, H, W) and masks (N, H, W); slices decided normal get empty masks."""
    maps = difference_maps(x, x_cf, s.scale)
    masks = threshold_maps(maps, s) & (np.asarray(decisions) > 0)[:, None, None]
    return maps, masks


def volume_mask(masks: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """A case's slice masks (N, S, S) as one 0/1 mask (int64) on its *source* grid; voxels no slice covers are 0.

    Write it with the source affine, ``geometry.orientation.affine``.
    """
    return geometry.paste(np.asarray(masks).astype(np.int64), label=True)
