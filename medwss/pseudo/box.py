"""`Box`: an axis-aligned box prompt (the type box segmenters, detectors' box files and the slicer share).

`medwss.pseudo.protocol` re-exports it beside the segmenter contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in array-index order, half-open: ``lo[d] <= index < hi[d]``.

    Attributes:
        lo: First index along each array axis.
        hi: One past the last index along each axis.
        label: Class the box stands for (its mask gets this value).
        score: Detector confidence, or the peak activation of the component it came from.
    """

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    label: int = 1
    score: float = 1.0

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi) or any(h <= lo for lo, h in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"empty or malformed box lo={self.lo} hi={self.hi}")

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(lo, h) for lo, h in zip(self.lo, self.hi, strict=True))

    def clip(self, shape: tuple[int, ...]) -> Box:
        """The box clipped to an array of `shape`."""
        lo = tuple(max(0, int(v)) for v in self.lo)
        hi = tuple(min(int(s), int(v)) for v, s in zip(self.hi, shape, strict=True))
        return Box(lo, hi, self.label, self.score)

    def grow(self, margin: int, shape: tuple[int, ...]) -> Box:
        """The box grown by `margin` on every side, clipped to `shape`."""
        return Box(tuple(v - margin for v in self.lo), tuple(v + margin for v in self.hi), self.label, self.score).clip(
            shape
        )

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean array of `shape`, True inside the box."""
        out = np.zeros(shape, dtype=bool)
        out[self.slices] = True
        return out

    def core(self, shape: tuple[int, ...], fraction: float) -> np.ndarray:
        """An ellipsoid around the box centre whose semi-axes are `fraction` of the box's half-sizes."""
        grids = np.ogrid[tuple(slice(0, s) for s in shape)]
        r = np.zeros(shape)
        for g, lo, hi in zip(grids, self.lo, self.hi, strict=True):
            c, h = (lo + hi - 1) / 2.0, max((hi - lo) / 2.0 * fraction, 1.0)  # at least the central pixel(s)
            r = r + ((g - c) / h) ** 2
        return r <= 1.0
