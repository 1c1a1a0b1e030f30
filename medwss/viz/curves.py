"""Lesion-detection curves as a PNG: precision–recall and FROC, overall and per group."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.eval.lesions import froc_curve, lesion_ap, precision_recall
from medwss.io.atomic import atomic_path


def _curves(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, int]:
    dets = [d for r in rows for d in r["detections"]]
    n_gt = int(sum(r["n_gt_lesions"] for r in rows))
    precision, recall, thr = precision_recall(dets, n_gt)
    precision, recall = precision[thr > 0], recall[thr > 0]  # the confidence-0 point is no operating point
    fps, sens, _ = froc_curve(dets, n_gt, len(rows))
    return precision, recall, fps, sens, lesion_ap(dets, n_gt), n_gt


def pr_froc_png(
    rows: Sequence[dict[str, Any]], path: str | Path, group_by: str | None = None, max_fp: float = 4.0
) -> Path:
    """Plot the precision–recall curve and the FROC curve of per-case rows (from `evaluate_case`).

    Args:
        rows: Per-case dicts with ``detections`` and ``n_gt_lesions`` (and the `group_by` key).
        path: Output PNG, written atomically.
        group_by: Key of the rows giving one curve per group besides ``all``.
        max_fp: Right end of the FROC axis, false positives per case.

    Returns:
        The PNG path.
    """
    from matplotlib.figure import Figure

    groups: list[tuple[str, Sequence[dict[str, Any]]]] = [("all", rows)]
    if group_by is not None:
        for value in sorted({str(r[group_by]) for r in rows}):
            groups.append((value, [r for r in rows if str(r[group_by]) == value]))
    fig = Figure(figsize=(10, 4.2), dpi=100)
    ax_pr, ax_froc = fig.subplots(1, 2)
    for i, (name, sub) in enumerate(groups):
        precision, recall, fps, sens, ap, n_gt = _curves(sub)
        if n_gt == 0:
            continue
        style = {"color": "black", "lw": 2.0} if i == 0 else {"lw": 1.2, "alpha": 0.85}
        ax_pr.step(np.r_[0.0, recall], np.r_[precision[:1] if len(precision) else [1.0], precision], where="pre",
                   label=f"{name} (AP {ap:.3f}, lesions {n_gt})", **style)  # fmt: skip
        ax_froc.step(np.r_[fps, max_fp], np.r_[sens, sens[-1]], where="post", label=name, **style)
    ax_pr.set(xlabel="recall (lesions)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision–recall")
    ax_froc.set(xlabel="false positives per case", ylabel="sensitivity", xlim=(0, max_fp), ylim=(0, 1.02), title="FROC")
    for ax in (ax_pr, ax_froc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower left" if ax is ax_pr else "lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
