"""ACDC: cine cardiac MRI; one row per annotated frame (end-diastole and end-systole)."""

from __future__ import annotations

import re
from pathlib import Path

from medwss.data.builders._common import Row, find_nifti, register, skip, subdirs

PATIENT_RE = re.compile(r"^patient\d+$")
FOLDER_SPLITS = {"training": "train", "testing": "test"}


def _info(path: Path) -> dict[str, str]:
    """``Info.cfg`` as a dict: lines ``ED: 1``, ``ES: 12``, ``Group: DCM``, ``Height: ...``."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _split_folders(root: Path) -> list[tuple[str | None, Path]]:
    """``(split, folder of patients)``: ``database/{training,testing}``, ``{training,testing}``, or `root`."""
    for base in (root / "database", root):
        found: list[tuple[str | None, Path]] = [(s, base / n) for n, s in FOLDER_SPLITS.items() if (base / n).is_dir()]
        if found:
            return found
    return [(FOLDER_SPLITS.get(root.name), root)]


def _rows(folder: Path, split: str | None) -> list[Row]:
    pid = folder.name
    cfg = folder / "Info.cfg"
    if not cfg.is_file():
        skip(folder, "no Info.cfg; patient skipped")
        return []
    info = _info(cfg)
    rows = []
    for phase in ("ED", "ES"):
        frame = info.get(phase, "")
        if not frame.isdigit():
            skip(cfg, f"no usable '{phase}:' line; {phase} frame skipped")
            continue
        case_id = f"{pid}_frame{int(frame):02d}"
        image = find_nifti(folder, case_id)
        if image is None:
            skip(folder, f"no {case_id}.nii.gz; {phase} frame skipped")
            continue
        rows.append(
            {
                "case_id": case_id,
                "patient_id": pid,
                "site": "acdc",
                "modality": "MR",
                "image": image,
                "mask": find_nifti(folder, f"{case_id}_gt"),
                "split": split,
                "meta_phase": phase,
                "meta_frame": int(frame),
                "meta_group": info.get("Group", ""),
                "meta_height": info.get("Height", ""),
                "meta_weight": info.get("Weight", ""),
            }
        )
    return rows


@register(
    "acdc",
    "database/{training,testing}/patientXXX/{Info.cfg,patientXXX_frameNN.nii.gz[,patientXXX_frameNN_gt.nii.gz]}",
)
def build(root: Path) -> list[Row]:
    """Rows for ACDC: case_id ``patient001_frame01``, patient_id ``patient001``, no label."""
    rows = []
    for split, folder in _split_folders(root):
        for patient in subdirs(folder):
            if PATIENT_RE.match(patient.name):
                rows += _rows(patient, split)
    return sorted(rows, key=lambda r: str(r["case_id"]))
