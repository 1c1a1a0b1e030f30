"""Export selected slices for annotation: 2D NIfTI with their source geometry, PNG previews and a CSV.

Each slice is written as an ``(H, W, 1)`` NIfTI whose affine is the volume's affine moved to the
slice (voxel ``(i, j, 0)`` of the slice lands where voxel ``(i, j, k)`` of the volume is), so the
slice overlays its volume in world space in ITK-SNAP or 3D Slicer, and an annotation saved on it
keeps that geometry, which `medwss.active.ingest` checks.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medwss.active.pool import SliceRef, normalise
from medwss.io.atomic import atomic_path, write_text

README = """Slices to annotate (round {round}, {n} slices, strategy {strategy})

images/<slice_id>.nii.gz   the slice, with its position in the scanner (opens over the full volume)
previews/<slice_id>.png    a quick look
selection.csv              slice_id, case, patient, slice index, source volume, world position

Draw a label map on each image in ITK-SNAP or 3D Slicer and save it, on the same image grid, as
    <slice_id>.nii.gz  (or <slice_id>_label.nii.gz / <slice_id>_seg.nii.gz)
in one folder, then run:  medwss al ingest THAT_FOLDER --state STATE
Label values: {labels}.
Full masks: every pixel gets a class (0 = background).
Scribbles: pixels you did not mark must be {unlabelled} (= unlabelled); marked pixels get their class.
"""


def slice_affine(affine: np.ndarray, index: int) -> np.ndarray:
    """The affine of slice `index` along the last array axis: the volume's, translated to that slice."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(index)]) + affine[:3, 3]
    return out


def preview_png(image: np.ndarray, path: Path) -> None:
    """Write a greyscale PNG of a 2D slice in [0, 1] (array axis 0 drawn left to right, as viewers show axial slices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, np.rot90(image), cmap="gray", vmin=0.0, vmax=1.0, format="png")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def export_slices(
    refs: Sequence[SliceRef],
    out: str | Path,
    window: tuple[float, float] | None,
    round_number: int = 0,
    strategy: str = "",
    class_names: Sequence[str] = (),
    unlabelled: int = 255,
    progress: bool = True,
) -> Path:
    """Write ``images/``, ``previews/``, ``selection.csv`` and ``README.txt`` for the given slices into `out`.

    Returns:
        The path of ``selection.csv``.
    """
    from medwss.io import load_volume, save_nifti
    from medwss.io.volume import Volume

    out = Path(out)
    rows = []
    cache: dict[str, Volume] = {}
    for ref in tqdm(list(refs), desc="export slices", disable=not progress, leave=False):
        if ref.image not in cache:
            cache.clear()
            cache[ref.image] = load_volume(ref.image)
        vol = cache[ref.image]
        array = vol.array[:, :, ref.index : ref.index + 1]  # (H, W, 1), original intensities
        affine = slice_affine(vol.affine, ref.index)
        save_nifti(Volume(np.ascontiguousarray(array), affine), out / "images" / f"{ref.slice_id}.nii.gz")
        preview_png(normalise(array[:, :, 0], window), out / "previews" / f"{ref.slice_id}.png")
        x, y, z = (affine[:3, 3]).tolist()
        rows.append(
            {
                "slice_id": ref.slice_id,
                "case_id": ref.case_id,
                "patient_id": ref.patient_id,
                "slice_index": ref.index,
                "source_image": ref.image,
                "origin_x_mm": f"{x:.3f}",
                "origin_y_mm": f"{y:.3f}",
                "origin_z_mm": f"{z:.3f}",
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["slice_id"])
    writer.writeheader()
    writer.writerows(rows)
    labels = ", ".join(f"{i} = {n}" for i, n in enumerate(class_names)) or "0 = background, 1.. = classes"
    write_text(
        out / "README.txt",
        README.format(round=round_number, n=len(rows), strategy=strategy, labels=labels, unlabelled=unlabelled),
    )
    return write_text(out / "selection.csv", buf.getvalue())
