"""Overlap metrics of segmentations: Dice, IoU, and the surface metrics HD95, ASSD and NSD.

One implementation of each, for binary masks and for multi-class label maps (``0`` background,
``1..K-1`` classes). Voxels where either map holds `ignore` (``IGNORE = -1``, unlabelled) are left
out of every metric. Binary masks count values ``> 0`` as foreground. The surface metrics take
the voxel spacing (mm), are computed on 2D or 3D grids with MONAI (`monai.metrics`), and use
the boundary voxels of each mask.

Empty masks follow one convention, the same for every metric and every caller:

=====================  ======  =====  ==================  ====
prediction / truth     Dice    IoU    HD95, ASSD (mm)     NSD
=====================  ======  =====  ==================  ====
both empty             1       1      0                   1
one of them empty      0       0      ``inf``             0
=====================  ======  =====  ==================  ====

A distance to nothing is unbounded, so it is ``inf``, never silently NaN: a mean over cases that
holds such a case is ``inf`` too (report medians, or count those cases apart).

Pooled metrics (pixels summed over images before the ratio) use `overlap_counts` and
`dice_from_counts` / `iou_from_counts`, the same formulas.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from medwss.data.labels import IGNORE

Spacing = float | Sequence[float] | None

__all__ = [
    "assd",
    "dice",
    "dice_from_counts",
    "dice_per_class",
    "dice_per_slice",
    "hd95",
    "iou",
    "iou_from_counts",
    "iou_per_class",
    "iou_per_slice",
    "nsd",
    "overlap_counts",
    "surface_per_class",
]


# --- counts ---------------------------------------------------------------------------------------
def dice_from_counts(inter: ArrayLike, n_pred: ArrayLike, n_gt: ArrayLike, empty: float = 1.0) -> np.ndarray:
    """``2 I / (P + G)`` elementwise; `empty` where ``P + G == 0`` (1.0: both empty agree)."""
    i, p, g = (np.asarray(v, dtype=np.float64) for v in (inter, n_pred, n_gt))
    den = p + g
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * i / np.where(den > 0, den, 1.0), empty)


def iou_from_counts(inter: ArrayLike, n_pred: ArrayLike, n_gt: ArrayLike, empty: float = 1.0) -> np.ndarray:
    """``I / (P + G − I)`` elementwise; `empty` where the union is empty."""
    i, p, g = (np.asarray(v, dtype=np.float64) for v in (inter, n_pred, n_gt))
    union = p + g - i
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, i / np.where(union > 0, union, 1.0), empty)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(pred), np.asarray(gt)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _keep(a: np.ndarray, b: np.ndarray, ignore: int | None) -> np.ndarray | None:
    """Voxels neither map marks `ignore` (None when nothing is ignored)."""
    if ignore is None:
        return None
    keep = (a != ignore) & (b != ignore)
    return None if keep.all() else keep


def _binary(pred: np.ndarray, gt: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(pred, gt)
    keep = _keep(a, b, ignore)
    fa, fb = a > 0, b > 0
    if keep is not None:
        fa, fb = fa & keep, fb & keep
    return fa, fb


def _class_masks(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int | None, include_background: bool
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One-hot (C, *S) masks of both label maps, ignored voxels in no class, and the classes."""
    a, b = _pair(pred, gt)
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
    keep = _keep(a, b, ignore)
    classes = list(range(0 if include_background else 1, int(num_classes)))
    pa = np.stack([a == c for c in classes])
    pb = np.stack([b == c for c in classes])
    if keep is not None:
        pa &= keep
        pb &= keep
    return pa, pb, classes


def overlap_counts(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int | None = IGNORE, include_background: bool = True
) -> np.ndarray:
    """Per-class ``[intersection, |pred|, |gt|]`` voxel counts of two label maps, (C, 3).

    Sum these over images for pooled Dice / IoU (`dice_from_counts`, `iou_from_counts`).
    Rows are classes ``0..K-1`` (``1..K-1`` without `include_background`).
    """
    pa, pb, _ = _class_masks(pred, gt, num_classes, ignore, include_background)
    axes = tuple(range(1, pa.ndim))
    return np.stack([(pa & pb).sum(axes), pa.sum(axes), pb.sum(axes)], axis=1).astype(np.int64)


# --- Dice and IoU ---------------------------------------------------------------------------------
def dice(pred: np.ndarray, gt: np.ndarray, ignore: int | None = IGNORE) -> float:
    """Dice ``2|A∩B| / (|A| + |B|)`` of two binary masks (values ``> 0`` are foreground); 1.0 when both are empty."""
    a, b = _binary(pred, gt, ignore)
    return float(dice_from_counts(np.sum(a & b), a.sum(), b.sum()))


def iou(pred: np.ndarray, gt: np.ndarray, ignore: int | None = IGNORE) -> float:
    """IoU ``|A∩B| / |A∪B|`` of two binary masks (values ``> 0`` are foreground); 1.0 when both are empty."""
    a, b = _binary(pred, gt, ignore)
    return float(iou_from_counts(np.sum(a & b), a.sum(), b.sum()))


def _per_slice(pred: np.ndarray, gt: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = _binary(pred, gt, ignore)
    if a.ndim < 2:
        raise ValueError(f"per-slice metrics need a stack (N, ...), got shape {a.shape}")
    axes = tuple(range(1, a.ndim))
    return (a & b).sum(axes), a.sum(axes), b.sum(axes)


def dice_per_slice(pred: np.ndarray, gt: np.ndarray, ignore: int | None = IGNORE) -> np.ndarray:
    """Dice of each slice (N,) of binary mask stacks (N, H, W) (1.0 where both slices are empty)."""
    return dice_from_counts(*_per_slice(pred, gt, ignore))


def iou_per_slice(pred: np.ndarray, gt: np.ndarray, ignore: int | None = IGNORE) -> np.ndarray:
    """IoU of each slice (N,) of binary mask stacks (N, H, W) (1.0 where both slices are empty)."""
    return iou_from_counts(*_per_slice(pred, gt, ignore))


def dice_per_class(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int | None = IGNORE, include_background: bool = False
) -> np.ndarray:
    """Dice of each class of two label maps: (K-1,) for classes 1..K-1, (K,) with `include_background`.

    A class absent from both maps scores 1.0.
    """
    c = overlap_counts(pred, gt, num_classes, ignore, include_background)
    return dice_from_counts(c[:, 0], c[:, 1], c[:, 2])


def iou_per_class(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int | None = IGNORE, include_background: bool = False
) -> np.ndarray:
    """IoU of each class of two label maps, as `dice_per_class`."""
    c = overlap_counts(pred, gt, num_classes, ignore, include_background)
    return iou_from_counts(c[:, 0], c[:, 1], c[:, 2])


# --- surface metrics ------------------------------------------------------------------------------
def _spacing(spacing: Spacing, ndim: int) -> list[float]:
    if ndim not in (2, 3):
        raise ValueError(f"surface metrics need 2D or 3D masks, got {ndim} dimensions")
    if spacing is None:
        return [1.0] * ndim
    values = [float(spacing)] * ndim if np.isscalar(spacing) else [float(v) for v in spacing]  # type: ignore[arg-type, union-attr]
    if len(values) != ndim or not all(v > 0 for v in values):
        raise ValueError(f"spacing must be {ndim} positive values (mm), got {spacing}")
    return values


def _surface(
    pa: np.ndarray, pb: np.ndarray, metric: str, spacing: Spacing, tolerance: float | None = None
) -> np.ndarray:
    """`metric` (hd95, assd, nsd) of each channel of one-hot (C, *S) masks, with the empty-mask convention."""
    sp = _spacing(spacing, pa.ndim - 1)
    axes = tuple(range(1, pa.ndim))
    has_a, has_b = pa.any(axes), pb.any(axes)
    both_empty, one_empty = ~has_a & ~has_b, has_a ^ has_b
    if metric == "nsd":
        if tolerance is None or tolerance < 0:
            raise ValueError(f"NSD needs a tolerance in mm >= 0, got {tolerance}")
        out = np.where(both_empty, 1.0, 0.0)
    else:
        out = np.where(one_empty, np.inf, 0.0)
    both = np.flatnonzero(has_a & has_b)
    if len(both) == 0:
        return out
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    ya = torch.as_tensor(pa[both][None])  # (1, C', *S)
    yb = torch.as_tensor(pb[both][None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's empty-mask warnings: empty masks are handled above
        if metric == "hd95":
            values = compute_hausdorff_distance(ya, yb, include_background=True, percentile=95, spacing=sp)
        elif metric == "assd":
            values = compute_average_surface_distance(ya, yb, include_background=True, symmetric=True, spacing=sp)
        elif metric == "nsd":
            thresholds = [float(tolerance)] * len(both)  # type: ignore[arg-type]
            values = compute_surface_dice(ya, yb, thresholds, include_background=True, spacing=sp)
        else:
            raise ValueError(f"unknown surface metric {metric!r}")
    out[both] = values.reshape(-1).double().cpu().numpy()
    return out


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None, ignore: int | None = IGNORE) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) between the boundaries of two binary masks.

    MONAI's definition: the larger of the two directed 95th percentiles. 0 when both masks are
    empty, ``inf`` when one is.

    Args:
        pred: Predicted mask, 2D or 3D; values ``> 0`` are foreground.
        gt: Ground-truth mask on the same grid.
        spacing: Voxel size in mm, one value per axis (or one for all); None: 1.
        ignore: Voxels holding this value in either mask are left out.
    """
    a, b = _binary(pred, gt, ignore)
    return float(_surface(a[None], b[None], "hd95", spacing)[0])


def assd(pred: np.ndarray, gt: np.ndarray, spacing: Spacing = None, ignore: int | None = IGNORE) -> float:
    """Average symmetric surface distance (mm): the mean over both boundaries of the distance to the other.

    0 when both masks are empty, ``inf`` when one is; arguments as `hd95`.
    """
    a, b = _binary(pred, gt, ignore)
    return float(_surface(a[None], b[None], "assd", spacing)[0])


def nsd(
    pred: np.ndarray, gt: np.ndarray, tolerance: float, spacing: Spacing = None, ignore: int | None = IGNORE
) -> float:
    """Normalised surface distance (surface Dice): the share of both boundaries within `tolerance` mm of the other.

    1 when both masks are empty, 0 when one is; other arguments as `hd95`.
    """
    a, b = _binary(pred, gt, ignore)
    return float(_surface(a[None], b[None], "nsd", spacing, tolerance)[0])


def surface_per_class(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    metric: str = "hd95",
    spacing: Spacing = None,
    tolerance: float | None = None,
    ignore: int | None = IGNORE,
    include_background: bool = False,
) -> np.ndarray:
    """A surface metric (``hd95``, ``assd`` or ``nsd`` at `tolerance` mm) of each class of two label maps.

    Returns (K-1,) for classes 1..K-1, (K,) with `include_background`; conventions as `hd95` / `nsd`.
    """
    if metric not in ("hd95", "assd", "nsd"):
        raise ValueError(f"unknown surface metric '{metric}': choose hd95, assd or nsd")
    if metric == "nsd" and tolerance is None:
        raise ValueError("nsd needs a tolerance in mm")
    pa, pb, _ = _class_masks(pred, gt, num_classes, ignore, include_background)
    return _surface(pa, pb, metric, spacing, tolerance)
