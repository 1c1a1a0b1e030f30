"""Case-level classification metrics with bootstrap intervals, and the Dice of a heatmap (FROC: `medwss.eval.froc`).

Classification: ``y`` holds one label per case (0/1 for a binary task, 0..K-1 for K classes) and
``p`` the predicted probability of the positive class, (N,), or of each class, (N, K). Overlap
metrics (Dice, IoU, HD95, ASSD, NSD) live in `medwss.eval.overlap`; `dice` is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medwss.eval.overlap import dice

__all__ = [
    "bootstrap_ci",
    "classification_report",
    "dice",
    "heatmap_dice",
    "mean_ci",
    "paired_mean_ci",
    "roc_auc",
    "roc_curve",
]

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


def mean_ci(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of per-case values and its percentile bootstrap interval, resampling cases or their groups.

    Non-finite values are dropped. With `groups` (e.g. the patient of each volume or tile), each
    group's values are averaged first and the groups, in order of first appearance, are resampled:
    the interval is then over patients, not over their correlated cases.

    Args:
        values: (N,) per-case values.
        groups: (N,) group of each value, or None to resample the values themselves.
        n_boot: Bootstrap resamples.
        alpha: 1 − coverage: 0.05 gives a 95% interval.
        seed: Seed of the resampling.

    Returns:
        (mean, lower, upper); the bounds are NaN with fewer than two (groups of) values, and
        everything is NaN with none.

    Raises:
        ValueError: `groups` and `values` have different lengths.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if groups is not None:
        if len(groups) != len(v):
            raise ValueError(f"{len(v)} values but {len(groups)} groups")
        by: dict[Any, list[float]] = {}
        for x, g in zip(v, groups, strict=True):
            if np.isfinite(x):
                by.setdefault(g, []).append(float(x))
        v = np.asarray([np.mean(x) for x in by.values()], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan"), float("nan")
    return bootstrap_ci(
        lambda _y, p: float(np.mean(p)), np.zeros(len(v)), v, n_boot=n_boot, alpha=alpha, seed=seed, stratify=False
    )


def paired_mean_ci(
    a: Mapping[Any, float],
    b: Mapping[Any, float],
    groups: Mapping[Any, Any] | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float, int]:
    """Mean of ``a − b`` over the cases both settings scored, its bootstrap interval and the case count.

    Cases are matched by key (sorted); with `groups` (case → patient) the differences are averaged
    per patient and patients are resampled (`mean_ci`), so both settings move together in every
    resample and the interval reflects the difference of the settings, not the spread of the cases.

    Args:
        a: Case → value of setting a.
        b: Case → value of setting b.
        groups: Case → group, or None to resample cases.
        n_boot: Bootstrap resamples.
        alpha: 1 − coverage.
        seed: Seed of the resampling.

    Returns:
        (mean difference, lower, upper, cases in common); NaN everywhere with no case in common.
    """
    common = sorted(set(a) & set(b))
    diffs = [float(a[k]) - float(b[k]) for k in common]
    m, lo, hi = mean_ci(diffs, [groups[k] for k in common] if groups is not None else None, n_boot, alpha, seed)
    return m, lo, hi, len(common)


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


# --- overlap ---------------------------------------------------------------------------------------
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
