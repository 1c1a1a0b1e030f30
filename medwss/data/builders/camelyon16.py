"""CAMELYON16: lymph-node whole-slide images, slide label tumour (1) or normal (0)."""

from __future__ import annotations

import csv
from pathlib import Path

from medwss.data.builders._common import Row, files, first_existing, register, skip

SLIDE_SUFFIXES = (".tif", ".tiff")
LABELS = {"tumor": 1, "tumour": 1, "normal": 0}


def _slides(folder: Path) -> list[Path]:
    return [p for p in files(folder) if p.suffix.lower() in SLIDE_SUFFIXES]


def _annotations(folders: list[Path]) -> dict[str, Path]:
    """Lower-case case id → XML, the first folder winning."""
    found: dict[str, Path] = {}
    for folder in folders:
        for xml in files(folder, "*.xml"):
            found.setdefault(xml.stem.lower(), xml)
    return found


def _reference(path: Path | None) -> dict[str, list[str]]:
    """Rows of ``reference.csv`` (``test_001,Tumor,Macro,Primary``) keyed by lower-case case id."""
    if path is None:
        return {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if r and r[0].strip()]
    return {r[0].lower(): r[1:] for r in rows}


def _row(slide: Path, split: str, label: int | None, xml: Path | None, size: str = "") -> Row:
    case_id = slide.stem.lower()
    return {
        "case_id": case_id,
        "patient_id": case_id,
        "site": "camelyon16",
        "modality": "WSI",
        "image": slide,
        "label": label,
        "split": split,
        "meta_annotation": xml,
        "meta_metastasis_size": size,
    }


def _training(train: Path, xmls: dict[str, Path]) -> list[Row]:
    rows = []
    for kind, label in (("normal", 0), ("tumor", 1)):
        for slide in _slides(train / kind):
            xml = xmls.get(slide.stem.lower())
            if label and xml is None:
                skip(slide, "tumour slide without a lesion annotation XML (kept, label 1)")
            rows.append(_row(slide, "train", label, xml))
    return rows


def _testing(test: Path, xmls: dict[str, Path]) -> list[Row]:
    slides = _slides(test / "images") or _slides(test)
    ref_path = first_existing([test / "reference.csv", test / "evaluation" / "reference.csv"])
    if slides and ref_path is None:
        skip(test, "no reference.csv: test slides get an empty label")
    ref = _reference(ref_path)
    rows = []
    for slide in slides:
        entry = ref.get(slide.stem.lower())
        label = LABELS.get(entry[0].lower()) if entry else None
        if ref and label is None:
            skip(slide, f"no usable label in {ref_path} (kept, empty label)")
        size = entry[1] if entry and len(entry) > 1 else ""
        rows.append(_row(slide, "test", label, xmls.get(slide.stem.lower()), size))
    return rows


@register(
    "camelyon16",
    "training/{normal,tumor}/*.tif [+ training/lesion_annotations/*.xml], "
    "testing/images/test_*.tif + testing/reference.csv [+ testing/lesion_annotations/*.xml]",
)
def build(root: Path) -> list[Row]:
    """Rows for CAMELYON16: one per slide, patient_id = case_id, split train/test.

    `root` may also be the ``training`` folder itself (holding ``normal/`` and ``tumor/``).
    """
    train = root if (root / "tumor").is_dir() or (root / "normal").is_dir() else root / "training"
    test = root / "testing"
    xmls = _annotations(
        [
            train / "lesion_annotations",
            root / "annotations",
            root / "lesion_annotations",
            test / "lesion_annotations",
            test / "annotations",
        ]
    )
    rows = _training(train, xmls) + _testing(test, xmls)
    return sorted(rows, key=lambda r: str(r["case_id"]))
