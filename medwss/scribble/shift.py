"""Domain shift and ensembles: train on some sites, test in-domain and on unseen sites, single vs ensemble.

`run_shift` trains, for every named setting (e.g. weak + size, weak partial CE, full supervision),
an ensemble of K members (seeds ``seed + i``) on the ``train`` cases of the training sites (the
``val`` cases of those sites select each member's epoch), then predicts the ``test`` cases of the
training sites (in-domain) and every case of the other sites (out-of-domain) with each member
alone and with the ensemble (averaged probabilities), and scores them with
`medwss.eval.segmentation`. The single-model figure is the mean (± sd) over the K members.

The splits come from `medwss.data.splits.split_cases` with ``sites=train_sites``, stratified by
site and label (`SHIFT_FRACTIONS`): the training sites' patients are split train/val/test, every
patient of another site is test.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.manifest import Case, Manifest
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.atomic import write_text
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.workflow import predict_cases, select, train_ensemble

METRICS = ("dice", "dice_all", "auroc", "ap", "ranking")
SHIFT_FRACTIONS = (0.5, 0.15, 0.35)
"""Train, val and test fractions within each (site, label) stratum of the training sites."""


def score_predictions(cases: Sequence[Case], pred_dir: Path, threshold: float = 0.5) -> list[dict[str, Any]]:
    """`evaluate_case` rows (with case_id and site) for the cases that have a prediction and a mask."""
    from medwss.eval.segmentation import evaluate_case

    rows = []
    for c in cases:
        p = pred_dir / f"{c.case_id}.nii.gz"
        if c.mask is None or not p.exists():
            continue
        gt = load_volume(c.mask)
        row = evaluate_case(load_volume(p).array, gt.array, spacing=gt.spacing, threshold=threshold)
        rows.append({"case_id": c.case_id, "site": c.site, **row})
    return rows


def _summaries(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    from medwss.eval.segmentation import summarize

    return summarize(rows, group_by="domain", seed=seed)


def _mean_sd(summaries: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per group: metric means over members, with ``<metric>_sd``."""
    out = []
    for group_rows in zip(*summaries, strict=True):
        row: dict[str, Any] = {
            "group": group_rows[0]["group"],
            "n": group_rows[0]["n"],
            "n_pos": group_rows[0]["n_pos"],
        }
        for m in METRICS:
            vals = np.array([r[m] for r in group_rows], dtype=np.float64)
            row[m] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            row[f"{m}_sd"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
        out.append(row)
    return out


def run_shift(
    manifest: Manifest,
    settings: Mapping[str, ScribbleConfig],
    out: str | Path,
    train_sites: Sequence[str],
    k: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate every setting in and out of domain; write per-case rows and return the summary.

    Args:
        manifest: Multi-site manifest with ``split`` (train/val/test) and masks.
        settings: Setting name → config.
        out: Output folder (``<setting>/member_<i>/``, ``<setting>/ensemble/predictions``, ``cases.csv``).
        train_sites: Sites trained on; the others are out-of-domain.
        k: Ensemble size.
        progress: Show progress bars.

    Returns:
        ``{"train_sites", "test_sites", "k", "counts", "results": [{setting, model, group, metrics...}]}``.
    """
    out = Path(out)
    sites = sorted({c.site for c in manifest.cases})
    unknown = [s for s in train_sites if s not in sites]
    if unknown:
        raise InvalidDataError(f"training site(s) {', '.join(unknown)} not in the manifest (sites: {', '.join(sites)})")
    train, val = select(manifest.cases, ["train"], train_sites), select(manifest.cases, ["val"], train_sites)
    in_test = select(manifest.cases, ["test"], train_sites)
    out_test = [c for c in manifest.cases if c.site not in train_sites]
    domain = {c.case_id: "in_domain" for c in in_test} | {c.case_id: "out_of_domain" for c in out_test}
    tests = in_test + out_test
    if not train or not tests:
        raise InvalidDataError(f"need train cases and test cases; got {len(train)} and {len(tests)}")
    results: list[dict[str, Any]] = []
    case_rows: list[dict[str, Any]] = []
    for name, cfg in settings.items():
        paths = train_ensemble(manifest, cfg, out / name, k, train, val, progress)
        member_summaries = []
        for i, path in enumerate(paths):
            predict_cases(manifest, tests, [path], out / name / f"member_{i}", progress=progress)
            rows = score_predictions(tests, out / name / f"member_{i}" / "predictions")
            for r in rows:
                r["domain"] = domain[r["case_id"]]
            member_summaries.append(_summaries(rows, cfg.seed))
            case_rows += [{"setting": name, "model": f"member_{i}", **r} for r in rows]
        predict_cases(manifest, tests, paths, out / name / "ensemble", progress=progress)
        rows = score_predictions(tests, out / name / "ensemble" / "predictions")
        for r in rows:
            r["domain"] = domain[r["case_id"]]
        case_rows += [{"setting": name, "model": "ensemble", **r} for r in rows]
        results += [{"setting": name, "model": f"single (mean of {k})", **r} for r in _mean_sd(member_summaries)]
        results += [{"setting": name, "model": f"ensemble of {k}", **r} for r in _summaries(rows, cfg.seed)]
    _write_cases(out / "cases.csv", case_rows)
    return {
        "train_sites": list(train_sites),
        "test_sites": [s for s in sites if s not in train_sites],
        "k": k,
        "counts": {
            "train": len(train),
            "val": len(val),
            "in_domain_test": len(in_test),
            "out_of_domain_test": len(out_test),
        },
        "settings": {name: cfg.model_dump(mode="json") for name, cfg in settings.items()},
        "results": results,
    }


def _write_cases(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = [
        "setting",
        "model",
        "case_id",
        "site",
        "domain",
        "label",
        "case_score",
        "dice",
        "hd95",
        "assd",
        "n_tp",
        "n_fp",
        "gt_voxels",
        "pred_voxels",
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
