"""Weak labels for a whole manifest (`medwss scribble make`) and manifest rows to rewrite a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medwss.data.labels import IGNORE, load_label_map, save_label_map
from medwss.data.manifest import Manifest
from medwss.data.orientation import orientation_of
from medwss.errors import MedwssError


def manifest_rows(manifest: Manifest) -> list[dict[str, object]]:
    """The manifest's rows as dicts for `write_manifest`, with every path (``meta_*`` files included) absolute."""
    root = manifest.path.parent if manifest.path is not None else None
    rows: list[dict[str, object]] = []
    for c in manifest.cases:
        row: dict[str, object] = {
            "case_id": c.case_id,
            "patient_id": c.patient_id,
            "site": c.site,
            "modality": c.modality,
        }
        row |= {k if k == "image" else f"image_{k}": p for k, p in c.images.items()}
        row |= {"label": c.label, "mask": c.mask, "scribble": c.scribble, "features": c.features, "split": c.split}
        for k, v in c.meta.items():
            p = Path(v)
            if v and root is not None and not p.is_absolute() and (root / p).is_file():
                row[f"meta_{k}"] = root / p
            else:
                row[f"meta_{k}"] = v
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def write_weak_labels(
    manifest: Manifest,
    out: str | Path,
    kind: str,
    seed: int,
    background: bool = True,
    options: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate weak labels from every case's mask; write them on the mask grid and a manifest pointing at them.

    The marks are drawn on the mask's canonical (RAS+) grid — slices are axial, background strokes
    in-plane, whatever the stored axis order — and written back on the stored grid with the stored
    affine (`medwss.data.labels.save_label_map`): ``out/scribbles/<case_id>_scribble.nii.gz``, int16,
    -1 unlabelled, else the class. Also writes ``out/manifest.csv`` (the input rows with the
    ``scribble`` column set). Cases without a mask or whose mask fails to load keep no scribble and
    are reported.
    """
    from medwss.data.manifest import write_manifest
    from medwss.data.weak import make_weak_label, weak_label_stats
    from medwss.scribble.dataset import case_seed

    out = Path(out)
    rows = manifest_rows(manifest)
    failed, stats = [], []
    for row, case in tqdm(
        list(zip(rows, manifest.cases, strict=True)), desc="weak labels", disable=not progress, leave=False
    ):
        if case.mask is None:
            failed.append({"case_id": case.case_id, "error": "no mask"})
            continue
        try:
            mask = load_label_map(case.mask)
            arr = mask.array if mask.array.ndim == 3 else mask.array[..., 0]
            o = orientation_of(mask)
            canon = o.to_canonical(arr)
            weak_c = make_weak_label(canon, kind, case_seed(case.case_id, seed), background, **(options or {}))
            weak_c[canon == IGNORE] = IGNORE
            weak = o.to_source(weak_c)
            target = out / "scribbles" / f"{case.case_id}_scribble.nii.gz"
            save_label_map(weak, target, mask.affine)
            row["scribble"] = target
            stats.append(weak_label_stats(weak, arr))
        except (MedwssError, OSError, ValueError) as exc:
            failed.append({"case_id": case.case_id, "error": str(exc)})
    path = write_manifest(rows, out / "manifest.csv")
    mean = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {}
    return {"manifest": str(path), "done": len(stats), "failed": failed, "mean_stats": mean}
