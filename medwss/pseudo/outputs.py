"""Writing pseudo-labels: int16 NIfTI on the source grid, PNG previews, metrics CSV/JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.pseudo.config import PseudoConfig
from medwss.pseudo.metrics import PseudoLabelMeter
from medwss.pseudo.volumes import SliceCase, to_volume

Labels = list[list[np.ndarray]]


def evaluate(cases: Sequence[SliceCase], labels: Labels, cfg: PseudoConfig) -> dict[str, Any] | None:
    """Pooled and per-case metrics over the cases with masks (None if none has one)."""
    names, minor = cfg.classes(), cfg.minor_ids()
    pooled = PseudoLabelMeter(len(names), names, minor)
    per_case = {}
    for c, labs in zip(cases, labels, strict=True):
        if c.gts is None:
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
    cases: Sequence[SliceCase], labels: Labels, out: str | Path, cfg: PseudoConfig
) -> dict[str, Any] | None:
    """Write ``labels/<case>.nii.gz`` (int16, source affine), ``previews/<case>.png`` and metrics files."""
    from medwss.io.atomic import write_text
    from medwss.io.volumes import save_nifti
    from medwss.viz.overlay import volume_montage_png

    out = Path(out)
    for c, labs in zip(cases, labels, strict=True):
        vol = to_volume(labs, c.volume.shape[:3], cfg.downsample).astype(np.int16)
        save_nifti(c.volume.with_array(vol), out / "labels" / f"{c.case_id}.nii.gz")
        heat = np.where(vol > 0, vol.astype(np.float64), np.nan)
        heat[vol < 0] = 0.0
        raw = c.volume.array[..., 0] if c.volume.array.ndim == 4 else c.volume.array
        volume_montage_png(
            raw,
            heat,
            out / "previews" / f"{c.case_id}.png",
            n_slices=4,
            window=cfg.window,
            cmap="tab10",
            vmin=0,
            vmax=9,
            affine=c.volume.affine,
        )
    metrics = evaluate(cases, labels, cfg)
    if metrics is not None:
        write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_text(out / "metrics.csv", metrics_csv(metrics))
    return metrics
