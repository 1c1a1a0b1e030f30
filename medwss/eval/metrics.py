"""Case-level classification metrics with bootstrap intervals, overlap metrics, and CAMELYON16 FROC.

Classification: ``y`` holds one label per case (0/1 for a binary task, 0..K-1 for K classes) and
``p`` the predicted probability of the positive class, (N,), or of each class, (N, K). Overlap
metrics compare binary maps on one grid (use `medwss.eval.heatmap` to bring a ground truth to a
heatmap's grid). FROC follows the CAMELYON16 evaluation: detections are points in level-0 pixels,
lesions are the connected components of a ground-truth mask.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CAMELYON_FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per slide at which CAMELYON16 averages the sensitivity."""

MetricFn = Callable[[np.ndarray, np.ndarray], float]


# --- classification -----------------------------------------------------------------------------
def _labels(y: np.ndarray | Sequence[int]) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be one per case, shape (N,), got {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not np.all(np.isfinite(y)) or not np.all(np.asarray(y) == np.round(y)):
        raise ValueError("labels must be integers (0/1, or 0..K-1 for K classes)")
    return y.astype(np.int64)


def _scores(p: np.ndarray | Sequence[float], n: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim not in (1, 2) or p.shape[0] != n:
        raise ValueError(f"scores must be (N,) or (N, K) with N = {n} labels, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("scores contain NaN or infinite values")
    return p


def _binary_auc(positive: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative cases")
    from scipy.stats import rankdata

    ranks = rankdata(s)  # ties get their average rank: the Mann-Whitney U statistic
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve; macro one-vs-rest for (N, K) scores with K > 1.

    Ties count one half (the Mann-Whitney statistic). In the multi-class case, classes absent
    from `y` are left out of the average.

    Args:
        y: (N,) labels, 0/1 (binary) or 0..K-1.
        p: (N,) scores of the positive class, or (N, K) scores of each class.

    Raises:
        ValueError: Fewer than two classes in `y`, mismatched shapes, or non-finite scores.
    """
    labels = _labels(y)
    s = _scores(p, len(labels))
    if s.ndim == 1:
        if np.any((labels != 0) & (labels != 1)):
            raise ValueError("binary AUC needs 0/1 labels; pass (N, K) scores for several classes")
        return _binary_auc(labels == 1, s)
    k = s.shape[1]
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in 0..{k - 1} for {k} score columns")
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("AUC needs at least two classes among the labels")
    return float(np.mean([_binary_auc(labels == c, s[:, c]) for c in present]))


def roc_curve(
    y: np.ndarray | Sequence[int], p: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of the binary ROC curve, one per distinct score, starting at (0, 0).

    Args:
        y: (N,) 0/1 labels.
        p: (N,) scores of the positive class.

    Returns:
        (fpr, tpr, thresholds): a case is called positive when its score is ``>= threshold``;
        the first threshold is ``inf``.
    """
    labels = _labels(y)
    s = _scores(p, len(labels))
    if s.ndim != 1:
        raise ValueError("roc_curve is binary; pass one column of (N, K) scores")
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both positive and negative cases")
    order = np.argsort(-s, kind="mergesort")
    s, positive = s[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(positive)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last]]


def bootstrap_ci(
    metric_fn: MetricFn,
    y: np.ndarray | Sequence[int],
    p: np.ndarray | Sequence[float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[float, float, float]:
    """A metric and its percentile bootstrap interval, resampling cases with replacement.

    With `stratify`, cases are resampled within each class, so every resample keeps the class
    counts of the data (labels must then be classes, not continuous targets). Resamples on which
    the metric fails (``ValueError``, e.g. one class only) or is not finite are skipped.

    Args:
        metric_fn: ``metric_fn(y, p) -> float``, e.g. `roc_auc`.
        y: (N,) labels, one per case.
        p: (N,) or (N, K) scores, one row per case.
        n_boot: Number of resamples.
        alpha: 1 − coverage: 0.05 gives a 95% interval.
        seed: Seed of the resampling; the same seed gives the same interval.
        stratify: Resample within each class.

    Returns:
        (estimate on all cases, lower bound, upper bound); the bounds are NaN when no resample
        gave a value.

    Raises:
        ValueError: The metric fails on the full data, or `y` and `p` have different lengths.
    """
    y_arr, p_arr = np.asarray(y), np.asarray(p)
    if len(y_arr) != len(p_arr):
        raise ValueError(f"{len(y_arr)} labels but {len(p_arr)} scores")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    estimate = float(metric_fn(y_arr, p_arr))
    rng = np.random.default_rng(seed)
    n = len(y_arr)
    groups = [np.flatnonzero(y_arr == c) for c in np.unique(y_arr)] if stratify else [np.arange(n)]
    values = []
    for _ in range(int(n_boot)):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        try:
            value = float(metric_fn(y_arr[idx], p_arr[idx]))
        except ValueError:
            continue
        if np.isfinite(value):
            values.append(value)
    if not values:
        return estimate, float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return estimate, float(lo), float(hi)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def classification_report(
    y: np.ndarray | Sequence[int],
    p: np.ndarray | Sequence[float],
    threshold: float = 0.5,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float | int]:
    """AUC with a bootstrap interval, and accuracy, balanced accuracy, sensitivity, specificity.

    Binary (``p`` of shape (N,)): a case is called positive when ``p >= threshold``. Several
    classes (``p`` of shape (N, K)): the prediction is the arg-max, sensitivity and specificity
    are macro averages of the one-vs-rest values, and the AUC is macro one-vs-rest. Values that
    cannot be computed (AUC with one class present) are NaN.

    Args:
        y: (N,) labels.
        p: (N,) or (N, K) scores.
        threshold: Decision threshold of the binary case.
        n_boot: Bootstrap resamples for the AUC interval (0 for none).
        alpha: 1 − coverage of the interval.
        seed: Seed of the bootstrap.

    Returns:
        A flat dict: ``n``, ``auc``, ``auc_lo``, ``auc_hi``, ``accuracy``, ``balanced_accuracy``,
        ``sensitivity``, ``specificity``; plus ``n_pos``, ``n_neg`` and ``threshold`` (binary) or
        ``n_classes`` (several classes).
    """
    labels = _labels(y)
    s = _scores(p, len(labels))
    nan = float("nan")
    try:
        auc, lo, hi = bootstrap_ci(roc_auc, labels, s, n_boot=n_boot, alpha=alpha, seed=seed)
        if n_boot <= 0:
            lo = hi = nan
    except ValueError:
        auc = lo = hi = nan
    out: dict[str, float | int] = {"n": len(labels), "auc": auc, "auc_lo": lo, "auc_hi": hi}
    if s.ndim == 1:
        pred = (s >= threshold).astype(np.int64)
        pos, neg = labels == 1, labels != 1
        sens = _ratio(np.sum(pred[pos] == 1), pos.sum())
        spec = _ratio(np.sum(pred[neg] == 0), neg.sum())
        recalls = [v for v in (sens, spec) if np.isfinite(v)]
        out |= {"n_pos": int(pos.sum()), "n_neg": int(neg.sum()), "threshold": float(threshold)}
    else:
        k = s.shape[1]
        pred = np.argmax(s, axis=1)
        per_sens = [_ratio(np.sum(pred[labels == c] == c), np.sum(labels == c)) for c in range(k)]
        per_spec = [_ratio(np.sum(pred[labels != c] != c), np.sum(labels != c)) for c in range(k)]
        recalls = [v for v in per_sens if np.isfinite(v)]
        sens = float(np.mean(recalls)) if recalls else nan
        finite_spec = [v for v in per_spec if np.isfinite(v)]
        spec = float(np.mean(finite_spec)) if finite_spec else nan
        out["n_classes"] = k
    out |= {
        "accuracy": float(np.mean(pred == labels)) if len(labels) else nan,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else nan,
        "sensitivity": sens,
        "specificity": spec,
    }
    return out


# --- overlap --------------------------------------------------------------------------------------
def dice(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two binary masks of the same shape.

    Non-zero values count as foreground. Two empty masks give 1.0 (perfect agreement).
    """
    a, b = np.asarray(pred_mask) > 0, np.asarray(gt_mask) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def heatmap_dice(scores_map: np.ndarray, gt_map: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of a heatmap thresholded at ``>= threshold`` against a ground-truth mask on the same grid.

    NaN pixels (no tile) count as background. Use `medwss.eval.heatmap.rasterize_gt` to put a
    slide's ground truth on the heatmap's grid.
    """
    scores = np.asarray(scores_map, dtype=np.float64)
    if scores.shape != np.shape(gt_map):
        raise ValueError(
            f"heatmap {scores.shape} and ground truth {np.shape(gt_map)} differ in shape; "
            "bring the ground truth to the heatmap grid with medwss.eval.heatmap.rasterize_gt"
        )
    return dice(np.nan_to_num(scores, nan=-np.inf) >= threshold, gt_map)


# --- detection (CAMELYON16 FROC) -----------------------------------------------------------------
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
