"""Read annotations of exported slices back: full masks or scribbles, geometry checked file by file.

A file is matched to a selected slice by its name (``<slice_id>``, ``<slice_id>_label``,
``<slice_id>_seg``, any volume format `medwss.io.load_volume` reads). It must lie on the exported
slice's grid (same in-plane shape, affine equal within 0.01 mm), hold only class values
``0..K-1`` and, for scribbles, `UNLABELLED_IN_FILES` (or -1) for unlabelled pixels. A file that
fails is rejected with one line naming it and the problem; the others are ingested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.active.export import slice_affine
from medwss.active.pool import SliceRef
from medwss.errors import InvalidDataError, MedwssError
from medwss.seg.losses import IGNORE

SUFFIXES = ("_label", "_labels", "_seg", "_scribble", "-label", ".seg")
AFFINE_TOL_MM = 1e-2


@dataclass
class Annotation:
    """One accepted file: its slice, label (H, W) int64 with -1 = unlabelled, and kind."""

    slice_id: str
    label: np.ndarray
    kind: str
    source: Path


def slice_id_of(path: Path) -> str:
    """The slice id a file name refers to (suffixes such as ``.nii.gz`` and ``_label`` removed)."""
    name = path.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_annotation(
    path: Path, ref: SliceRef, num_classes: int, unlabelled: int = 255, kind: str = "auto"
) -> Annotation:
    """Read and check one annotation file against its slice.

    Args:
        path: The file.
        ref: The slice it annotates.
        num_classes: Classes including background.
        unlabelled: The file value meaning "unlabelled" (scribbles).
        kind: ``full``, ``scribble``, or ``auto`` (scribble when unlabelled pixels are present).

    Raises:
        InvalidDataError: Naming the file: shape or affine differ from the slice, bad values, or
            unlabelled pixels in a file declared full.
    """
    from medwss.io import load_volume

    vol = load_volume(path)
    source = load_volume(ref.image)
    want_shape = source.shape[:2]
    arr = vol.array
    if arr.ndim > 3 or arr.shape[:2] != want_shape or (arr.ndim == 3 and arr.shape[2] != 1):
        raise InvalidDataError(
            f"shape {tuple(arr.shape)} does not match the exported slice {want_shape + (1,)} of {ref.slice_id}", path
        )
    want = slice_affine(source.affine, ref.index)
    diff = float(np.abs(vol.affine - want).max())
    if diff > AFFINE_TOL_MM:
        raise InvalidDataError(
            f"geometry differs from the exported slice {ref.slice_id} (affine off by up to {diff:.3g} mm): "
            "draw on the exported image and save on its grid, without resampling",
            path,
        )
    raw = np.rint(arr[:, :, 0] if arr.ndim == 3 else arr).astype(np.int64)
    unknown = (raw == unlabelled) | (raw == -1)
    bad = np.unique(raw[~unknown & ((raw < 0) | (raw >= num_classes))])
    if bad.size:
        raise InvalidDataError(
            f"label values {bad[:5].tolist()} are not classes 0..{num_classes - 1} nor {unlabelled} (unlabelled)", path
        )
    found = "scribble" if unknown.any() else "full"
    if kind == "full" and found == "scribble":
        raise InvalidDataError(
            f"declared a full mask but {int(unknown.sum())} pixels are unlabelled ({unlabelled})", path
        )
    label = np.where(unknown, IGNORE, raw)
    if not (label >= 0).any():
        raise InvalidDataError("no pixel is labelled", path)
    return Annotation(ref.slice_id, label, found if kind == "auto" else kind, path)


def scan_folder(
    folder: str | Path, refs: dict[str, SliceRef], num_classes: int, unlabelled: int = 255, kind: str = "auto"
) -> tuple[list[Annotation], list[str]]:
    """Every annotation file of a folder, checked: the accepted ones and one message per rejected file.

    Args:
        folder: Folder of annotation files (not searched recursively).
        refs: The slices that may be annotated (the selected ones), by id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidDataError("not a folder of annotation files", folder)
    accepted: list[Annotation] = []
    rejected: list[str] = []
    files: Sequence[Path] = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        if path.suffix.lower() in (".csv", ".txt", ".png", ".json", ".md"):
            continue
        sid = slice_id_of(path)
        if sid not in refs:
            rejected.append(f"{path}: not one of the selected slices (name it <slice_id>.nii.gz)")
            continue
        try:
            accepted.append(read_annotation(path, refs[sid], num_classes, unlabelled, kind))
        except (MedwssError, OSError, ValueError) as exc:
            rejected.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    return accepted, rejected
