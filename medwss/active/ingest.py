"""Read annotations of exported slices back: full masks or scribbles, geometry checked file by file.

A file is matched to a selected slice by its name (``<slice_id>``, ``<slice_id>_label``,
``<slice_id>_seg``, any volume format `medwss.io.load_volume` reads). It must lie on the exported
slice's grid (same in-plane shape and world geometry: `SliceGeometry.slice_affine` of the slice,
within 0.01 mm; a file a viewer stored with its axes in another order or direction is put back on
that grid first) and hold only class values ``0..K-1`` or "unlabelled", which
`medwss.data.labels.decode_labels` reads as -1 (any negative), 255 in a uint8 file, or the value
the project names (``unlabelled``). A file that fails is rejected with one line naming it and the
problem; the others are ingested.

A file named after a case (``<case>``, ``<case>_seg``, ...: the exported ``volumes/<case>.nii.gz``)
is a segmentation of the whole volume, as ITK-SNAP or 3D Slicer save it (`read_volume_annotation`):
on the volume's grid, in any stored axis order, or on a crop of it (a sub-box: same spacing and
directions, its origin a whole number of voxels inside the volume, within 0.01 mm; anything else,
e.g. a resampled grid, is rejected naming the file). Only the selected slices of that volume are
taken from it, and voxels outside a crop are unlabelled. In a file without any unlabelled value
(a dense segmentation), a selected slice holding background only stays pending, since a viewer
writes 0 on slices nobody painted; declare ``kind="full"`` to take such slices as all background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.active.export import volume_name
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


def _place_on_grid(affine: np.ndarray, grid_affine: np.ndarray) -> tuple[tuple[int, int, int], float]:
    """Whole-voxel offset of a grid (`affine`) inside another (`grid_affine`), and the largest residual in mm."""
    t = np.linalg.solve(grid_affine, affine)
    offset = np.rint(t[:3, 3]).astype(int)
    shift = np.eye(4)
    shift[:3, 3] = offset
    residual = float(np.abs(grid_affine @ shift - affine).max())
    return (int(offset[0]), int(offset[1]), int(offset[2])), residual


def read_volume_annotation(
    path: Path,
    refs: Sequence[SliceRef],
    num_classes: int,
    unlabelled: int | None = None,
    kind: str = "auto",
) -> list[Annotation]:
    """The selected slices of one volume, read from a segmentation of the volume or of a crop of it.

    Args:
        path: The segmentation file (3D; values ``0..K-1`` or unlabelled, as for `read_annotation`).
        refs: The selected slices of that volume (one volume).
        num_classes: Classes including background.
        unlabelled: A value meaning "unlabelled", besides -1 (and 255 in uint8 files).
        kind: ``full``, ``scribble`` or ``auto``; with ``full`` a slice without any class counts as
            all background, with ``auto`` it stays pending.

    Returns:
        One `Annotation` per selected slice the file labels (an empty list is an error, below).

    Raises:
        InvalidDataError: Naming the file: not 3D, not on the volume's grid nor a crop of it, a crop
            reaching outside the volume, bad values, or none of the selected slices labelled.
    """
    from medwss.data.orientation import canonical, orientation_of
    from medwss.data.slicer import plan_slices
    from medwss.io import load_volume

    orientation = orientation_of(load_volume(refs[0].image))
    grid, shape = orientation.canonical_affine, orientation.canonical_shape
    seg = load_volume(path)
    if seg.array.ndim != 3:
        raise InvalidDataError(f"a volume segmentation must be 3D, got shape {seg.shape}", path)
    seg, _ = canonical(seg)
    offset, residual = _place_on_grid(seg.affine, grid)
    if residual > AFFINE_TOL_MM:
        raise InvalidDataError(
            f"not on the grid of volume {refs[0].case_id} nor a crop of it (off by up to {residual:.3g} mm "
            "after the best whole-voxel shift): save on the exported volume's grid, without resampling",
            path,
        )
    lo, hi = np.array(offset), np.array(offset) + np.array(seg.shape[:3])
    if (lo < 0).any() or (hi > np.array(shape)).any():
        raise InvalidDataError(
            f"crop voxels {lo.tolist()}..{(hi - 1).tolist()} reach outside volume {refs[0].case_id} of shape {shape}",
            path,
        )
    values = decode_labels(seg.array, num_classes, unlabelled, path)
    dense = not (values == IGNORE).any()  # no "unlabelled" anywhere: a 0-only slice may be one nobody painted
    out: list[Annotation] = []
    for ref in sorted(refs, key=lambda r: r.index):
        k = ref.index - offset[2]
        if not 0 <= k < values.shape[2]:
            continue
        label = np.full(shape[:2], IGNORE, dtype=np.int64)
        label[lo[0] : hi[0], lo[1] : hi[1]] = values[:, :, k]
        unknown = label == IGNORE
        if dense and kind != "full" and not (values[:, :, k] > 0).any():
            continue  # nobody painted this slice (a viewer writes 0 there): it stays pending
        if unknown.all():
            continue
        if kind == "full" and unknown.any():
            raise InvalidDataError(
                f"declared a full mask but slice {ref.slice_id} has {int(unknown.sum())} unlabelled pixels"
                + (" (outside the crop)" if seg.shape[:2] != shape[:2] else ""),
                path,
            )
        found = "scribble" if unknown.any() else "full"
        affine = plan_slices(orientation, indices=[ref.index]).slice_affine(0)
        out.append(Annotation(ref.slice_id, label, found if kind == "auto" else kind, path, affine))
    if not out:
        picked = ", ".join(str(r.index) for r in sorted(refs, key=lambda r: r.index))
        raise InvalidDataError(
            f"labels none of the selected slices of {refs[0].case_id} (axial indices {picked}; "
            f"the file covers {offset[2]}..{offset[2] + values.shape[2] - 1})",
            path,
        )
    return out


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
    volumes: dict[str, list[SliceRef]] = {}
    for ref in refs.values():
        volumes.setdefault(volume_name(ref.case_id), []).append(ref)
    files: Sequence[Path] = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        if path.suffix.lower() in (".csv", ".txt", ".png", ".json", ".md"):
            continue
        sid = slice_id_of(path)
        if sid not in refs and sid in volumes:
            try:
                accepted.extend(read_volume_annotation(path, volumes[sid], num_classes, unlabelled, kind))
            except (MedwssError, OSError, ValueError) as exc:
                rejected.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            continue
        if sid not in refs:
            rejected.append(
                f"{path}: not one of the selected slices nor their volumes "
                "(name it <slice_id>.nii.gz, or <case>.nii.gz for the whole volume)"
            )
            continue
        try:
            if sid not in grids:
                grids[sid] = exported_grid(refs[sid])
            accepted.append(read_annotation(path, refs[sid], num_classes, unlabelled, kind, grids[sid]))
        except (MedwssError, OSError, ValueError) as exc:
            rejected.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    return accepted, rejected
