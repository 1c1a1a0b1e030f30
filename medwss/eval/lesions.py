"""Lesion-level detection from probability maps, following the PI-CAI evaluation conventions.

Candidates are extracted from a probability map (2D or 3D), each with one confidence; a candidate
is a hit when it overlaps a ground-truth lesion enough (IoU > 0.1 by default, PI-CAI's criterion);
each ground-truth lesion is hit at most once. Pooled over cases, the hits and false positives give
the average precision (AP) and the sensitivity at fixed false positives per case (FROC).

A detection list is a sequence of ``(confidence, is_tp)`` pairs, candidates only; lesions never
hit enter the metrics through the number of ground-truth lesions (as misses at confidence 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from medwss.eval.overlap import iou_from_counts

Mode = Literal["dynamic", "threshold"]
Hit = Literal["iou", "overlap"]
Detections = Sequence[tuple[float, bool]] | np.ndarray

PICAI_FP_RATES = (0.5, 1.0, 2.0)
"""False positives per case at which the sensitivity is reported."""


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, min(max(int(connectivity), 1), ndim))


def lesion_candidates(
    prob: np.ndarray,
    mode: Mode = "dynamic",
    threshold: float = 0.5,
    min_voxels: int = 1,
    max_lesions: int | None = 10,
    rel_threshold: float = 0.4,
    floor: float = 0.01,
    connectivity: int = 1,
    remove_adjacent: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion candidates of a probability map, each with its peak probability as confidence.

    ``dynamic`` (PI-CAI's default extraction): take the global maximum, grow the connected
    component of voxels ``>= rel_threshold × peak`` that holds it, give it the peak as its
    confidence, zero it and repeat, until `max_lesions` candidates or the peak falls below
    `floor`. With `remove_adjacent` (PI-CAI's default), a region that touches a candidate already
    taken (any of its ``3^ndim`` neighbours), such as the rim left around a peak, is zeroed without
    becoming a candidate. ``threshold``: the connected components of ``prob >= threshold``, each with its
    maximum. Components smaller than `min_voxels` are dropped (in ``dynamic`` mode they are
    removed and the search goes on, for at most ``100 + 10 × max_lesions`` peaks in all).

    Args:
        prob: (…) probability map, any number of dimensions; NaN counts as 0.
        mode: ``dynamic`` or ``threshold``.
        threshold: Threshold of the ``threshold`` mode.
        min_voxels: Smallest candidate, in voxels.
        max_lesions: Keep at most this many candidates (the most confident); None keeps all.
        rel_threshold: Fraction of the peak that bounds a ``dynamic`` candidate.
        floor: Smallest peak a ``dynamic`` candidate may have.
        connectivity: 1 joins voxels sharing a face; ``prob.ndim`` joins any touching voxels.
        remove_adjacent: ``dynamic``: drop regions touching an earlier candidate.

    Returns:
        (labels, confidences): an int32 map of the shape of `prob` with candidates 1..K (0
        background), numbered by decreasing confidence, and the (K,) confidences.
    """
    p = np.nan_to_num(np.asarray(prob, dtype=np.float64), nan=0.0)
    structure = _structure(p.ndim, connectivity)
    limit = np.inf if max_lesions is None else int(max_lesions)
    labels = np.zeros(p.shape, dtype=np.int32)
    confidences: list[float] = []
    if mode == "threshold":
        comps, n = ndimage.label(p >= threshold, structure=structure)
        if n:
            sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
            peaks = np.asarray(ndimage.maximum(p, comps, index=np.arange(1, n + 1)), dtype=np.float64)
            order = [int(i) for i in np.argsort(-peaks, kind="stable") if sizes[i] >= min_voxels]
            order = order[: int(min(limit, len(order)))]
            relabel = np.zeros(n + 1, dtype=np.int32)  # component → candidate number (0: dropped)
            relabel[np.asarray(order, dtype=np.int64) + 1] = np.arange(1, len(order) + 1)
            labels = relabel[comps]
            confidences = [float(peaks[i]) for i in order]
    elif mode == "dynamic":
        work = p.copy()
        full = ndimage.generate_binary_structure(p.ndim, p.ndim)
        tries = 10_000 if max_lesions is None else 100 + 10 * int(max_lesions)  # bound for maps of tiny specks
        while len(confidences) < limit and tries > 0:
            tries -= 1
            flat = int(np.argmax(work))
            peak = float(work.flat[flat])
            if peak < floor or peak <= 0:
                break
            comps, _ = ndimage.label(work >= rel_threshold * peak, structure=structure)
            region = comps == comps.flat[flat]
            work[region] = 0.0
            if remove_adjacent and confidences and (region & ndimage.binary_dilation(labels > 0, full)).any():
                continue
            if int(region.sum()) >= min_voxels:
                confidences.append(peak)
                labels[region] = len(confidences)
    else:
        raise ValueError(f"unknown candidate mode {mode!r}: use 'dynamic' or 'threshold'")
    return labels, np.asarray(confidences, dtype=np.float64)


def label_lesions(gt_mask: np.ndarray, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Ground-truth lesions: the connected components of the non-zero voxels of `gt_mask`."""
    gt = np.asarray(gt_mask) > 0
    labels, n = ndimage.label(gt, structure=_structure(gt.ndim, connectivity))
    return labels.astype(np.int32), int(n)


def match_lesions(
    candidates_map: np.ndarray,
    confidences: np.ndarray | Sequence[float],
    gt_mask: np.ndarray,
    iou: float = 0.1,
    hit: Hit = "iou",
    connectivity: int = 1,
) -> tuple[list[tuple[float, bool]], int]:
    """Match candidates to ground-truth lesions, most confident candidate first.

    A candidate hits a lesion not yet hit when their IoU exceeds `iou` (``hit="iou"``) or when
    they share a voxel (``hit="overlap"``); among several such lesions it takes the one with the
    highest IoU. Every other candidate, including a second hit on a lesion already matched, is
    a false positive.

    Args:
        candidates_map: Candidate labels 1..K (0 background), as from `lesion_candidates`.
        confidences: (K,) confidence of candidate k at index k − 1.
        gt_mask: Ground truth on the same grid; lesions are its connected components.
        iou: IoU a hit must exceed.
        hit: ``iou`` or ``overlap``.
        connectivity: Connectivity of the ground-truth lesions.

    Returns:
        (detections, n_gt): one ``(confidence, is_tp)`` per candidate, and the number of lesions.
    """
    cand = np.asarray(candidates_map)
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if cand.shape != np.shape(gt_mask):
        raise ValueError(f"candidates {cand.shape} and ground truth {np.shape(gt_mask)} differ in shape")
    if hit not in ("iou", "overlap"):
        raise ValueError(f"unknown hit criterion {hit!r}: use 'iou' or 'overlap'")
    gt, n_gt = label_lesions(gt_mask, connectivity)
    k = len(conf)
    if cand.size and int(cand.max()) > k:
        raise ValueError(f"candidate map has label {int(cand.max())} but only {k} confidences")
    # joint[c, g]: voxels of candidate c in lesion g (row and column 0 are background)
    joint = np.zeros((k + 1, n_gt + 1), dtype=np.int64)
    np.add.at(joint, (cand.ravel().astype(np.int64), gt.ravel().astype(np.int64)), 1)
    cand_size, gt_size = joint.sum(axis=1), joint.sum(axis=0)
    matched: set[int] = set()
    is_tp = np.zeros(k, dtype=bool)
    for c in np.argsort(-conf, kind="stable") + 1:
        inter = joint[c, 1:]
        ious = iou_from_counts(inter, cand_size[c], gt_size[1:])
        ok = (ious > iou) if hit == "iou" else (inter > 0)
        free = [g for g in np.flatnonzero(ok) if g + 1 not in matched]
        if free:
            best = max(free, key=lambda g: ious[g])
            matched.add(int(best) + 1)
            is_tp[c - 1] = True
    return [(float(v), bool(t)) for v, t in zip(conf, is_tp, strict=True)], n_gt


def _cumulative(detections: Detections, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with the (weighted) true and false positives at or above each."""
    arr = np.asarray(detections, dtype=np.float64).reshape(-1, 2)
    if len(arr) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    w = np.ones(len(arr)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-arr[:, 0], kind="stable")
    conf, tp, w = arr[order, 0], arr[order, 1] > 0, w[order]
    last = np.r_[np.flatnonzero(np.diff(conf) != 0), len(conf) - 1]  # last index of each tie group
    return conf[last], np.cumsum(w * tp)[last], np.cumsum(w * ~tp)[last]


def precision_recall(
    detections: Detections, n_gt: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct confidence, the missed lesions at confidence 0 included.

    As in PI-CAI, the confidence-0 point only conveys the number of lesions: its precision is 0,
    so lesions never hit lower the AP and never add to it.

    Args:
        detections: ``(confidence, is_tp)`` pairs, or an (M, 2) array of them.
        n_gt: Number of ground-truth lesions.
        weights: (M,) multiplicity of each detection (a bootstrap resample counts a case twice).

    Returns:
        (precision, recall, thresholds), thresholds descending.
    """
    thr, tp, fp = _cumulative(detections, weights)
    found = float(tp[-1]) if len(tp) else 0.0
    missed = n_gt > found + 1e-9
    if missed:  # lesions never hit: positives at confidence 0, after every candidate
        thr, tp, fp = np.r_[thr, 0.0], np.r_[tp, float(n_gt)], np.r_[fp, fp[-1] if len(fp) else 0.0]
    precision = tp / np.maximum(tp + fp, 1e-12)
    if missed:
        precision[-1] = 0.0
    recall = tp / n_gt if n_gt else np.full(len(tp), np.nan)
    return precision, recall, thr


def lesion_ap(detections: Detections, n_gt: float, weights: np.ndarray | None = None) -> float:
    """Average precision ``Σ (R_k − R_{k−1}) P_k`` over the distinct confidences (the step integral of
    scikit-learn's and PI-CAI's): recall counts every lesion, missed ones entering at confidence 0
    with precision 0 (see `precision_recall`). NaN without any ground-truth lesion; `weights` as in
    `precision_recall`."""
    if n_gt <= 0:
        return float("nan")
    precision, recall, _ = precision_recall(detections, n_gt, weights)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def froc_curve(detections: Detections, n_gt: int, n_cases: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False positives per case and sensitivity at each distinct confidence (descending).

    Returns:
        (fp_per_case, sensitivity, thresholds), starting at (0, 0, inf).
    """
    if n_cases <= 0:
        raise ValueError("FROC needs at least one case")
    thr, tp, fp = _cumulative(detections)
    sens = np.r_[0.0, tp] / n_gt if n_gt else np.full(len(tp) + 1, np.nan)
    return np.r_[0.0, fp] / n_cases, sens, np.r_[np.inf, thr]


def sensitivity_at_fp(
    detections: Detections, n_gt: int, n_cases: int, fp_rates: Sequence[float] = PICAI_FP_RATES
) -> dict[float, float]:
    """Sensitivity at fixed false positives per case: the best sensitivity of any threshold whose
    false positives per case do not exceed the rate (no interpolation); NaN without lesions."""
    fps, sens, _ = froc_curve(detections, n_gt, n_cases)
    out: dict[float, float] = {}
    for rate in fp_rates:
        ok = fps <= float(rate) + 1e-12
        out[float(rate)] = float(np.max(sens[ok])) if n_gt else float("nan")
    return out
