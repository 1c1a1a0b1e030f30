"""Multi-parametric MRI input: channels resampled onto one prostate-centred grid, normalised; and back.

Every channel file (T2, ADC, high-b DWI, each on its own grid) is resampled once, straight from
its own file, onto a *crop grid*: the T2 orientation, a fixed physical in-plane size
(``crop_mm``) centred on the prostate, an optional in-plane spacing (``spacing_mm``; None keeps
the T2 spacing) and the T2 slices. The prostate centre is the centre of the zone map's bounding
box when the case has one (manifest column ``meta_zones``, as the MRI phantoms and PI-CAI-style
data with prostate segmentations do); without zones the crop is centred on the T2 volume (a
fixed-size centred crop: the prostate sits near the centre of a prostate MRI field of view).
Predictions on the crop grid go back onto the full T2 grid with `paste_back` (zero outside).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.data.manifest import Case
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.resample import resample_to
from medwss.io.volume import Volume

REFERENCE = "t2"


@dataclass
class CaseInput:
    """One case on its crop grid.

    Attributes:
        image: (C, X, Y, Z) float32, channels in the requested order, normalised.
        grid: The crop grid (array = the T2 channel, not normalised), for resampling to and from it.
        reference: The full T2 volume (the grid of the manifest's `mask` and of predictions).
        mask: (X, Y, Z) int64 ground truth on the crop grid, or None.
    """

    image: np.ndarray
    grid: Volume
    reference: Volume
    mask: np.ndarray | None = None


def zones_path(case: Case, root: Path | None) -> Path | None:
    """The zone map of a case (``meta_zones``, relative to the manifest folder), if any."""
    value = case.meta.get("zones", "")
    if not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() or root is None else root / p


def crop_grid(
    reference: Volume, zones: Volume | None, crop_mm: float, spacing_mm: float | None = None
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a crop of `crop_mm` × `crop_mm` in-plane, all slices, centred on the prostate.

    Args:
        reference: The T2 volume (orientation and slices of the crop).
        zones: Zone map on any grid (> 0 inside the prostate); None for a centred crop.
        crop_mm: In-plane side length in mm.
        spacing_mm: In-plane spacing of the crop (None: the T2 spacing).
    """
    affine = reference.affine
    sp = np.array(reference.spacing)
    if zones is not None and (zones.array > 0).any():
        idx = np.argwhere(zones.array > 0)
        centre_vox = (idx.min(0) + idx.max(0)) / 2.0
        centre = (zones.affine @ np.append(centre_vox[:3], 1.0))[:3]
    else:
        centre = (affine @ np.append((np.array(reference.shape[:3]) - 1) / 2.0, 1.0))[:3]
    new_sp = sp.copy()
    if spacing_mm is not None:
        new_sp[:2] = spacing_mm
    n = [max(1, int(round(crop_mm / s))) for s in new_sp[:2]]
    shape = (n[0], n[1], reference.shape[2])
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] / sp * new_sp  # same directions, new spacing
    centre_ref = np.linalg.inv(affine) @ np.append(centre, 1.0)  # in T2 voxels
    # first crop voxel in T2 voxels, rounded onto the T2 lattice (exact crops when the spacing is kept);
    # through-plane the crop starts at the T2's first slice
    first = np.round(centre_ref[:2] - (np.array(shape[:2]) - 1) / 2.0 * new_sp[:2] / sp[:2])
    out[:3, 3] = (affine @ np.array([first[0], first[1], 0.0, 1.0]))[:3]
    return shape, out


def normalise(channel: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Robust z-score: clip to the [low, high] percentiles, then zero mean and unit variance."""
    a = channel.astype(np.float32)
    lo, hi = np.percentile(a, [low, high])
    a = np.clip(a, lo, hi)
    sd = float(a.std())
    return ((a - a.mean()) / (sd if sd > 1e-6 else 1.0)).astype(np.float32)


def load_case(
    case: Case,
    channels: Sequence[str] = ("t2", "adc", "hbv"),
    crop_mm: float = 56.0,
    spacing_mm: float | None = 1.0,
    root: Path | None = None,
    use_zones: bool = True,
) -> CaseInput:
    """Load a case's channels onto its prostate crop grid, normalised per channel.

    Args:
        case: A manifest row with ``image_<channel>`` columns (a single ``image`` column serves as T2).
        channels: Channel names, in the order of the network input.
        crop_mm: In-plane crop size in mm.
        spacing_mm: In-plane spacing of the crop (None: the T2 spacing).
        root: Folder of the manifest (to resolve ``meta_zones``).
        use_zones: Centre on the zone map when there is one (else a centred crop).

    Raises:
        InvalidDataError: A channel is missing from the case.
    """
    images = dict(case.images)
    if "image" in images and REFERENCE not in images:
        images[REFERENCE] = images.pop("image")
    missing = [c for c in channels if c not in images]
    if missing or REFERENCE not in images:
        raise InvalidDataError(f"case {case.case_id} lacks channel(s) {', '.join(missing or [REFERENCE])}")
    reference = load_volume(images[REFERENCE])
    zp = zones_path(case, root) if use_zones else None
    zones = load_volume(zp) if zp is not None and zp.exists() else None
    shape, affine = crop_grid(reference, zones, crop_mm, spacing_mm)
    grid = Volume(np.zeros(shape, np.float32), affine, {"crop_mm": crop_mm})
    stack = []
    for name in channels:
        vol = reference if name == REFERENCE else load_volume(images[name])
        arr = vol.array if vol.array.ndim == 3 else vol.array[..., 0]
        moved = resample_to(Volume(arr.astype(np.float32), vol.affine), grid, order=1)
        stack.append(normalise(moved.array))
    grid = Volume(resample_to(Volume(reference.array.astype(np.float32), reference.affine), grid).array, affine)
    mask = None
    if case.mask is not None:
        m = load_volume(case.mask)
        mask = resample_to(Volume(m.array.astype(np.int16), m.affine), grid, order=0, fill=0).array.astype(np.int64)
    return CaseInput(np.stack(stack).astype(np.float32), grid, reference, mask)


def to_grid(labels: Volume, grid: Volume, fill: float = -1) -> np.ndarray:
    """An integer map (e.g. a scribble file, -1 unlabelled) moved onto the crop grid (nearest neighbour)."""
    arr = labels.array.astype(np.int16)
    return resample_to(Volume(arr, labels.affine), grid, order=0, fill=fill).array.astype(np.int64)


def paste_back(prob: np.ndarray, grid: Volume, reference: Volume) -> np.ndarray:
    """A (X, Y, Z) map on the crop grid resampled onto the full T2 grid; 0 outside the crop."""
    moved = resample_to(Volume(prob.astype(np.float32), grid.affine), reference, order=1, fill=0.0)
    return np.clip(moved.array, 0.0, 1.0).astype(np.float32)
