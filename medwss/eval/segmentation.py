"""Segmentation and detection evaluation of probability maps, per case and per group (PI-CAI style).

`evaluate_case` scores one map against its ground truth: Dice, HD95 and ASSD of the thresholded
map (`medwss.eval.overlap`, in mm with the case's spacing), lesion candidates matched to
ground-truth lesions, and the case score (maximum probability). `summarize`
pools cases, overall and per group (site, split, ...): Dice, case-level AUROC, lesion-level AP,
sensitivity at fixed false positives per case, and the PI-CAI ranking score ``(AUROC + AP) / 2``,
each with a percentile bootstrap interval over cases. `compare` puts several settings side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medwss.eval.lesions import (
    PICAI_FP_RATES,
    Hit,
    Mode,
    lesion_candidates,
    match_lesions,
    sensitivity_at_fp,
)
from medwss.eval.overlap import assd, dice, hd95
from medwss.eval.pooled import METRICS, PooledCases, paired_difference
from medwss.eval.tables import COMPARE_METRICS, compare, summary_table

__all__ = ["COMPARE_METRICS", "compare", "evaluate_case", "paired_difference", "summarize", "summary_table"]

NAN = float("nan")


def evaluate_case(
    prob: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    threshold: float = 0.5,
    mode: Mode = "dynamic",
    iou: float = 0.1,
    hit: Hit = "iou",
    connectivity: int = 1,
    surface: bool = True,
    **candidate_kw: Any,
) -> dict[str, Any]:
    """Score one probability map against its ground-truth mask.

    Args:
        prob: (…) probabilities in [0, 1] (2D or 3D); NaN counts as 0.
        gt: Ground truth on the same grid; non-zero voxels are lesion.
        spacing: Voxel size in mm, for the volumes in ml (left out when None) and the surface
            distances (in voxels when None).
        threshold: Threshold of the segmentation (``prob >= threshold``) scored by Dice.
        mode: Candidate extraction, ``dynamic`` or ``threshold`` (see `lesion_candidates`).
        iou: IoU a candidate must exceed to hit a lesion.
        hit: ``iou`` or ``overlap`` (any shared voxel is a hit).
        connectivity: Of candidates and lesions: 1 joins voxels sharing a face, ``prob.ndim`` any touching.
        surface: Add ``hd95`` and ``assd`` of the thresholded map (2D or 3D maps only).
        **candidate_kw: Passed to `lesion_candidates` (min_voxels, max_lesions, floor, ...).

    Returns:
        ``case_score`` (maximum probability), ``label`` (1 when the ground truth has a lesion),
        ``dice`` (1.0 when prediction and ground truth are both empty; ``empty_agree`` marks
        those cases), ``hd95`` and ``assd`` (with `surface`; 0 when both are empty, ``inf`` when
        one is), ``n_gt_lesions``, ``n_candidates``, ``n_tp``, ``n_fp``, ``gt_voxels``,
        ``pred_voxels`` (plus ``gt_ml``, ``pred_ml`` with `spacing`) and ``detections``, a list
        of ``(confidence, is_tp)``.
    """
    p = np.nan_to_num(np.asarray(prob, dtype=np.float64), nan=0.0)
    g = np.asarray(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"probability map {p.shape} and ground truth {g.shape} differ in shape")
    pred = p >= threshold
    if mode == "threshold":
        candidate_kw.setdefault("threshold", threshold)
    labels, conf = lesion_candidates(p, mode=mode, connectivity=connectivity, **candidate_kw)
    detections, n_gt = match_lesions(labels, conf, g, iou=iou, hit=hit, connectivity=connectivity)
    n_tp = sum(t for _, t in detections)
    row: dict[str, Any] = {
        "case_score": float(p.max()) if p.size else 0.0,
        "label": int(g.any()),
        "dice": dice(pred, g),
        "empty_agree": bool(not g.any() and not pred.any()),
        "n_gt_lesions": n_gt,
        "n_candidates": len(detections),
        "n_tp": int(n_tp),
        "n_fp": len(detections) - int(n_tp),
        "gt_voxels": int(g.sum()),
        "pred_voxels": int(pred.sum()),
    }
    if spacing is not None:
        voxel_ml = float(np.prod(np.asarray(spacing, dtype=np.float64)[: p.ndim])) / 1000.0
        row |= {"gt_ml": row["gt_voxels"] * voxel_ml, "pred_ml": row["pred_voxels"] * voxel_ml}
    if surface and p.ndim in (2, 3):
        sp = None if spacing is None else tuple(float(v) for v in spacing)[: p.ndim]
        row |= {"hd95": hd95(pred, g, spacing=sp), "assd": assd(pred, g, spacing=sp)}
    row["detections"] = detections
    return row


def _summary(
    rows: Sequence[dict[str, Any]], seed: int, n_boot: int, alpha: float, fp_rates: Sequence[float]
) -> dict[str, Any]:
    pool = PooledCases(rows)
    n_pos = int(pool.labels.sum())
    out: dict[str, Any] = {"n": pool.n, "n_pos": n_pos, "n_neg": pool.n - n_pos}
    for name in METRICS:
        est, lo, hi = pool.with_ci(name, n_boot=n_boot, alpha=alpha, seed=seed)
        out |= {name: est, f"{name}_lo": lo, f"{name}_hi": hi}
    out["n_empty_agree"] = int(sum(bool(r["empty_agree"]) for r in rows))
    n_gt = int(pool.n_gts.sum())
    out |= {"n_lesions": n_gt, "n_candidates": len(pool.dets), "n_tp": int(pool.dets[:, 1].sum())}
    sens = sensitivity_at_fp(pool.dets, n_gt, pool.n, fp_rates)
    out |= {f"sens@{rate:g}fp": value for rate, value in sens.items()}
    return out


def summarize(
    rows: Sequence[dict[str, Any]],
    group_by: str | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    fp_rates: Sequence[float] = PICAI_FP_RATES,
) -> list[dict[str, Any]]:
    """Summary rows: one per value of `group_by` (sorted), then ``all``.

    Intervals are percentile bootstraps over cases, stratified by case label (every resample
    keeps the numbers of positive and negative cases). AP and sensitivities pool the lesions of
    the cases resampled. ``dice`` averages over cases with a lesion; ``dice_all`` over every case,
    a case with empty prediction and empty ground truth counting 1 (``n_empty_agree`` of them).
    Metrics that a group cannot define (AUROC with one class, AP without lesions) are NaN.

    Args:
        rows: Per-case dicts from `evaluate_case`, with the `group_by` key added.
        group_by: Key of the rows to group by (``site``, ``split``, ...); None for ``all`` only.
        seed: Seed of the bootstrap.
        n_boot: Bootstrap resamples (0: no intervals).
        alpha: 1 − coverage of the intervals.
        fp_rates: False positives per case at which the sensitivity is read.

    Returns:
        One dict per group with ``group`` and the metrics, the ``all`` row last.
    """
    if not rows:
        raise ValueError("no cases to summarize")
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    if group_by is not None:
        missing = [i for i, r in enumerate(rows) if group_by not in r]
        if missing:
            raise ValueError(f"group_by key {group_by!r} missing from {len(missing)} row(s)")
        for value in sorted({str(r[group_by]) for r in rows}):
            groups.append((value, [r for r in rows if str(r[group_by]) == value]))
    groups.append(("all", list(rows)))
    return [{"group": name, **_summary(sub, seed, n_boot, alpha, fp_rates)} for name, sub in groups]
