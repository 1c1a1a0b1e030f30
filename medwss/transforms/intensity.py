"""Intensity normalisation: named CT windows, percentile scaling and robust z-scores, in one place.

Two faces of one definition: `normalise` works on a NumPy array once per case (what the volume
workflows do before slicing; it keeps NumPy in and out, where MONAI's array transforms return a
torch ``MetaTensor`` for NumPy input), and `intensity_transform` gives the same mapping as a MONAI
dictionary transform for `Compose` pipelines on the device. Both clip outside the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from medwss.errors import InvalidDataError

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (-160.0, 240.0),
    "abdomen": (-200.0, 300.0),
    "liver": (-40.0, 160.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "brain": (0.0, 80.0),
    "wide": (-1000.0, 1000.0),
}
"""Named Hounsfield windows ``(low, high)``."""

Window = tuple[float, float] | str | None
"""A window: ``(low, high)``, a name of `CT_WINDOWS`, or None for the 1st–99th percentiles."""
Method = Literal["window", "percentile", "zscore"]


def resolve_window(window: Window | Sequence[float]) -> tuple[float, float] | None:
    """``(low, high)`` of a window given by value or by name (None stays None: percentiles)."""
    if window is None:
        return None
    if isinstance(window, str):
        if window in ("auto", "percentile"):
            return None
        if window not in CT_WINDOWS:
            raise InvalidDataError(f"unknown CT window '{window}': choose one of {', '.join(CT_WINDOWS)}")
        return CT_WINDOWS[window]
    lo, hi = (float(v) for v in window)
    if not hi > lo:
        raise InvalidDataError(f"empty intensity window ({lo}, {hi})")
    return lo, hi


def window_bounds(
    array: np.ndarray, window: Window, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """The ``(low, high)`` a window maps from: its value, or the array's percentiles (finite voxels)."""
    w = resolve_window(window)
    if w is not None:
        return w
    a = np.asarray(array)
    finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a.ravel()
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def normalise(
    array: np.ndarray,
    method: Method = "window",
    window: Window = None,
    out_range: tuple[float, float] = (0.0, 1.0),
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Intensities mapped for a network, float32.

    Args:
        array: Any array.
        method: ``window``: `window` (or the `percentiles` when None) linearly to `out_range`, clipped;
            ``percentile``: the `percentiles` to `out_range`, clipped; ``zscore``: clipped to the
            `percentiles`, then zero mean and unit variance (`out_range` unused).
        window: For ``window``: ``(low, high)`` or a name of `CT_WINDOWS`.
        out_range: Output range of the linear methods, e.g. ``(-1, 1)`` for a tanh generator.
        percentiles: Percentiles used when no window is given, and the clip of ``zscore``.
    """
    a = np.asarray(array, dtype=np.float32)
    if method == "zscore":
        lo, hi = window_bounds(a, None, percentiles)
        c = np.clip(a, lo, hi)
        sd = float(c.std())
        return ((c - c.mean()) / (sd if sd > 1e-6 else 1.0)).astype(np.float32)
    if method not in ("window", "percentile"):
        raise InvalidDataError(f"unknown normalisation '{method}': choose window, percentile or zscore")
    lo, hi = window_bounds(a, window if method == "window" else None, percentiles)
    b0, b1 = out_range
    scaled = np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (scaled * (b1 - b0) + b0).astype(np.float32)


def intensity_transform(
    keys: Sequence[str] | str,
    method: Method = "window",
    window: Window = None,
    out_range: tuple[float, float] = (0.0, 1.0),
    percentiles: tuple[float, float] = (1.0, 99.0),
):  # noqa: ANN201 - a MONAI MapTransform
    """The mapping of `normalise` as a MONAI dictionary transform (for `Compose` pipelines)."""
    from monai.transforms import Compose, NormalizeIntensityd, ScaleIntensityRanged, ScaleIntensityRangePercentilesd

    b0, b1 = out_range
    if method == "zscore":
        lo, hi = percentiles  # clip to the percentiles (any linear map: the z-score does not see it)
        return Compose([ScaleIntensityRangePercentilesd(keys, lo, hi, 0.0, 1.0, clip=True), NormalizeIntensityd(keys)])
    w = resolve_window(window) if method == "window" else None
    if w is None:
        return ScaleIntensityRangePercentilesd(keys, percentiles[0], percentiles[1], b0, b1, clip=True)
    return ScaleIntensityRanged(keys, w[0], w[1], b0, b1, clip=True)
