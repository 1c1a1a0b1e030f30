"""KiTS19/21/23: contrast CT of kidneys; label 1 when the segmentation holds tumour (value 2)."""

from __future__ import annotations

import re
from pathlib import Path

from medwss.data.builders._common import Row, find_nifti, first_existing, register, skip, subdirs

CASE_RE = re.compile(r"^case_\d{5}$")
TUMOUR = 2  # KiTS label values: 1 kidney, 2 tumour, 3 cyst (KiTS21/23)
SEGMENTATIONS = ("segmentation", "aggregated_MAJ_seg")  # KiTS19/23, then KiTS21's majority vote


def _has_tumour(seg: Path) -> int | None:
    """1 if `seg` contains tumour voxels, 0 if not, ``None`` (logged) if it cannot be read."""
    import nibabel as nib
    import numpy as np

    try:
        data = np.asanyarray(nib.load(seg).dataobj)  # type: ignore[attr-defined]
    except Exception as exc:  # one unreadable file must not stop the build
        skip(seg, f"segmentation unreadable ({exc}); label left empty")
        return None
    return int(bool(np.any(data == TUMOUR)))


def _base(root: Path) -> Path:
    """`root`, ``root/data`` (KiTS19/21) or ``root/dataset`` (KiTS23): the first holding case folders.

    A ``kits.json``/``kits23.json`` beside the cases is allowed and not needed.
    """
    candidates = [root, root / "data", root / "dataset"]
    holds_cases = (c for c in candidates if any(CASE_RE.match(d.name) for d in subdirs(c)))
    return first_existing(holds_cases) or root


@register("kits", "case_XXXXX/imaging.nii.gz [+ segmentation.nii.gz], also under data/ or dataset/")
def build(root: Path) -> list[Row]:
    """Rows for KiTS: one per case, mask = segmentation (multi-class), label empty without one."""
    rows = []
    for folder in subdirs(_base(root)):
        if not CASE_RE.match(folder.name):
            continue
        image = find_nifti(folder, "imaging")
        if image is None:
            skip(folder, "no imaging.nii.gz; case skipped")
            continue
        seg = next((p for s in SEGMENTATIONS if (p := find_nifti(folder, s)) is not None), None)
        rows.append(
            {
                "case_id": folder.name,
                "patient_id": folder.name,
                "site": "kits",
                "modality": "CT",
                "image": image,
                "label": _has_tumour(seg) if seg is not None else None,
                "mask": seg,
            }
        )
    return rows
