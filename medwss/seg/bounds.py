"""Size bounds for `medwss.seg.losses.size_penalty`, from the kinds of weak knowledge one has.

Every function returns an array of shape (K, 2) (or (K, Z, 2) per slice) of lower and upper sizes in
pixels, NaN where a side is unbounded; the background row (class 0) is always NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medwss.errors import InvalidDataError


def _empty(num_classes: int, extra: tuple[int, ...] = ()) -> np.ndarray:
    if num_classes < 2:
        raise InvalidDataError(f"num_classes must be at least 2 (background + one class), got {num_classes}")
    return np.full((num_classes, *extra, 2), np.nan, dtype=np.float32)


def _class_sizes(label_map: np.ndarray, num_classes: int, slice_axis: int | None) -> np.ndarray:
    lab = np.asarray(label_map)
    if slice_axis is None:
        return np.array([(lab == c).sum() for c in range(num_classes)], dtype=np.float32)
    moved = np.moveaxis(lab, slice_axis, 0).reshape(lab.shape[slice_axis], -1)
    return np.stack([(moved == c).sum(1) for c in range(num_classes)]).astype(np.float32)  # (K, Z)


def bounds_from_mask(
    mask: np.ndarray, num_classes: int = 2, margin: float = 0.1, slice_axis: int | None = None
) -> np.ndarray:
    """The true size ±`margin` (a fraction), per class, from a full mask (an oracle bound).

    Args:
        mask: Integer label map.
        num_classes: Classes, background included.
        margin: Relative tolerance (0.1 = ±10%).
        slice_axis: Per-slice bounds along this axis (None: one bound per image).
    """
    sizes = _class_sizes(mask, num_classes, slice_axis)
    out = _empty(num_classes, sizes.shape[1:])
    out[1:, ..., 0] = sizes[1:] * (1 - margin)
    out[1:, ..., 1] = sizes[1:] * (1 + margin)
    return out


def bounds_from_tags(present: Sequence[bool], prior: Sequence[tuple[float, float]] | tuple[float, float]) -> np.ndarray:
    """Constant bounds from an image-level tag per foreground class: `prior` if present, else [0, 0].

    Args:
        present: One flag per foreground class (K − 1 values).
        prior: (lower, upper) in pixels for every class, or one pair per foreground class.
    """
    k = len(present) + 1
    pairs = [tuple(prior)] * (k - 1) if np.ndim(prior) == 1 else [tuple(p) for p in prior]  # type: ignore[arg-type]
    if len(pairs) != k - 1:
        raise InvalidDataError(f"prior has {len(pairs)} pairs for {k - 1} classes")
    out = _empty(k)
    for c, (flag, (lo, hi)) in enumerate(zip(present, pairs, strict=True), start=1):
        out[c] = (lo, hi) if flag else (0.0, 0.0)
    return out


def bounds_from_boxes(box_map: np.ndarray, num_classes: int = 2, fill: float = 0.5) -> np.ndarray:
    """From boxes drawn as a label map: the object fills at least `fill` of its box and at most all of it.

    Args:
        box_map: Integer map, each box's pixels set to its class (0 outside boxes).
        num_classes: Classes, background included.
        fill: Lower bound as a fraction of the box area (an ellipse fills π/4 of its box).
    """
    area = _class_sizes(box_map, num_classes, None)
    out = _empty(num_classes)
    out[1:, 0] = fill * area[1:]
    out[1:, 1] = area[1:]
    return out


def upper_only(bounds: np.ndarray) -> np.ndarray:
    """The same bounds with the lower side removed (lower = 0)."""
    out = np.array(bounds, dtype=np.float32, copy=True)
    out[1:, ..., 0] = 0.0
    return out
