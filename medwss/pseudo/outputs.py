"""Writing pseudo-labels: int16 NIfTI (-1 = unlabelled) on the source grid, PNG previews, metrics CSV/JSON.

A 2D frame's pseudo-labels are a uint8 PNG on the frame's grid instead (255 = unlabelled,
`medwss.pseudo.frames.save_frame_labels`).

Per-slice maps go back onto the stored grid through each case's `SliceGeometry` and are written
by `medwss.data.labels.save_label_map` with the source affine; `read_labels` reads them back
(`load_label_map`) and cuts them into the same slices.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.labels import IGNORE
from medwss.pseudo.config import PseudoConfig
from medwss.pseudo.metrics import PseudoLabelMeter
from medwss.pseudo.volumes import SliceCase

Labels = list[list[np.ndarray] | None]
"""Per case, its per-slice maps; None for a case that failed (`medwss.pseudo.workflow.per_case` in a `medwss.jobs.Job`)."""


def evaluate(cases: Sequence[SliceCase], labels: Labels, cfg: PseudoConfig) -> dict[str, Any] | None:
    """Pooled and per-case metrics over the cases with masks (None if none has one)."""
    names, minor = cfg.classes(), cfg.minor_ids()
    pooled = PseudoLabelMeter(len(names), names, minor)
    per_case = {}
    for c, labs in zip(cases, labels, strict=True):
        if c.gts is None or labs is None:
            continue
        meter = PseudoLabelMeter(len(names), names, minor)
        for p, g in zip(labs, c.gts, strict=True):
            meter.update(p, g)
            pooled.update(p, g)
        per_case[c.case_id] = meter.report()
    return {"pooled": pooled.report(), "cases": per_case} if per_case else None


def metrics_csv(metrics: dict[str, Any]) -> str:
    """One row per case (and ``pooled``): mean Dice, mIoU, coverage, minor recall, per-class Dice."""
    rows = {"pooled": metrics["pooled"], **metrics["cases"]}
    classes = list(next(iter(rows.values()))["per_class"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", "mean_dice", "miou", "coverage", "minor_recall"] + [f"dice_{c}" for c in classes[1:]])
    for cid, r in rows.items():
        vals = [r["mean_dice"], r["miou"], r["coverage"], r["minor_recall"]] + [
            r["per_class"][c]["dice"] for c in classes[1:]
        ]
        w.writerow([cid] + [f"{v:.4f}" for v in vals])
    return buf.getvalue()


def write_outputs(
    cases: Sequence[SliceCase],
    labels: Labels,
    out: str | Path,
    cfg: PseudoConfig,
    failed: list[str] | None = None,
) -> dict[str, Any] | None:
    """Write ``labels/<case>.nii.gz`` (int16, -1 = unlabelled, source grid and affine; a frame's:
    ``labels/<case>.png``, uint8, 255 = unlabelled), ``previews/<case>.png`` and metrics files.

    Cases whose labels are None (they failed in the method) are left out. Inside an active
    `medwss.jobs.Job` (stage ``write``), or with `failed` (``"case_id: reason"`` appended), a case
    whose files cannot be written is recorded and left out of the metrics, and the other cases are
    written; otherwise the error propagates.
    """
    from medwss.data.labels import save_label_map
    from medwss.io.atomic import write_json, write_text
    from medwss.pseudo.frames import frame_preview_png, save_frame_labels
    from medwss.viz.overlay import volume_montage_png

    out = Path(out)

    def one(c: SliceCase, labs: list[np.ndarray]) -> None:
        if c.frame is not None:  # a 2D frame: uint8 PNG on its own grid, 255 = unlabelled
            save_frame_labels(c.to_source(labs)[:, :, 0], out / "labels" / f"{c.case_id}.png")
            frame_preview_png(c, labs[0], out / "previews" / f"{c.case_id}.png")
            return
        save_label_map(c.to_source(labs), out / "labels" / f"{c.case_id}.nii.gz", c.affine)
        canon = c.geometry.paste_canonical(np.stack(labs), label=True, fill=IGNORE)  # previews: axial, RAS
        heat = np.where(canon > 0, canon.astype(np.float64), np.nan)
        heat[canon < 0] = 0.0
        volume_montage_png(
            c.volume.array,
            heat,
            out / "previews" / f"{c.case_id}.png",
            n_slices=4,
            window=cfg.window_range(),
            cmap="tab10",
            vmin=0,
            vmax=9,
            affine=c.volume.affine,
        )

    from medwss.jobs import Job, current_job

    job = current_job() if failed is None else Job(None)
    written: list[list[np.ndarray] | None] = []
    for c, labs in zip(cases, labels, strict=True):
        if labs is None:
            written.append(None)
            continue
        if job is None:
            one(c, labs)
        elif job.call(c.case_id, _written, one, c, labs, stage="write") is None:
            if failed is not None:
                failed.append(f"{c.case_id}: {job.failures[c.case_id]['message']}")
            written.append(None)
            continue
        written.append(labs)
    metrics = evaluate(cases, written, cfg)
    if metrics is not None:
        write_json(out / "metrics.json", metrics)
        write_text(out / "metrics.csv", metrics_csv(metrics))
    return metrics


def _written(one: Any, c: SliceCase, labs: list[np.ndarray]) -> bool:
    one(c, labs)
    return True


def read_labels(cases: Sequence[SliceCase], folder: str | Path) -> tuple[list[SliceCase], Labels, list[str]]:
    """Pseudo-label files ``<folder>/<case>.nii.gz`` (a frame's: ``<case>.png``) read back and cut into each case's slices.

    Returns:
        The cases that have a file and a mask, their per-slice labels, and ``"case_id: reason"``
        for the others.
    """
    from medwss.data.labels import load_label_map
    from medwss.pseudo.frames import load_frame_labels

    kept: list[SliceCase] = []
    labels: Labels = []
    failed: list[str] = []
    for c in cases:
        path = Path(folder) / f"{c.case_id}{'.png' if c.frame is not None else '.nii.gz'}"
        if not path.exists() or c.gts is None:
            failed.append(f"{c.case_id}: no pseudo-label file or no mask")
            continue
        array = load_frame_labels(path)[:, :, None] if c.frame is not None else load_label_map(path).array
        if array.shape[:3] != c.geometry.shape:
            failed.append(
                f"{c.case_id}: pseudo-labels of shape {array.shape[:3]} do not fit the image {c.geometry.shape}"
            )
            continue
        labels.append(c.from_source(array))
        kept.append(c)
    return kept, labels, failed
