"""CAMELYON16 FROC: point detections from heatmaps scored against lesions of a ground-truth mask.

Detections are points in level-0 pixels; lesions are the connected components of a ground-truth
mask (CAMELYON16 evaluation: small isolated tumour cells are not counted as misses or hits).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CAMELYON_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per slide at which CAMELYON16 averages the sensitivity."""


def detections_from_heatmap(
    scores_map: np.ndarray, downsample: float, threshold: float = 0.5, min_distance: int = 1
) -> np.ndarray:
    """Local maxima of a heatmap as point detections in level-0 pixels, strongest first.

    A pixel is a peak if it is the maximum of its ``(2 min_distance + 1)²`` neighbourhood and at
    least `threshold`; peaks closer than `min_distance` pixels (Chebyshev) to a stronger one, as on
    a plateau, are dropped. NaN pixels are never peaks.

    Args:
        scores_map: (h, w) heatmap at `downsample`.
        downsample: Level-0 pixels per heatmap pixel; pixel ``(r, c)`` maps to the level-0 point
            ``((c + 0.5) d, (r + 0.5) d)``, its centre.
        threshold: Smallest score of a detection.
        min_distance: Suppression radius in heatmap pixels (≥ 1).

    Returns:
        (M, 3) float array of (x, y, score).
    """
    heat = np.asarray(scores_map, dtype=np.float64)
    if heat.ndim != 2:
        raise ValueError(f"expected a 2D heatmap, got shape {heat.shape}")
    r = max(int(min_distance), 1)
    filled = np.where(np.isfinite(heat), heat, -np.inf)
    local_max = ndimage.maximum_filter(filled, size=2 * r + 1, mode="constant", cval=-np.inf)
    rows, cols = np.nonzero((filled == local_max) & (filled >= threshold) & np.isfinite(filled))
    values = filled[rows, cols]
    order = np.lexsort((cols, rows, -values))  # strongest first, then raster order
    kept: list[int] = []
    for i in order:
        if all(max(abs(rows[i] - rows[j]), abs(cols[i] - cols[j])) > r for j in kept):
            kept.append(int(i))
    k = np.asarray(kept, dtype=np.int64)
    d = float(downsample)
    return np.column_stack([(cols[k] + 0.5) * d, (rows[k] + 0.5) * d, values[k]]).astype(np.float64).reshape(-1, 3)


def _major_axis_length(rows: np.ndarray, cols: np.ndarray) -> float:
    """Major axis of the ellipse with the region's second moments (as scikit-image's regionprops)."""
    if len(rows) < 2:
        return 0.0
    cov = np.cov(np.vstack([rows, cols]).astype(np.float64), bias=True)
    return float(4 * np.sqrt(max(np.linalg.eigvalsh(cov)[-1], 0.0)))


def camelyon_lesions(
    mask: np.ndarray, downsample: float, mpp: float, dilation_um: float = 37.5, itc_um: float = 275.0
) -> tuple[np.ndarray, set[int]]:
    """The CAMELYON16 evaluation mask: tumour dilated, holes filled, 8-connected lesions labelled.

    As in the official script, the tumour is grown by half of 75 µm (the size of five tumour cells)
    and lesions whose major axis is below 275 µm (200 µm plus the growth) are isolated tumour cells
    (ITC): detections in them count neither as hits nor as false positives.

    Args:
        mask: (h, w) tumour mask at `downsample`.
        downsample: Level-0 pixels per mask pixel.
        mpp: Microns per level-0 pixel.
        dilation_um: Growth of the tumour region, µm.
        itc_um: Major axis (µm) below which a lesion is an ITC.

    Returns:
        (labels, itc_labels): (h, w) int32 lesion labels (0 background), and the labels of ITCs.
    """
    tumour = np.asarray(mask) > 0
    px_um = float(downsample) * float(mpp)
    if dilation_um > 0 and tumour.any():
        tumour = ndimage.distance_transform_edt(~tumour) < dilation_um / px_um
    filled = ndimage.binary_fill_holes(tumour)
    labels, n = ndimage.label(filled, structure=np.ones((3, 3), dtype=bool))
    itc: set[int] = set()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = np.nonzero(labels[box] == index)
        if _major_axis_length(rows, cols) * px_um < itc_um:
            itc.add(index)
    return labels.astype(np.int32), itc


@dataclass
class FROCResult:
    """A free-response ROC curve and the CAMELYON16 score.

    Attributes:
        fps_per_slide: Mean false positives per slide at each threshold, ascending (starts at 0).
        sensitivity: Fraction of lesions detected at each threshold.
        thresholds: Score thresholds (detections with ``score >= threshold`` count); the first is inf.
        fp_rates: False positives per slide at which the sensitivity is read.
        sensitivities: Sensitivity at each of `fp_rates`.
        score: Mean of `sensitivities` (the CAMELYON16 FROC score).
        n_lesions: Lesions counted (isolated tumour cells excluded).
        n_slides: Slides evaluated.
    """

    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    fp_rates: tuple[float, ...]
    sensitivities: np.ndarray
    score: float
    n_lesions: int
    n_slides: int

    def as_dict(self) -> dict[str, float | int]:
        """Flat summary: ``froc`` (the score), ``sens@<rate>`` for each rate, counts."""
        out: dict[str, float | int] = {"froc": self.score, "n_lesions": self.n_lesions, "n_slides": self.n_slides}
        for rate, sens in zip(self.fp_rates, self.sensitivities, strict=True):
            out[f"sens@{rate:g}fp"] = float(sens)
        return out


def _sensitivity_at(fps: np.ndarray, sens: np.ndarray, rate: float) -> float:
    """Linear interpolation on the curve as ``np.interp`` in the official script: from the last
    point with at most `rate` false positives to the next point; beyond the curve, its last value."""
    j = int(np.searchsorted(fps, rate, side="right")) - 1
    if j < 0:
        return 0.0
    if j >= len(fps) - 1:
        return float(sens[-1])
    x0, x1 = fps[j], fps[j + 1]
    return float(sens[j] + (sens[j + 1] - sens[j]) * (rate - x0) / (x1 - x0))


def _slide_hits(
    det: np.ndarray, labels: np.ndarray | None, ds: float, ignore: Collection[int]
) -> tuple[list[float], dict[int, float], int]:
    """False-positive scores, best score per hit lesion, and the number of lesions of one slide."""
    det = np.asarray(det, dtype=np.float64).reshape(-1, 3)
    if labels is None:
        return det[:, 2].tolist(), {}, 0
    lab = np.asarray(labels)
    if lab.dtype == bool or (lab.size and lab.max() <= 1):
        lab = ndimage.label(lab > 0, structure=np.ones((3, 3), dtype=bool))[0]
    lesions = set(np.unique(lab[lab > 0]).tolist()) - set(ignore)
    rows = np.floor(det[:, 1] / ds).astype(np.int64)
    cols = np.floor(det[:, 0] / ds).astype(np.int64)
    inside = (rows >= 0) & (rows < lab.shape[0]) & (cols >= 0) & (cols < lab.shape[1])
    hit = np.zeros(len(det), dtype=np.int64)
    hit[inside] = lab[rows[inside], cols[inside]]
    fps = det[hit == 0, 2].tolist()
    best: dict[int, float] = {}
    for label, score in zip(hit.tolist(), det[:, 2].tolist(), strict=True):
        if label in lesions:
            best[label] = max(best.get(label, -np.inf), score)
    return fps, best, len(lesions)


def froc(
    detections: Sequence[np.ndarray],
    lesion_masks: Sequence[np.ndarray | None],
    mask_downsample: float | Sequence[float],
    ignore_labels: Sequence[Collection[int]] | None = None,
    fp_rates: Sequence[float] = CAMELYON_FP_RATES,
) -> FROCResult:
    """CAMELYON16 lesion-detection FROC over a set of slides.

    A detection inside a lesion is a hit; each lesion counts once, with the best score of the
    detections in it, and further detections in it are neither hits nor false positives. A
    detection outside every lesion (or on a slide without tumour) is a false positive. At each
    distinct score threshold, sensitivity = detected lesions / all lesions and FPs/slide = false
    positives / slides. The score is the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 FPs per slide,
    interpolated as in the official script (which, unlike this function, also drops the lowest
    threshold; the two agree whenever some lesion is missed).

    Args:
        detections: Per slide, (M, 3) arrays of (x, y, score) in level-0 pixels.
        lesion_masks: Per slide, an (h, w) lesion mask at `mask_downsample`: labelled lesions
            (int, 0 background; e.g. from `camelyon_lesions`) or a bool or 0/1 mask (labelled
            here, 8-connected); None for a slide without tumour.
        mask_downsample: Level-0 pixels per mask pixel, one value or one per slide.
        ignore_labels: Per slide, lesion labels to leave out (isolated tumour cells).
        fp_rates: False positives per slide at which the sensitivity is averaged.

    Returns:
        The curve and the score; sensitivities are NaN when there is no lesion at all.
    """
    n = len(detections)
    if len(lesion_masks) != n:
        raise ValueError(f"{n} slides of detections but {len(lesion_masks)} lesion masks")
    if n == 0:
        raise ValueError("FROC needs at least one slide")
    if isinstance(mask_downsample, (int, float, np.number)):
        ds = [float(mask_downsample)] * n
    else:
        ds = [float(d) for d in mask_downsample]
    ignore = list(ignore_labels) if ignore_labels is not None else [()] * n
    if len(ds) != n or len(ignore) != n:
        raise ValueError("mask_downsample and ignore_labels need one entry per slide")
    fp_scores: list[float] = []
    tp_scores: list[float] = []
    n_lesions = 0
    for det, labels, d, ign in zip(detections, lesion_masks, ds, ignore, strict=True):
        fps, best, count = _slide_hits(det, labels, d, ign)
        fp_scores += fps
        tp_scores += list(best.values())
        n_lesions += count
    fp_arr, tp_arr = np.asarray(fp_scores), np.asarray(tp_scores)
    thresholds = np.r_[np.inf, np.unique(np.r_[fp_arr, tp_arr])[::-1]]
    fp_counts = np.asarray(len(fp_arr) - np.searchsorted(np.sort(fp_arr), thresholds, side="left"), dtype=np.float64)
    tp_counts = np.asarray(len(tp_arr) - np.searchsorted(np.sort(tp_arr), thresholds, side="left"), dtype=np.float64)
    fps_per_slide = fp_counts / n
    sensitivity = tp_counts / n_lesions if n_lesions else np.full(len(thresholds), np.nan)
    rates = tuple(float(r) for r in fp_rates)
    at = np.array([_sensitivity_at(fps_per_slide, sensitivity, r) for r in rates])
    return FROCResult(fps_per_slide, sensitivity, thresholds, rates, at, float(np.mean(at)), n_lesions, n)
