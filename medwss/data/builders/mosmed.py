"""MosMedData COVID19_1110: chest CT graded CT-0 (normal) to CT-4; label 1 for CT-1 and above."""

from __future__ import annotations

import re
from pathlib import Path

from medwss.data.builders._common import Row, files, find_nifti, nifti_stem, register, subdirs

GRADE_RE = re.compile(r"^CT-(\d)$", re.IGNORECASE)


def _base(root: Path) -> Path:
    """`root`, or its ``COVID19_1110`` folder when `root` is the folder above."""
    nested = root / "COVID19_1110"
    return nested if not (root / "studies").is_dir() and (nested / "studies").is_dir() else root


@register("mosmed", "studies/CT-{0..4}/study_XXXX.nii.gz [+ masks/study_XXXX_mask.nii.gz]")
def build(root: Path) -> list[Row]:
    """Rows for MosMedData: one per study, patient_id = case_id, grade in ``meta_grade``, no split."""
    base = _base(root)
    rows = []
    for folder in subdirs(base / "studies"):
        m = GRADE_RE.match(folder.name)
        if not m:
            continue
        grade = int(m.group(1))
        for image in files(folder):
            case_id = nifti_stem(image)
            if case_id is None:
                continue
            rows.append(
                {
                    "case_id": case_id,
                    "patient_id": case_id,
                    "site": "mosmed",
                    "modality": "CT",
                    "image": image,
                    "label": int(grade > 0),
                    "mask": find_nifti(base / "masks", f"{case_id}_mask"),
                    "meta_grade": f"CT-{grade}",
                }
            )
    return sorted(rows, key=lambda r: str(r["case_id"]))
