"""Export selected slices for annotation: 2D NIfTI with their world geometry, PNG previews and a CSV.

Each slice is cut by the one slicer (`medwss.data.slicer`) on the canonical RAS+ grid and written
as an ``(H, W, 1)`` NIfTI with its original intensities and the affine `SliceGeometry.slice_affine`
gives it (voxel ``(i, j, 0)`` of the slice lands where the matching voxel of the volume is), so the
slice overlays its volume in world space in ITK-SNAP or 3D Slicer whatever the volume's stored axis
order (a permuted copy of a volume exports the very same files), and an annotation saved on it
keeps that geometry, which `medwss.active.ingest` checks.

For 3D context every volume with a selected slice is also written whole, on its canonical grid
(``volumes/<case>.nii.gz``: stored array axis 3 = the axial slice index of ``selection.csv``), with
its slice list (``volumes/<case>_slices.csv``: slice id, axial index, world z in mm), so an
annotator can open the volume in ITK-SNAP or 3D Slicer, go to the listed slices and save one
segmentation of the whole volume, or of a crop of it, which `medwss.active.ingest` also reads.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medwss.active.pool import SliceRef
from medwss.data.orientation import Orientation
from medwss.io.atomic import atomic_path, write_text
from medwss.transforms.intensity import Window, normalise

README = """Slices to annotate (round {round}, {n} slices, strategy {strategy})

images/<slice_id>.nii.gz   the slice, with its position in the scanner (opens over the full volume)
previews/<slice_id>.png    a quick look
volumes/<case>.nii.gz      the whole volume (3D context), axial slice k = the slice_index of selection.csv
volumes/<case>_slices.csv  the slices to annotate in that volume: slice_id, slice_index, world z (mm)
selection.csv              slice_id, case, patient, axial slice index (0 = the feet end), source volume,
                           its stored orientation, world position, volume file

Draw a label map on each image in ITK-SNAP or 3D Slicer and save it, on the same image grid, as
    <slice_id>.nii.gz  (or <slice_id>_label.nii.gz / <slice_id>_seg.nii.gz)
in one folder, then run:  medwss al ingest THAT_FOLDER --state STATE
Or open volumes/<case>.nii.gz, annotate the listed slices and save one segmentation of the volume
(or of a crop of it, without resampling) as <case>.nii.gz (or <case>_seg.nii.gz) in that folder: only
the listed slices are taken; in a dense segmentation a listed slice left all background stays
pending (ingest with --kind full if it really is all background); outside a crop is unlabelled.
Label values: {labels}.
Full masks: every pixel gets a class (0 = background).
Scribbles: pixels you did not mark are unlabelled: -1 (int16 files), 255 in a uint8 file{unlabelled};
marked pixels get their class.
"""


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
    window: Window = "soft_tissue",
    round_number: int = 0,
    strategy: str = "",
    class_names: Sequence[str] = (),
    unlabelled: int | None = None,
    progress: bool = True,
    volumes: bool = True,
) -> Path:
    """Write ``images/``, ``previews/``, ``selection.csv`` and ``README.txt`` for the given slices into `out`.

    Args:
        refs: The slices (``index`` = canonical axial index).
        out: Export folder.
        window: Intensity window of the PNG previews (the NIfTI keep the original intensities).
        round_number: Round number, for the README.
        strategy: Strategy name, for the README.
        class_names: Class names, background first, for the README.
        unlabelled: The project's own "unlabelled" value, if any (told to annotators in the README).
        progress: Show a progress bar.
        volumes: Also write each volume whole with its slice list (``volumes/``, 3D context).

    Returns:
        The path of ``selection.csv``.
    """
    from medwss.data.orientation import canonical
    from medwss.data.slicer import plan_slices
    from medwss.io import load_volume, save_nifti
    from medwss.io.volume import Volume

    out = Path(out)
    rows = []
    listed: dict[str, list[dict[str, Any]]] = {}
    cache: dict[str, tuple[Volume, Orientation]] = {}
    for ref in tqdm(list(refs), desc="export slices", disable=not progress, leave=False):
        if ref.image not in cache:
            cache.clear()
            cache[ref.image] = canonical(load_volume(ref.image))
        vol, orientation = cache[ref.image]
        geom = plan_slices(orientation, indices=[ref.index])
        image = geom.cut_canonical(vol.array)[0].astype(vol.array.dtype)  # (H, W), original intensities
        affine = geom.slice_affine(0)
        save_nifti(Volume(image[:, :, None], affine), out / "images" / f"{ref.slice_id}.nii.gz")
        preview_png(normalise(image, "window", window), out / "previews" / f"{ref.slice_id}.png")
        x, y, z = (affine[:3, 3]).tolist()
        vol_file = ""
        if volumes:
            name = volume_name(ref.case_id)
            vol_file = f"volumes/{name}.nii.gz"
            if name not in listed:
                save_nifti(vol, out / vol_file)
                listed[name] = []
            centre = orientation.canonical_affine @ [(vol.shape[0] - 1) / 2, (vol.shape[1] - 1) / 2, ref.index, 1]
            listed[name].append({"slice_id": ref.slice_id, "slice_index": ref.index, "world_z_mm": f"{centre[2]:.3f}"})
        rows.append(
            {
                "slice_id": ref.slice_id,
                "case_id": ref.case_id,
                "patient_id": ref.patient_id,
                "slice_index": ref.index,
                "source_image": ref.image,
                "source_orientation": orientation.codes,
                "origin_x_mm": f"{x:.3f}",
                "origin_y_mm": f"{y:.3f}",
                "origin_z_mm": f"{z:.3f}",
                **({"volume_file": vol_file} if volumes else {}),
            }
        )
    for name, slices in listed.items():
        write_text(out / "volumes" / f"{name}_slices.csv", _csv(sorted(slices, key=lambda r: int(r["slice_index"]))))
    labels = ", ".join(f"{i} = {n}" for i, n in enumerate(class_names)) or "0 = background, 1.. = classes"
    own = f", or {unlabelled}" if unlabelled is not None else ""
    write_text(
        out / "README.txt",
        README.format(round=round_number, n=len(rows), strategy=strategy, labels=labels, unlabelled=own),
    )
    return write_text(out / "selection.csv", _csv(rows) if rows else "slice_id\n")


def volume_name(case_id: str) -> str:
    """The file-safe name of a case's exported volume (``volumes/<name>.nii.gz``), as `slice_name` makes slice ids."""
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in case_id)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
