"""Read annotations of exported slices back: full masks or scribbles, geometry checked file by file.

A file is matched to a selected slice by its name (``<slice_id>``, ``<slice_id>_label``,
``<slice_id>_seg``, any volume format `medwss.io.load_volume` reads). It must lie on the exported
slice's grid (same in-plane shape and world geometry: `SliceGeometry.slice_affine` of the slice,
within 0.01 mm; a file a viewer stored with its axes in another order or direction is put back on
that grid first) and hold only class values ``0..K-1`` or "unlabelled", which
`medwss.data.labels.decode_labels` reads as -1 (any negative), 255 in a uint8 file, or the value
the project names (``unlabelled``). A file that fails is rejected with one line naming it and the
problem; the others are ingested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.active.pool import SliceRef
from medwss.data.labels import IGNORE, decode_labels
from medwss.errors import InvalidDataError, MedwssError

SUFFIXES = ("_label", "_labels", "_seg", "_scribble", "-label", ".seg")
AFFINE_TOL_MM = 1e-2


@dataclass
class Annotation:
    """One accepted file: its slice, label (H, W) int64 with -1 = unlabelled, kind, and the slice's affine."""

    slice_id: str
    label: np.ndarray
    kind: str
    source: Path
    affine: np.ndarray


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


def exported_grid(ref: SliceRef) -> tuple[tuple[int, int], np.ndarray]:
    """In-plane shape and affine of the slice `medwss.active.export` writes for `ref`."""
    from medwss.data.orientation import orientation_of
    from medwss.data.slicer import plan_slices
    from medwss.io import load_volume

    geom = plan_slices(orientation_of(load_volume(ref.image)), indices=[ref.index])
    return geom.slice_shape, geom.slice_affine(0)


def read_annotation(
    path: Path,
    ref: SliceRef,
    num_classes: int,
    unlabelled: int | None = None,
    kind: str = "auto",
    grid: tuple[tuple[int, int], np.ndarray] | None = None,
) -> Annotation:
    """Read and check one annotation file against its slice.

    Args:
        path: The file.
        ref: The slice it annotates.
        num_classes: Classes including background.
        unlabelled: A value meaning "unlabelled" in this file, besides -1 (and 255 in uint8 files).
        kind: ``full``, ``scribble``, or ``auto`` (scribble when unlabelled pixels are present).
        grid: The slice's `exported_grid` when already known.

    Raises:
        InvalidDataError: Naming the file: shape or affine differ from the slice, bad values, or
            unlabelled pixels in a file declared full.
    """
    from medwss.data.orientation import canonical
    from medwss.io import load_volume

    want_shape, want = grid if grid is not None else exported_grid(ref)
    vol = load_volume(path)
    if vol.array.ndim == 3 and vol.array.shape[2] == 1:
        vol, _ = canonical(vol)  # a one-slice file stored in another axis order or direction
    arr = vol.array
    if arr.ndim > 3 or arr.shape[:2] != tuple(want_shape) or (arr.ndim == 3 and arr.shape[2] != 1):
        raise InvalidDataError(
            f"shape {tuple(arr.shape)} does not match the exported slice {tuple(want_shape) + (1,)} of {ref.slice_id}",
            path,
        )
    diff = float(np.abs(vol.affine - want).max())
    if diff > AFFINE_TOL_MM:
        raise InvalidDataError(
            f"geometry differs from the exported slice {ref.slice_id} (affine off by up to {diff:.3g} mm): "
            "draw on the exported image and save on its grid, without resampling",
            path,
        )
    label = decode_labels(arr[:, :, 0] if arr.ndim == 3 else arr, num_classes, unlabelled, path)
    unknown = label == IGNORE
    found = "scribble" if unknown.any() else "full"
    if kind == "full" and found == "scribble":
        raise InvalidDataError(f"declared a full mask but {int(unknown.sum())} pixels are unlabelled", path)
    if unknown.all():
        raise InvalidDataError("no pixel is labelled", path)
    return Annotation(ref.slice_id, label, found if kind == "auto" else kind, path, want)


def scan_folder(
    folder: str | Path,
    refs: dict[str, SliceRef],
    num_classes: int,
    unlabelled: int | None = None,
    kind: str = "auto",
) -> tuple[list[Annotation], list[str]]:
    """Every annotation file of a folder, checked: the accepted ones and one message per rejected file.

    Args:
        folder: Folder of annotation files (not searched recursively).
        refs: The slices that may be annotated (the selected ones), by id.
        num_classes: Classes including background.
        unlabelled: A value meaning "unlabelled", besides -1 (and 255 in uint8 files).
        kind: ``full``, ``scribble`` or ``auto``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidDataError("not a folder of annotation files", folder)
    accepted: list[Annotation] = []
    rejected: list[str] = []
    grids: dict[str, tuple[tuple[int, int], np.ndarray]] = {}
    files: Sequence[Path] = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        if path.suffix.lower() in (".csv", ".txt", ".png", ".json", ".md"):
            continue
        sid = slice_id_of(path)
        if sid not in refs:
            rejected.append(f"{path}: not one of the selected slices (name it <slice_id>.nii.gz)")
            continue
        try:
            if sid not in grids:
                grids[sid] = exported_grid(refs[sid])
            accepted.append(read_annotation(path, refs[sid], num_classes, unlabelled, kind, grids[sid]))
        except (MedwssError, OSError, ValueError) as exc:
            rejected.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    return accepted, rejected
