"""The domain-shift report: Markdown table, JSON record and a self-contained HTML page with overlays."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.manifest import Manifest
from medwss.io import load_volume
from medwss.io.atomic import write_json, write_text

_SHOWN = (("dice", "Dice (lesion cases)"), ("auroc", "AUROC"), ("ap", "AP"), ("ranking", "Ranking"))


def _cell(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    if f"{key}_sd" in row and math.isfinite(float(row[f"{key}_sd"])):
        return f"{v:.3f} ± {row[f'{key}_sd']:.3f}"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is not None and hi is not None and math.isfinite(float(lo)) and math.isfinite(float(hi)):
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{v:.3f}"


def results_markdown(results: Sequence[dict[str, Any]]) -> str:
    """One line per (domain, setting, model): single models as mean ± sd over members, ensembles with 95% CIs."""
    head = ["domain", "setting", "model", "cases (lesion)", *(t for _, t in _SHOWN)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in ("in_domain", "out_of_domain", "all"):
        for r in (r for r in results if r["group"] == group):
            cells = [group, r["setting"], r["model"], f"{r['n']} ({r['n_pos']})", *(_cell(r, k) for k, _ in _SHOWN)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def targets(results: Sequence[dict[str, Any]], weak: str, partial: str, full: str) -> dict[str, Any]:
    """The issue's three checks from the summary rows (single models unless said otherwise).

    Args:
        weak: Name of the weak + size setting; partial: of the partial-CE-only setting; full: of full supervision.
    """

    def get(setting: str, model_prefix: str, group: str) -> float:
        for r in results:
            if r["setting"] == setting and r["model"].startswith(model_prefix) and r["group"] == group:
                return float(r["dice"])
        return float("nan")

    w_in, f_in = get(weak, "single", "in_domain"), get(full, "single", "in_domain")
    p_in = get(partial, "single", "in_domain")
    s_out, e_out = get(weak, "single", "out_of_domain"), get(weak, "ensemble", "out_of_domain")
    ratio = w_in / f_in if f_in > 0 else float("nan")
    return {
        "weak_over_full_in_domain": ratio,
        "weak_reaches_90pct_of_full": bool(ratio >= 0.9),
        "size_above_partial_ce": bool(w_in > p_in),
        "ensemble_above_single_out_of_domain": bool(e_out > s_out),
        "dice": {
            "weak_in": w_in,
            "full_in": f_in,
            "partial_in": p_in,
            "weak_single_out": s_out,
            "weak_ensemble_out": e_out,
        },
    }


def _overlays(
    manifest: Manifest, out: Path, cases_csv: Path, sequences: Sequence[str] = (), n: int = 2
) -> list[tuple[str, Path]]:
    """Montages of every setting's ensemble prediction on the first `n` out-of-domain lesion cases.

    The reference channel (`medwss.scribble.mri_input.reference_channel`), the mask and the
    prediction are shown on the canonical grid (`medwss.data.subject.load_subject`): axial slices
    whatever the stored axis order.
    """
    from medwss.data.subject import load_subject
    from medwss.scribble.mri_input import case_channels, reference_channel
    from medwss.viz.overlay import volume_montage_png

    if not cases_csv.exists():
        return []
    with cases_csv.open() as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "ensemble" and r["label"] == "1"]
    by_id = {c.case_id: c for c in manifest.cases}
    case_ids = list(dict.fromkeys(r["case_id"] for r in rows if r["domain"] == "out_of_domain"))[:n]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    figs = []
    for case_id in case_ids:
        case = by_id.get(case_id)
        if case is None:
            continue
        images = case_channels(case)
        ref = images[reference_channel(images, list(sequences) or list(case.images))]
        key = next(k for k, p in case.images.items() if p == ref)
        subject = load_subject(case, channels=[key], labels=("mask",))
        image, gt, o = subject.image, subject.label("mask"), subject.orientation
        slices = [int(np.argmax((gt > 0).sum((0, 1))))] if gt is not None and (gt > 0).any() else None
        for setting in settings:
            pred = out / setting / "ensemble" / "predictions" / f"{case_id}.nii.gz"
            if not pred.exists():
                continue
            png = out / "figures" / f"{case_id}_{setting}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            prob = load_volume(pred).array
            volume_montage_png(
                image.array.astype(np.float32),
                o.to_canonical(prob) if o is not None else prob,
                png,
                min_value=0.1,
                slices=slices,
                columns=1,
                affine=image.affine,
            )
            figs.append((f"{case_id} ({case.site}, out of domain): {setting} ensemble", png))
    return figs


def _sequences(record: dict[str, Any]) -> list[str]:
    """The input channels of the record's first setting (they choose the reference channel shown)."""
    settings: dict[str, dict[str, Any]] = record.get("settings") or {}
    first = next(iter(settings.values()), {})
    return list(first.get("sequences", ()))


def write_shift_report(manifest: Manifest, record: dict[str, Any], out: str | Path, title: str | None = None) -> Path:
    """Write ``report.md``, ``report.json`` and ``report.html`` for a `run_shift` record; return the HTML path."""
    from medwss.viz.report import write_report

    out = Path(out)
    results = record["results"]
    md = (
        f"Trained on {', '.join(record['train_sites'])}; out-of-domain: {', '.join(record['test_sites'])}; "
        f"ensembles of {record['k']}.\n\n" + results_markdown(results)
    )
    write_text(out / "report.md", md)
    write_json(out / "report.json", record)
    rows = [
        {
            "setting": r["setting"],
            "model": r["model"],
            "domain": r["group"],
            "cases": r["n"],
            **{k: r.get(k) for k, _ in _SHOWN},
            "dice_sd": r.get("dice_sd"),
        }
        | {f"{k}_lo": r.get(f"{k}_lo") for k, _ in _SHOWN}
        | {f"{k}_hi": r.get(f"{k}_hi") for k, _ in _SHOWN}
        for r in results
    ]
    roc: dict[str, tuple[list[int], list[float]]] = {}
    cases_csv = out / "cases.csv"
    if cases_csv.exists():
        with cases_csv.open() as f:
            for r in csv.DictReader(f):
                if r["model"] == "ensemble" and r["domain"] == "out_of_domain":
                    ys, ss = roc.setdefault(f"{r['setting']} ensemble (out of domain)", ([], []))
                    ys.append(int(r["label"]))
                    ss.append(float(r["case_score"]))
    notes = (
        f"Training sites: {', '.join(record['train_sites'])}. Out-of-domain sites: {', '.join(record['test_sites'])}. "
        f"Single models: mean over {record['k']} seeds (intervals not shown); ensembles: averaged probabilities, "
        "95% bootstrap intervals over cases. Dice is over cases with a lesion; AUROC uses the maximum probability "
        "as the case score; AP is lesion-level (PI-CAI style)."
    )
    return write_report(
        out / "report.html",
        title or "Scribble-supervised lesion segmentation: domain shift",
        rows,
        roc,
        _overlays(manifest, out, cases_csv, _sequences(record)),
        notes,
    )
