"""Multi-channel MRI input: channels resampled onto one axial, organ-centred crop grid, normalised; and back.

Every channel file (T2, ADC, high-b DWI for prostate MRI; FLAIR, T1 pre/post for brain MRI; or a
single ``image``), each on its own grid, is resampled once, straight from its own file, onto a
*crop grid*: the orientation of the reference channel's *canonical* grid
(`medwss.data.orientation.canonical`: RAS+, the third axis axial whatever the stored axis order),
a fixed physical in-plane size (``crop_mm``) centred on the organ, an optional in-plane spacing
(``spacing_mm``; None keeps the reference spacing) and all the reference's axial slices. The
reference channel is the configured one, else the first requested channel (a single ``image``
column also answers to ``t2``, the name older prostate models use). ``crop_mm=None`` takes the whole
field of view: a square on the reference's larger in-plane side. The centre is the centre of the zone map's bounding box when the case has
one (manifest column ``meta_zones``, as the MRI phantoms and PI-CAI-style data with prostate
segmentations do); without zones the crop is centred on the reference volume. Predictions on the
crop grid go back onto the *stored* reference grid (that of the manifest's ``mask``) with
`paste_back`, to be written with the stored affine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.data.labels import IGNORE, decode_labels
from medwss.data.manifest import Case
from medwss.data.orientation import canonical
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.resample import resample_to
from medwss.io.volume import Volume
from medwss.transforms.intensity import normalise

REFERENCE = "t2"
"""The alias of a single ``image`` column (models of the prostate configs name their one channel ``t2``)."""


@dataclass
class CaseInput:
    """One case on its crop grid.

    Attributes:
        image: (C, X, Y, Z) float32, channels in the requested order, normalised; Z is axial.
        grid: The crop grid (array = the reference channel, not normalised), for resampling to and from it.
        reference: The reference volume as stored (the grid of the manifest's `mask` and of predictions).
        mask: (X, Y, Z) int64 ground truth on the crop grid, or None.
    """

    image: np.ndarray
    grid: Volume
    reference: Volume
    mask: np.ndarray | None = None


def case_channels(case: Case) -> dict[str, Path]:
    """The case's channel files by name; a single ``image`` column is also reachable as ``t2``."""
    images = dict(case.images)
    if "image" in images and REFERENCE not in images:
        images[REFERENCE] = images["image"]
    return images


def reference_channel(images: Mapping[str, object], channels: Sequence[str], reference: str | None = None) -> str:
    """The name of the reference channel: `reference` when given, else the first of `channels`."""
    if reference:
        return reference
    if not channels:
        raise InvalidDataError("no channel requested")
    return channels[0]


def zones_path(case: Case, root: Path | None) -> Path | None:
    """The zone map of a case (``meta_zones``, relative to the manifest folder), if any."""
    value = case.meta.get("zones", "")
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or root is None else root / p


def crop_grid(
    reference: Volume, zones: Volume | None, crop_mm: float | None, spacing_mm: float | None = None
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a crop of `crop_mm` × `crop_mm` in-plane (axial), all slices, centred on the organ.

    The crop is built on the reference's canonical grid, so its third axis is axial whatever the
    stored axis order (a permuted copy of the reference gives the same crop grid).

    Args:
        reference: The reference volume (orientation and slices of the crop), as stored.
        zones: Zone map on any grid (> 0 inside the organ); None for a centred crop.
        crop_mm: In-plane side length in mm (None: the reference's larger in-plane extent, i.e. the
            whole field of view, centred on the volume unless `zones` say otherwise).
        spacing_mm: In-plane spacing of the crop (None: the reference spacing).
    """
    ref, _ = canonical(reference)
    if crop_mm is None:
        crop_mm = float(max(ref.shape[0] * ref.spacing[0], ref.shape[1] * ref.spacing[1]))
    affine = ref.affine
    sp = np.array(ref.spacing)
    if zones is not None and (zones.array > 0).any():
        idx = np.argwhere(zones.array > 0)
        centre_vox = (idx.min(0) + idx.max(0)) / 2.0
        centre = (zones.affine @ np.append(centre_vox[:3], 1.0))[:3]
    else:
        centre = (affine @ np.append((np.array(ref.shape[:3]) - 1) / 2.0, 1.0))[:3]
    new_sp = sp.copy()
    if spacing_mm is not None:
        new_sp[:2] = spacing_mm
    n = [max(1, int(round(crop_mm / s))) for s in new_sp[:2]]
    shape = (n[0], n[1], ref.shape[2])
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] / sp * new_sp  # same directions, new spacing
    centre_ref = np.linalg.inv(affine) @ np.append(centre, 1.0)  # in reference voxels
    # first crop voxel in reference voxels, rounded onto its lattice (exact crops when the spacing is kept);
    # through-plane the crop starts at the reference's first axial slice
    first = np.round(centre_ref[:2] - (np.array(shape[:2]) - 1) / 2.0 * new_sp[:2] / sp[:2])
    out[:3, 3] = (affine @ np.array([first[0], first[1], 0.0, 1.0]))[:3]
    return shape, out


def _spatial(vol: Volume) -> np.ndarray:
    return vol.array if vol.array.ndim == 3 else vol.array[..., 0]


def load_case(
    case: Case,
    channels: Sequence[str] | None = None,
    crop_mm: float | None = 56.0,
    spacing_mm: float | None = 1.0,
    root: Path | None = None,
    use_zones: bool = True,
    reference: str | None = None,
    num_classes: int | None = None,
) -> CaseInput:
    """Load a case's channels onto its crop grid, normalised per channel (robust z-score).

    Args:
        case: A manifest row with ``image_<channel>`` columns, or a single ``image`` column
            (reachable as ``image`` or ``t2``).
        channels: Channel names, in the order of the network input (None: all of the case's, in
            manifest column order).
        crop_mm: In-plane crop size in mm (None: the whole field of view).
        spacing_mm: In-plane spacing of the crop (None: the reference spacing).
        root: Folder of the manifest (to resolve ``meta_zones``).
        use_zones: Centre on the zone map when there is one (else a centred crop).
        reference: The channel whose grid the crop is built on (None: the first of `channels`).
        num_classes: Classes of the mask, background included: 2 makes every value > 0 the one
            foreground class (a lesion mask, instance ids merged); more checks the values are
            0..K−1 (None: kept as stored).

    Raises:
        InvalidDataError: A channel is missing from the case, or mask values outside 0..K−1.
    """
    images = case_channels(case)
    if channels is None:
        channels = list(case.images)
    ref_name = reference_channel(images, channels, reference)
    missing = [c for c in dict.fromkeys([*channels, ref_name]) if c not in images]
    if missing:
        raise InvalidDataError(f"case {case.case_id} lacks channel(s) {', '.join(missing)}")
    ref_vol = load_volume(images[ref_name])
    zp = zones_path(case, root) if use_zones else None
    zones = load_volume(zp) if zp is not None and zp.exists() else None
    shape, affine = crop_grid(ref_vol, zones, crop_mm, spacing_mm)
    grid = Volume(np.zeros(shape, np.float32), affine, {"crop_mm": crop_mm})
    stack = []
    for name in channels:
        vol = ref_vol if images[name] == images[ref_name] else load_volume(images[name])
        moved = resample_to(Volume(_spatial(vol).astype(np.float32), vol.affine), grid, order=1)
        stack.append(normalise(moved.array, method="zscore"))
    grid = Volume(resample_to(Volume(_spatial(ref_vol).astype(np.float32), ref_vol.affine), grid).array, affine)
    mask = None
    if case.mask is not None:
        m = load_volume(case.mask)
        labels = decode_labels(_spatial(m), None if num_classes == 2 else num_classes, source=case.mask)
        if num_classes == 2:
            labels = np.where(labels > 0, 1, labels)
        mask = resample_to(Volume(labels.astype(np.int16), m.affine), grid, order=0, fill=0).array.astype(np.int64)
    return CaseInput(np.stack(stack).astype(np.float32), grid, ref_vol, mask)


def to_grid(labels: Volume, grid: Volume, fill: float = IGNORE, num_classes: int | None = None) -> np.ndarray:
    """An integer map read from a file (e.g. a scribble file) moved onto the crop grid (nearest neighbour).

    Values are decoded with `medwss.data.labels.decode_labels` (negative, or 255 in a uint8 file,
    → `IGNORE`); voxels outside the map's field of view get `fill` (default `IGNORE`).
    """
    arr = decode_labels(_spatial(labels), num_classes, source=labels.path).astype(np.int16)
    return resample_to(Volume(arr, labels.affine), grid, order=0, fill=fill).array.astype(np.int64)


def paste_back(prob: np.ndarray, grid: Volume, reference: Volume) -> np.ndarray:
    """A (X, Y, Z) map on the crop grid resampled onto the stored reference grid; 0 outside the crop.

    The result lies on the reference as stored (whatever its axis order): write it with
    ``reference.affine``.
    """
    moved = resample_to(Volume(prob.astype(np.float32), grid.affine), reference, order=1, fill=0.0)
    return np.clip(moved.array, 0.0, 1.0).astype(np.float32)
