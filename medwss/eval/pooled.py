"""Summary metrics of a set of evaluated cases as functions of (resampled) case indices.

`PooledCases` turns per-case rows (from `medwss.eval.segmentation.evaluate_case`) into arrays once,
so a bootstrap can ask for a metric on any multiset of cases cheaply. `paired_difference` compares
two settings evaluated on the same cases (ensemble against single model, full against weak labels)
with a paired bootstrap: both settings are scored on the same resampled cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from medwss.eval.lesions import lesion_ap
from medwss.eval.metrics import bootstrap_ci, roc_auc

NAN = float("nan")
METRICS = ("dice", "dice_all", "auroc", "ap", "ranking")
"""Metrics `PooledCases.metric` computes: Dice over cases with a lesion, Dice over all cases,
case-level AUROC of the maxima, lesion-level AP, and the PI-CAI ranking score (AUROC + AP) / 2."""


class PooledCases:
    """Per-case results as arrays.

    Args:
        rows: Per-case dicts with ``label``, ``case_score``, ``dice``, ``n_gt_lesions`` and ``detections``.
    """

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self.n = len(rows)
        self.labels = np.asarray([int(r["label"]) for r in rows], dtype=np.int64)
        self.scores = np.asarray([float(r["case_score"]) for r in rows], dtype=np.float64)
        self.dices = np.asarray([float(r["dice"]) for r in rows], dtype=np.float64)
        self.n_gts = np.asarray([int(r["n_gt_lesions"]) for r in rows], dtype=np.float64)
        self.dets = np.asarray([d for r in rows for d in r["detections"]], dtype=np.float64).reshape(-1, 2)
        self.det_case = np.repeat(np.arange(self.n), [len(r["detections"]) for r in rows])
        self._memo: dict[tuple[str, bytes], float] = {}  # the ranking score reuses AUROC's and AP's resamples

    def metric(self, name: str, idx: np.ndarray) -> float:
        """Metric `name` (one of `METRICS`) on the cases `idx` (repeats allowed); NaN where undefined."""
        i = np.asarray(idx).astype(np.int64)
        key = (name, hashlib.blake2b(i.tobytes(), digest_size=16).digest())
        if key in self._memo:
            return self._memo[key]
        if name == "dice":
            d = self.dices[i][self.labels[i] == 1]
            value = float(d.mean()) if len(d) else NAN
        elif name == "dice_all":
            value = float(self.dices[i].mean()) if len(i) else NAN
        elif name == "auroc":
            try:
                value = roc_auc(self.labels[i], self.scores[i])
            except ValueError:
                value = NAN
        elif name == "ap":
            times = np.bincount(i, minlength=self.n).astype(np.float64)  # how often each case was drawn
            value = lesion_ap(self.dets, float(times @ self.n_gts), weights=times[self.det_case])
        elif name == "ranking":
            value = (self.metric("auroc", i) + self.metric("ap", i)) / 2
        else:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        self._memo[key] = value
        return value

    def with_ci(self, name: str, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
        """(estimate, lower, upper): percentile bootstrap over cases, stratified by case label."""
        return ci(lambda _, idx: self.metric(name, idx), self.labels, n_boot, alpha, seed)


def ci(fn: Any, labels: np.ndarray, n_boot: int, alpha: float, seed: int) -> tuple[float, float, float]:
    """`bootstrap_ci` over case indices stratified by `labels`; all NaN when the estimate is undefined."""
    try:
        est, lo, hi = bootstrap_ci(fn, labels, np.arange(len(labels), dtype=np.float64), n_boot, alpha, seed)
    except ValueError:
        return NAN, NAN, NAN
    return (est, lo, hi) if np.isfinite(est) else (NAN, NAN, NAN)


def paired_difference(
    rows_a: Sequence[dict[str, Any]],
    rows_b: Sequence[dict[str, Any]],
    metrics: Sequence[str] = ("dice", "auroc", "ap", "ranking"),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference ``a − b`` of each metric on the cases both settings evaluated, with a paired bootstrap.

    Cases are matched by ``case_id``; both settings are scored on the same resampled cases, so the
    interval reflects the difference of the methods and not the spread of the cases. An interval
    that excludes 0 marks a difference unlikely under resampling.

    Args:
        rows_a: Per-case rows of setting a (e.g. the ensemble), with ``case_id``.
        rows_b: Per-case rows of setting b (e.g. the single model).
        metrics: Names from `METRICS`.
        n_boot: Bootstrap resamples.
        alpha: 1 − coverage of the intervals.
        seed: Seed of the bootstrap.

    Returns:
        ``n`` (cases in common) and, per metric m, ``m_a``, ``m_b``, ``m_diff``, ``m_diff_lo``, ``m_diff_hi``.

    Raises:
        ValueError: No case in common, rows without ``case_id``, or a case whose label differs.
    """
    by_id = {str(r["case_id"]): r for r in rows_b}
    common = [r for r in rows_a if str(r["case_id"]) in by_id]
    if not common:
        raise ValueError("the two settings have no case_id in common")
    paired = [by_id[str(r["case_id"])] for r in common]
    differ = [str(a["case_id"]) for a, b in zip(common, paired, strict=True) if int(a["label"]) != int(b["label"])]
    if differ:
        raise ValueError(f"ground truth differs between the settings for case(s) {', '.join(differ[:5])}")
    pool_a, pool_b = PooledCases(common), PooledCases(paired)
    out: dict[str, Any] = {"n": len(common)}
    for name in metrics:
        est, lo, hi = ci(
            lambda _, idx, m=name: pool_a.metric(m, idx) - pool_b.metric(m, idx), pool_a.labels, n_boot, alpha, seed
        )
        everything = np.arange(len(common))
        out |= {f"{name}_a": pool_a.metric(name, everything), f"{name}_b": pool_b.metric(name, everything)}
        out |= {f"{name}_diff": est, f"{name}_diff_lo": lo, f"{name}_diff_hi": hi}
    return out
