"""Prostate158: bi-parametric prostate MRI (T2, ADC, DWI) with zone and tumour masks."""

from __future__ import annotations

import csv
from pathlib import Path

from medwss.data.builders._common import Row, find_nifti, register, skip, subdirs

CHANNELS = ("t2", "adc", "dwi")
FOLDER_SPLITS = {"train": "train", "valid": "val", "val": "val", "test": "test"}
CSV_SPLITS = (("train.csv", "train"), ("valid.csv", "val"), ("test.csv", "test"))


def _norm(case_id: str) -> str:
    """``"020"`` and ``"20"`` name the same case."""
    return str(int(case_id)) if case_id.isdigit() else case_id


def _bases(root: Path) -> list[Path]:
    """Folders that may hold ``train/``, ``test/`` and the split CSVs."""
    named = [root / "prostate158_train", root / "prostate158_test", root / "prostate158"]
    return [root] + [b for b in named if b.is_dir()]


def _csv_splits(bases: list[Path]) -> dict[str, str]:
    """Normalised case id → split, from ``train.csv``, ``valid.csv`` and ``test.csv`` (column ``ID``)."""
    splits: dict[str, str] = {}
    for base in bases:
        for name, split in CSV_SPLITS:
            path = base / name
            if not path.is_file():
                continue
            with open(path, newline="", encoding="utf-8-sig") as fh:
                for r in csv.DictReader(fh):
                    key = _norm((r.get("ID") or r.get("id") or "").strip())
                    if key and splits.setdefault(key, split) != split:
                        skip(path, f"case {key} listed in two splits; keeping '{splits[key]}'")
    return splits


def _row(folder: Path, split: str) -> Row | None:
    images = {c: find_nifti(folder, c) for c in CHANNELS}
    missing = [c for c, p in images.items() if p is None]
    if missing:
        skip(folder, f"missing {', '.join(missing)}; case skipped")
        return None
    tumour = find_nifti(folder, "adc_tumor_reader1")
    return {
        "case_id": folder.name,
        "patient_id": folder.name,
        "site": "prostate158",
        "modality": "MR",
        **{f"image_{c}": p for c, p in images.items()},
        # Assumption: Prostate158 ships a tumour mask only for cases with a visible tumour.
        "label": int(tumour is not None),
        "mask": tumour,
        "split": split,
        "meta_zones": find_nifti(folder, "t2_anatomy_reader1"),
    }


@register(
    "prostate158",
    "prostate158_train/{train.csv,valid.csv,train/{id}/{t2,adc,dwi}.nii.gz}, "
    "prostate158_test/{test.csv,test/{id}/...} (CSVs optional: split then from the folder name)",
)
def build(root: Path) -> list[Row]:
    """Rows for Prostate158: one per exam, channels t2/adc/dwi, split from the CSVs or folder names."""
    bases = _bases(root)
    by_csv = _csv_splits(bases)
    rows: dict[str, Row] = {}
    seen: set[str] = set()
    for base in bases:
        for name, folder_split in FOLDER_SPLITS.items():
            for folder in subdirs(base / name):
                seen.add(_norm(folder.name))
                split = by_csv.get(_norm(folder.name), folder_split)
                if folder.name in rows:
                    skip(folder, "case already found in another folder; duplicate skipped")
                elif (row := _row(folder, split)) is not None:
                    rows[folder.name] = row
    for key in sorted(set(by_csv) - seen):
        skip(root, f"case {key} is listed in a split CSV but has no folder")
    return [rows[k] for k in sorted(rows)]
