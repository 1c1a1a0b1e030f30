"""PI-CAI: bi-parametric prostate MRI, case label csPCa (ISUP >= 2) yes (1) or no (0)."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

from medwss.data.builders._common import Row, files, find_nifti, first_existing, register, skip, subdirs

CHANNELS = ("t2w", "adc", "hbv")
FILE_RE = re.compile(r"^(?P<pid>\d+)_(?P<sid>\d+)_(?P<seq>t2w|adc|hbv|cor|sag)(?:\.mha|\.nii\.gz|\.nii)$")
FOLD_RE = re.compile(r"^picai_public_images_fold(\d+)$")
# Lesion delineations, most trusted first: human expert (resampled to T2W space), then AI-derived.
MASK_SOURCES = (
    ("human_expert", ("human_expert", "resampled")),
    ("human_expert", ("human_expert",)),
    ("AI", ("AI", "Bosma22a")),
)


def _image_folders(root: Path) -> list[tuple[str, Path]]:
    """``(fold, folder)`` pairs: ``picai_public_images_fold{k}/`` or, merged, ``images/`` (no fold)."""
    folds = [(m.group(1), d) for d in subdirs(root) if (m := FOLD_RE.match(d.name))]
    merged = [("", d) for d in (root / "images", root / "input" / "images") if d.is_dir()]
    return sorted(folds, key=lambda f: int(f[0])) + merged


def _marksheet(labels: Path) -> dict[str, dict[str, str]]:
    """Marksheet rows keyed by ``{patient_id}_{study_id}``."""
    path = first_existing([labels / "clinical_information" / "marksheet.csv", labels / "marksheet.csv"])
    if path is None:
        skip(labels, "no clinical_information/marksheet.csv: labels and sites left empty")
        return {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(fh)]
    return {f"{r.get('patient_id', '')}_{r.get('study_id', '')}": r for r in rows}


def _mask(labels: Path, case_id: str) -> tuple[Path | None, str]:
    base = labels / "csPCa_lesion_delineations"
    for source, parts in MASK_SOURCES:
        found = find_nifti(base.joinpath(*parts), case_id)
        if found is not None:
            return found, source
    return None, ""


def _studies(folder: Path) -> dict[str, dict[str, Path]]:
    """``{patient_id}_{study_id}`` → sequence → file, for one patient folder."""
    studies: dict[str, dict[str, Path]] = defaultdict(dict)
    for f in files(folder):
        m = FILE_RE.match(f.name)
        if m and m.group("pid") == folder.name:
            studies[f"{m.group('pid')}_{m.group('sid')}"][m.group("seq")] = f
    return studies


def _row(case_id: str, seqs: dict[str, Path], fold: str, sheet: dict, labels: Path) -> Row:
    info = sheet.get(case_id)
    if sheet and info is None:
        skip(case_id, "not in the marksheet (kept, empty label)")
    verdict = (info or {}).get("case_csPCa", "").upper()
    mask, source = _mask(labels, case_id)
    return {
        "case_id": case_id,
        "patient_id": case_id.split("_")[0],
        "site": (info or {}).get("center") or "picai",
        "modality": "MR",
        **{f"image_{c}": seqs[c] for c in CHANNELS},
        "label": {"YES": 1, "NO": 0}.get(verdict),
        "mask": mask,
        "split": None,
        "meta_fold": fold,
        "meta_mask_source": source,
    }


@register(
    "picai",
    "picai_public_images_fold{0..4}/{patient_id}/{patient_id}_{study_id}_{t2w,adc,hbv}.mha "
    "+ picai_labels/clinical_information/marksheet.csv [+ picai_labels/csPCa_lesion_delineations/]",
)
def build(root: Path) -> list[Row]:
    """Rows for PI-CAI: one per study, channels t2w/adc/hbv; folds in ``meta_fold``, split left empty."""
    labels = root / "picai_labels"
    sheet = _marksheet(labels)
    rows: dict[str, Row] = {}
    for fold, folder in _image_folders(root):
        for patient in subdirs(folder):
            for case_id, seqs in sorted(_studies(patient).items()):
                missing = [c for c in CHANNELS if c not in seqs]
                if missing:
                    skip(patient, f"{case_id}: missing {', '.join(missing)}; case skipped")
                elif case_id in rows:
                    skip(patient, f"{case_id}: already found in another folder; duplicate skipped")
                else:
                    rows[case_id] = _row(case_id, seqs, fold, sheet, labels)
    return [rows[k] for k in sorted(rows)]
