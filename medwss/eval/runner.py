"""Evaluate a folder of probability maps against a manifest's masks (`medwss evaluate`).

Predictions are ``<case_id>.nii.gz`` (or ``.nii``) probability maps on the grid of the case's
ground-truth mask. A case whose prediction is missing, unreadable, on another grid or not a
probability map is reported in the failures and skipped; the others are evaluated.

Beside Dice, every case gets the surface metrics of its thresholded map in millimetres, with the
voxel spacing of the mask (`medwss.eval.overlap`): HD95, ASSD and NSD at ``nsd_tolerance`` mm.
The summary gives, over the cases with a lesion, the median HD95 and ASSD (a case whose
prediction is empty has an infinite distance; ``n_surface_inf`` counts them, and a median that is
infinite is reported as n/a) and the mean NSD, each with a bootstrap interval.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from medwss.config import StrictConfig
from medwss.data.manifest import Case, Manifest
from medwss.errors import MedwssError
from medwss.eval.overlap import nsd
from medwss.eval.pooled import ci
from medwss.eval.segmentation import evaluate_case, summarize, summary_table
from medwss.io.atomic import dumps_json, to_jsonable, write_text
from medwss.jobs import CASE_ERRORS, FailureLog, Job

CASE_COLUMNS = (
    "case_id", "site", "split", "label", "case_score", "dice", "hd95", "assd", "nsd", "empty_agree", "n_gt_lesions", "n_candidates",
    "n_tp", "n_fp", "gt_voxels", "pred_voxels", "gt_ml", "pred_ml",
)  # fmt: skip


class EvaluateConfig(StrictConfig):
    """How `medwss evaluate` scores probability maps (configs/evaluate.yaml)."""

    column: str = "mask"
    """Ground-truth column: mask, scribble or meta_<name>."""
    gt_labels: list[int] | None = None
    """Label values that are lesion (e.g. 4 for the CT phantom's tumour); None: any non-zero value."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Probability threshold of the mask scored by Dice (and of candidates in threshold mode)."""
    mode: Literal["dynamic", "threshold"] = "dynamic"
    """Lesion candidates: dynamic grows from each peak down to rel_threshold × peak; threshold takes the
    connected components of prob >= threshold."""
    rel_threshold: float = Field(0.4, gt=0, le=1)
    """Dynamic mode: a candidate is the voxels >= this × its peak."""
    floor: float = Field(0.01, ge=0, le=1)
    """Dynamic mode: stop when the highest remaining peak is below this."""
    min_voxels: int = Field(1, ge=1)
    """Smallest candidate, in voxels."""
    max_lesions: int | None = Field(10, ge=1)
    """Most candidates per case (the most confident); None: no limit."""
    connectivity: int = Field(1, ge=1, le=3)
    """1: voxels sharing a face are connected; 3: any touching voxels (PI-CAI's picai_eval uses 3)."""
    remove_adjacent: bool = True
    """Dynamic mode: drop a region touching an earlier candidate (its rim), as PI-CAI does."""
    iou: float = Field(0.1, ge=0, lt=1)
    """IoU a candidate must exceed to hit a lesion."""
    nsd_tolerance: float = Field(2.0, ge=0)
    """NSD (surface Dice) tolerance in mm."""
    hit: Literal["iou", "overlap"] = "iou"
    """Hit criterion: IoU above `iou`, or any shared voxel."""
    group_by: str | None = None
    """Manifest field for per-group tables: site, split, modality, meta_<name>."""
    split: str | None = None
    """Evaluate only the cases of this split; None: all cases."""
    fp_rates: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    """False positives per case at which the sensitivity is read."""
    n_boot: int = Field(1000, ge=0)
    """Bootstrap resamples over cases (0: no intervals)."""
    seed: int = 0
    """Bootstrap seed."""
    affine_tol: float = Field(1e-3, gt=0)
    """Largest difference of prediction and mask affines (mm) accepted as the same grid."""


class CaseFailure(MedwssError):
    """One case cannot be evaluated; the job records it and goes on."""


def _gt_path(case: Case, column: str, root: Path | None) -> Path:
    if column in ("mask", "scribble"):
        path = getattr(case, column)
    elif column.startswith("meta_") and case.meta.get(column[5:]):
        path = Path(case.meta[column[5:]])
        path = path if path.is_absolute() or root is None else root / path
    else:
        path = None
    if path is None:
        raise CaseFailure(f"no ground truth in column {column!r}")
    return Path(path)


def _prediction_path(folder: Path, case_id: str) -> Path:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{case_id}{suffix}").exists():
            return folder / f"{case_id}{suffix}"
    raise CaseFailure(f"no prediction {case_id}.nii.gz in {folder}")


def load_pair(
    case: Case, predictions: Path, cfg: EvaluateConfig, root: Path | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The case's probabilities and binary ground truth (both (i, j, k) on the mask's grid), and the spacing.

    Raises:
        CaseFailure (or another MedwssError): missing files, another grid, values outside [0, 1].
    """
    from medwss.io import load_volume

    gt_vol = load_volume(_gt_path(case, cfg.column, root))
    pred_path = _prediction_path(predictions, case.case_id)
    pred_vol = load_volume(pred_path, nan="keep")
    prob = np.asarray(pred_vol.array, dtype=np.float64)
    if prob.ndim == 4 and prob.shape[3] == 1:
        prob = prob[..., 0]
    if prob.shape != gt_vol.shape[:3]:
        raise CaseFailure(f"prediction shape {prob.shape} differs from the mask's {gt_vol.shape[:3]}", pred_path)
    if not np.allclose(pred_vol.affine, gt_vol.affine, atol=cfg.affine_tol):
        raise CaseFailure("prediction affine differs from the mask's (another grid); resample it first", pred_path)
    n_bad = int(prob.size - np.isfinite(prob).sum())
    if n_bad:  # an all-NaN map would otherwise score as an empty prediction
        raise CaseFailure(f"{n_bad} of {prob.size} values are NaN or infinite; not a probability map", pred_path)
    finite = prob
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise CaseFailure(f"values in [{finite.min():.3g}, {finite.max():.3g}], not probabilities", pred_path)
    gt_arr = np.asarray(gt_vol.array).reshape(prob.shape)
    gt = np.isin(gt_arr, cfg.gt_labels) if cfg.gt_labels else gt_arr != 0
    return np.clip(prob, 0.0, 1.0), gt, gt_vol.spacing


def evaluate_manifest(
    manifest: Manifest, predictions: str | Path, cfg: EvaluateConfig, progress: bool = True, job: Job | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Evaluate every case of `manifest` (of `cfg.split` when set) that has a prediction.

    The cases run through `job` (`medwss.jobs.Job`, stage ``evaluate``; default one without a log
    file): a case failing with one of `medwss.jobs.CASE_ERRORS` is reported and the others go on.

    Returns:
        (rows, failures): per-case dicts of `evaluate_case` with ``case_id``, ``patient_id``,
        ``site``, ``split``, ``modality`` and the ``meta_*`` fields added; and one
        ``{"case_id", "problem", "image", "stage", "error_class", "message"}`` per case that could not
        be evaluated.
    """
    from tqdm import tqdm

    folder = Path(predictions)
    root = manifest.path.parent if manifest.path is not None else None
    cases = manifest.select(cfg.split) if cfg.split is not None else list(manifest.cases)  # none in split: error
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    job = job if job is not None else Job(None)
    for case in tqdm(cases, desc="evaluate", unit="case", disable=not progress):
        try:
            prob, gt, spacing = load_pair(case, folder, cfg, root)
            row = evaluate_case(
                prob, gt, spacing=spacing, threshold=cfg.threshold, mode=cfg.mode,
                iou=cfg.iou, hit=cfg.hit, min_voxels=cfg.min_voxels, max_lesions=cfg.max_lesions,
                rel_threshold=cfg.rel_threshold, floor=cfg.floor, connectivity=cfg.connectivity,
                remove_adjacent=cfg.remove_adjacent,
            )  # fmt: skip
            if prob.ndim in (2, 3):
                row["nsd"] = nsd(prob >= cfg.threshold, gt, cfg.nsd_tolerance, spacing=spacing[: prob.ndim])
        except CASE_ERRORS as exc:  # one bad case is reported and skipped, never the whole job
            problem = str(exc) if isinstance(exc, MedwssError) else f"{type(exc).__name__}: {exc}"
            job.fail(case.case_id, exc, "evaluate", getattr(exc, "path", None) or "")
            failures.append({"problem": problem, **job.failures[case.case_id]})
            continue
        job.done(case.case_id)
        info = {"case_id": case.case_id, "patient_id": case.patient_id, "site": case.site, "split": case.split or ""}
        rows.append({**info, "modality": case.modality, **{f"meta_{k}": v for k, v in case.meta.items()}, **row})
    return rows, failures


SURFACE_METRICS = (("hd95", "median"), ("assd", "median"), ("nsd", "mean"))
"""Surface metrics of the summary and how each is pooled over the cases with a lesion."""


def surface_summary(
    rows: list[dict[str, Any]], seed: int = 0, n_boot: int = 1000, alpha: float = 0.05
) -> dict[str, Any]:
    """Median HD95 and ASSD and mean NSD over the cases with a lesion, with stratified bootstrap intervals.

    Returns:
        ``hd95``, ``assd``, ``nsd`` with ``_lo`` / ``_hi`` (NaN when no lesion case has the metric,
        or when the estimate is infinite), and ``n_surface_inf``: lesion cases at an infinite
        distance (empty prediction).
    """
    labels = np.asarray([int(r["label"]) for r in rows], dtype=np.int64)
    out: dict[str, Any] = {}
    for name, how in SURFACE_METRICS:
        if not rows or any(name not in r for r in rows):
            continue
        values = np.asarray([float(r[name]) for r in rows], dtype=np.float64)
        pool = np.median if how == "median" else np.mean

        def stat(_: Any, idx: np.ndarray, v: np.ndarray = values, f: Any = pool) -> float:
            i = np.asarray(idx).astype(np.int64)
            i = i[labels[i] == 1]
            return float(f(v[i])) if len(i) else float("nan")

        est, lo, hi = ci(stat, labels, n_boot, alpha, seed)
        out |= {name: est, f"{name}_lo": lo, f"{name}_hi": hi}
        if name == "hd95":
            out["n_surface_inf"] = int(np.sum(~np.isfinite(values[labels == 1])))
    return out


def _with_surface(summary: list[dict[str, Any]], rows: list[dict[str, Any]], cfg: EvaluateConfig) -> None:
    for srow in summary:
        group = str(srow["group"])
        sub = rows if group == "all" or cfg.group_by is None else [r for r in rows if str(r[cfg.group_by]) == group]
        srow |= surface_summary(sub, cfg.seed, cfg.n_boot)


def jsonable(value: Any) -> Any:
    """`value` with NaN and infinite floats replaced by None (strict JSON), recursively (`to_jsonable`)."""
    return to_jsonable(value)


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return buf.getvalue()


def _markdown(summary: list[dict[str, Any]], failures: list[dict[str, str]], cfg: EvaluateConfig, n: int) -> str:
    rates = [f"sens@{r:g}fp" for r in cfg.fp_rates]
    hit = f"IoU > {cfg.iou:g}" if cfg.hit == "iou" else "any overlap"
    lines = [
        "# Evaluation\n",
        f"{summary[-1]['n']} of {n} case(s) evaluated; {len(failures)} failed. "
        f"Candidates: {cfg.mode} extraction; a hit needs {hit}; Dice at threshold {cfg.threshold:g}. "
        f"Intervals: {100 * 0.95:.0f}% bootstrap over cases ({cfg.n_boot} resamples, seed {cfg.seed}). "
        f"Surface metrics of the thresholded map over the cases with a lesion, in mm: hd95 and assd are "
        f"medians ({summary[-1].get('n_surface_inf', 0)} lesion case(s) with an empty prediction are at an "
        f"infinite distance), nsd is the mean surface Dice at {cfg.nsd_tolerance:g} mm.\n",
        summary_table(summary, ["dice", "dice_all", "hd95", "assd", "nsd", "auroc", "ap", *rates, "ranking"]),
    ]
    if failures:
        lines += ["\n## Failures\n", *(f"- `{f['case_id']}`: {f['problem']}" for f in failures), ""]
    return "\n".join(lines)


def write_outputs(
    out: str | Path, rows: list[dict[str, Any]], failures: list[dict[str, str]], cfg: EvaluateConfig, n_cases: int
) -> dict[str, Any]:
    """Write cases.csv, detections.csv, failures.csv, summary.json, summary.md and pr_froc.png.

    Returns:
        The summary record (also in summary.json); ``summary`` is empty when no case was evaluated.
    """
    from medwss.viz.curves import pr_froc_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, cfg.group_by, cfg.seed, cfg.n_boot, fp_rates=cfg.fp_rates) if rows else []
    _with_surface(summary, rows, cfg)
    record = {"n_cases": n_cases, "n_evaluated": len(rows), "summary": summary, "failures": failures}
    write_text(out / "summary.json", dumps_json({**record, "config": cfg.model_dump()}) + "\n")
    write_text(out / "cases.csv", _csv(rows, [c for c in CASE_COLUMNS if not rows or c in rows[0]]))
    dets = [{"case_id": r["case_id"], "confidence": c, "is_tp": int(t)} for r in rows for c, t in r["detections"]]
    write_text(out / "detections.csv", _csv(dets, ["case_id", "confidence", "is_tp"]))
    log = FailureLog(out / "failures.csv", fresh=True)  # the one failure log (medwss.jobs.FIELDS)
    for f in failures:
        log.record(f["case_id"], f.get("image", ""), f.get("message", f["problem"]), f.get("stage", "evaluate"),
                   f.get("error_class"))  # fmt: skip
    if summary:
        write_text(out / "summary.md", _markdown(summary, failures, cfg, n_cases))
        pr_froc_png(rows, out / "pr_froc.png", group_by=cfg.group_by, max_fp=max(cfg.fp_rates) * 2)
    return record
