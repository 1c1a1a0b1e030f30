"""Synthetic bi-parametric prostate MRI (T2, ADC, high-b DWI) from several sites, with zones and lesions.

The anatomy of a case is drawn once in world millimetres (RAS): pelvic muscle and fat, the
bladder above, the rectum behind, the prostate with its peripheral zone (posterior crescent,
bright on T2) and transition zone (anterior, darker and nodular), and, in about half the cases, a
lesion (low T2, low ADC, high DWI signal; 70% in the peripheral zone). Each channel rasterises
that anatomy onto its own grid: T2 at fine in-plane resolution, ADC and high-b (``hbv``) at coarser
resolution with partial-volume averaging, all grids centred on the same world point, so the
channels overlap in world space but differ in shape and affine (as in PI-CAI).

Sites (`MRI_SITES`) differ in scanner effects: resolution, intensity scale, multiplicative bias
field, Rician noise level, contrast and gamma of the T2 weighting, ADC calibration.

Files per case, under the output folder::

    images/<case>_t2w.nii.gz    T2-weighted, int16
    images/<case>_adc.nii.gz    ADC map, int16, 10⁻⁶ mm²/s
    images/<case>_hbv.nii.gz    high-b DWI, int16
    labels/<case>_lesion.nii.gz lesion mask on the T2 grid, uint8 0/1
    labels/<case>_zones.nii.gz  zone map on the T2 grid, uint8 (values in `MRI_ZONES`)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from scipy import ndimage

from medwss.data.manifest import write_manifest
from medwss.data.phantoms.common import (
    add_splits,
    balanced_label,
    case_rng,
    centered_affine,
    check_kind_args,
    ellipsoid,
    register_phantom,
    rotation_z,
    site_of,
    smooth_noise,
    track,
    world_grid,
)
from medwss.io.volume import Volume
from medwss.io.volumes import save_nifti

KIND = "mri"
FIELD_OF_VIEW = (64.0, 64.0, 60.0)  # mm, every channel
CHANNELS = ("t2", "adc", "hbv")


class MRISite(TypedDict):
    """Scanner effects of one site (see ``MRI_SITES["site_a"]`` for the meaning of each entry)."""

    t2_spacing: tuple[float, float, float]
    dwi_spacing: tuple[float, float, float]
    scale: float
    bias: float
    noise: float
    contrast: float
    gamma: float
    adc_factor: float


MRI_SITES: dict[str, MRISite] = {
    "site_a": {
        "t2_spacing": (0.5, 0.5, 3.0),  # mm; T2 grid 128 × 128 × 20
        "dwi_spacing": (2.0, 2.0, 3.0),  # mm; ADC and hbv grids 32 × 32 × 20
        "scale": 1000.0,  # intensity of a T2/DWI weight of 1
        "bias": 0.10,  # amplitude of the multiplicative bias field
        "noise": 0.02,  # Rician noise sigma, relative to `scale`
        "contrast": 1.0,  # T2 contrast stretch about mid-grey
        "gamma": 1.0,  # T2 gamma
        "adc_factor": 1.0,  # ADC calibration
    },
    "site_b": {
        "t2_spacing": (0.625, 0.625, 3.0),  # 102 × 102 × 20
        "dwi_spacing": (2.0, 2.0, 3.0),
        "scale": 600.0,
        "bias": 0.30,
        "noise": 0.05,
        "contrast": 0.85,
        "gamma": 0.8,
        "adc_factor": 0.93,
    },
    "site_c": {
        "t2_spacing": (0.4, 0.4, 3.6),  # 160 × 160 × 17
        "dwi_spacing": (2.5, 2.5, 3.6),  # 26 × 26 × 17
        "scale": 1500.0,
        "bias": 0.20,
        "noise": 0.03,
        "contrast": 1.15,
        "gamma": 1.25,
        "adc_factor": 1.07,
    },
}
"""Per-site scanner effects (see the comments of ``site_a`` for the meaning of each entry)."""

MRI_ZONES: dict[int, str] = {0: "outside", 1: "peripheral_zone", 2: "transition_zone"}
"""Zone map values."""

TISSUES: dict[str, tuple[float, float, float, float]] = {
    # name: (T2 weight, ADC 10⁻⁶ mm²/s, high-b DWI weight, T2 texture amplitude)
    "muscle": (0.30, 1400.0, 0.15, 0.05),
    "fat": (0.85, 400.0, 0.05, 0.05),
    "urine": (1.00, 3000.0, 0.03, 0.01),
    "rectal_wall": (0.32, 1200.0, 0.25, 0.05),
    "gas": (0.03, 0.0, 0.01, 0.0),
    "pz": (0.75, 1700.0, 0.25, 0.07),
    "tz": (0.45, 1250.0, 0.30, 0.18),
    "lesion": (0.25, 800.0, 0.85, 0.06),
}
"""Tissue properties before scanner effects."""

LESION_PZ_PROBABILITY = 0.7


@dataclass
class MRIPhantom:
    """One synthetic bi-parametric MRI case.

    Attributes:
        channels: ``t2``, ``adc``, ``hbv`` volumes (each on its own grid).
        lesion: uint8 lesion mask on the T2 grid.
        zones: uint8 zone map on the T2 grid (values in `MRI_ZONES`).
        label: 1 iff a lesion is present.
        site: Site name (a key of `MRI_SITES`).
        meta: Other facts (lesion zone and volume).
    """

    channels: dict[str, Volume]
    lesion: Volume
    zones: Volume
    label: int
    site: str
    meta: dict[str, object] = field(default_factory=dict)


@dataclass
class _Anatomy:
    center: np.ndarray  # prostate centre, mm
    radii: np.ndarray  # prostate semi-axes
    rotation: np.ndarray
    tz_center: np.ndarray
    tz_radii: np.ndarray
    rectum: tuple[float, float, float]  # x, y of the axis, radius
    bladder_center: np.ndarray
    bladder_radii: np.ndarray
    texture: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    fat: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    lesion: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # centre, radii, rotation


def _world_field(
    rng: np.random.Generator, center: np.ndarray, half_extent: float, cell_mm: float, spacing_mm: float = 1.0
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random field defined in world space (unit std), sampled trilinearly at any points."""
    n = int(np.ceil(2 * half_extent / spacing_mm)) + 1
    values = smooth_noise(rng, (n, n, n), cell=cell_mm / spacing_mm)
    origin = np.asarray(center, dtype=np.float64) - half_extent

    def sample(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        idx = [(c - o) / spacing_mm for c, o in zip((x, y, z), origin, strict=True)]
        return ndimage.map_coordinates(values, idx, order=1, mode="nearest").astype(np.float32)

    return sample


def _anatomy(rng: np.random.Generator, center: np.ndarray) -> _Anatomy:
    c = center + rng.normal(0, 2.0, 3)
    radii = np.array([rng.uniform(19, 23), rng.uniform(13, 16), rng.uniform(15, 19)])
    rotation = rotation_z(np.deg2rad(rng.uniform(-8, 8)))
    tz_center = c + rotation @ np.array([0.0, 0.3 * radii[1], 0.1 * radii[2]])
    tz_radii = radii * np.array([rng.uniform(0.55, 0.68), 0.7, 0.7])
    rectum_r = rng.uniform(8, 10)
    rectum = (float(c[0] + rng.uniform(-2, 2)), float(c[1] - radii[1] - rectum_r - rng.uniform(1.5, 3)), rectum_r)
    bladder_c = c + np.array([0.0, 4.0, radii[2] + rng.uniform(12, 18)])
    bladder_r = np.array([rng.uniform(24, 30), rng.uniform(18, 24), rng.uniform(14, 18)])
    return _Anatomy(
        c,
        radii,
        rotation,
        tz_center,
        tz_radii,
        rectum,
        bladder_c,
        bladder_r,
        texture=_world_field(rng, center, 45.0, cell_mm=2.5),
        fat=_world_field(rng, center, 45.0, cell_mm=10.0, spacing_mm=2.0),
    )


def _regions(a: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the anatomy at points (x, y, z), painted in order (later wins)."""
    r_prostate = ellipsoid((x, y, z), a.center, a.radii, a.rotation)
    prostate = r_prostate < 1
    tz = prostate & (ellipsoid((x, y, z), a.tz_center, a.tz_radii, a.rotation) < 1)
    rx, ry, rr = a.rectum
    r_rect = np.hypot(x - rx, y - ry)
    out = {
        "fat": (a.fat(x, y, z) > 0.5) | (r_prostate < 1 + 5.0 / float(a.radii.min())),
        "urine": ellipsoid((x, y, z), a.bladder_center, a.bladder_radii) < 1,
        "rectal_wall": r_rect < rr,
        "gas": r_rect < rr - 3.0,
        "pz": prostate & ~tz,
        "tz": tz,
    }
    if a.lesion is not None:
        center, radii, rotation = a.lesion
        out["lesion"] = prostate & (ellipsoid((x, y, z), center, radii, rotation) < 1)
    return out


def _tissue_maps(a: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """T2 weight, ADC and DWI weight at points (x, y, z), before scanner effects."""
    regions = _regions(a, x, y, z)
    texture = a.texture(x, y, z)
    t2, adc, dwi, amp = (np.full(x.shape, v, dtype=np.float32) for v in TISSUES["muscle"])
    for name, where in regions.items():
        v = TISSUES[name]
        for arr, value in zip((t2, adc, dwi, amp), v, strict=True):
            arr[where] = value
    t2 *= 1 + amp * texture
    adc *= 1 + 0.5 * amp * texture
    dwi *= 1 + amp * texture
    return t2, adc, dwi


def _render(a: _Anatomy, shape: tuple[int, ...], affine: np.ndarray, supersample: int) -> tuple[np.ndarray, ...]:
    """Tissue maps on a grid, averaged over ``supersample²`` in-plane points per voxel (partial volume)."""
    sums = [np.zeros(shape, dtype=np.float32) for _ in range(3)]
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for di in offsets:
        for dj in offsets:
            shifted = affine.copy()
            shifted[:3, 3] = affine[:3, :3] @ np.array([di, dj, 0.0]) + affine[:3, 3]
            for s, m in zip(sums, _tissue_maps(a, *world_grid(shape, shifted)), strict=True):
                s += m
    return tuple(s / supersample**2 for s in sums)


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.hypot(real, imag)


def _grid_shape(spacing: Sequence[float], scale: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    sp = tuple(float(s) / scale for s in spacing)
    shape = tuple(max(4, int(round(f / s))) for f, s in zip(FIELD_OF_VIEW, sp, strict=True))
    return shape, sp


def _place_lesion(rng: np.random.Generator, a: _Anatomy, t2_affine: np.ndarray, t2_shape: tuple[int, ...]) -> str:
    """Put a lesion into `a` (in the PZ or TZ) that covers at least one T2 voxel; return its zone."""
    zone = "pz" if rng.random() < LESION_PZ_PROBABILITY else "tz"
    slice_mm = float(np.linalg.norm(t2_affine[:3, 2]))
    for _ in range(200):
        u = rng.normal(size=3)
        u *= rng.uniform(0, 0.85) / np.linalg.norm(u)
        point = a.center + a.rotation @ (a.radii * u)
        regions = _regions(a, *(np.array([v], dtype=np.float32) for v in point))
        if not regions[zone][0]:
            continue
        radii = rng.uniform(3.5, 7.0) * rng.uniform(0.8, 1.2, 3)
        radii[2] = max(radii[2], 0.6 * slice_mm)
        a.lesion = (point, radii, rotation_z(rng.uniform(0, np.pi)))
        if _regions(a, *world_grid(t2_shape, t2_affine))["lesion"].any():
            return zone
    a.lesion = None
    raise RuntimeError("could not place a lesion")  # pragma: no cover - 200 tries always succeed


def make_case(seed: int, index: int, scale: float = 1.0, site: str = "site_a", label: int | None = None) -> MRIPhantom:
    """Synthesise case `index` of the run seeded by `seed` (the same whatever the other cases).

    Args:
        seed: Run seed.
        index: Case number.
        scale: Multiplies the number of voxels of every grid along each axis (field of view fixed).
        site: Scanner site, a key of `MRI_SITES`.
        label: 1 to place a lesion, 0 for none; drawn with `balanced_label` if None.
    """
    rng = case_rng(seed, KIND, index)
    label = balanced_label(seed, KIND, index) if label is None else int(label)
    settings = MRI_SITES[site]
    center = rng.uniform(-20, 20, 3)  # table position of the field of view, mm
    anatomy = _anatomy(rng, center)
    t2_shape, t2_sp = _grid_shape(settings["t2_spacing"], scale)
    dwi_shape, dwi_sp = _grid_shape(settings["dwi_spacing"], scale)
    t2_affine = centered_affine(t2_shape, t2_sp, center)
    dwi_affine = centered_affine(dwi_shape, dwi_sp, center)
    meta: dict[str, object] = {"lesion_zone": "", "lesion_volume_ml": 0.0}
    if label:
        meta["lesion_zone"] = _place_lesion(rng, anatomy, t2_affine, t2_shape)

    # Ground truth on the T2 grid, from the shapes at voxel centres.
    regions = _regions(anatomy, *world_grid(t2_shape, t2_affine))
    zones = np.zeros(t2_shape, dtype=np.uint8)
    zones[regions["pz"]] = 1
    zones[regions["tz"]] = 2
    lesion = regions.get("lesion", np.zeros(t2_shape, dtype=bool)).astype(np.uint8)
    meta["lesion_volume_ml"] = round(float(lesion.sum()) * float(np.prod(t2_sp)) / 1000, 3)

    # Images: tissue maps, then scanner effects of the site.
    scale_i, noise = settings["scale"], settings["noise"]
    bias_field = _world_field(rng, center, 45.0, cell_mm=40.0, spacing_mm=4.0)
    t2w, _, _ = _render(anatomy, t2_shape, t2_affine, 1)
    _, adc, dwi = _render(anatomy, dwi_shape, dwi_affine, max(1, int(round(dwi_sp[0] / t2_sp[0]))))
    contrast, gamma = settings["contrast"], settings["gamma"]
    t2w = np.clip(0.5 + contrast * (t2w - 0.5), 0.01, None) ** gamma
    t2w *= 1 + settings["bias"] * bias_field(*world_grid(t2_shape, t2_affine))
    t2w = _rician(rng, scale_i * t2w, noise * scale_i)
    dwi *= 1 + settings["bias"] * bias_field(*world_grid(dwi_shape, dwi_affine))
    dwi = _rician(rng, 0.6 * scale_i * dwi, 2.5 * noise * 0.6 * scale_i)
    adc = adc * settings["adc_factor"] + noise * 1500.0 * rng.standard_normal(dwi_shape, dtype=np.float32)

    def to_int16(a: np.ndarray) -> np.ndarray:
        return np.clip(np.round(a), 0, 32767).astype(np.int16)

    metadata = {"modality": "MR", "phantom": "mri", "seed": seed, "index": index, "site": site}
    channels = {
        "t2": Volume(to_int16(t2w), t2_affine, {**metadata, "channel": "t2"}),
        "adc": Volume(to_int16(adc), dwi_affine, {**metadata, "channel": "adc", "unit": "1e-6 mm2/s"}),
        "hbv": Volume(to_int16(dwi), dwi_affine.copy(), {**metadata, "channel": "hbv"}),
    }
    return MRIPhantom(
        channels,
        Volume(lesion, t2_affine.copy(), dict(metadata)),
        Volume(zones, t2_affine.copy(), dict(metadata)),
        label,
        site,
        meta,
    )


@register_phantom("mri")
def generate_mri(
    out: str | Path,
    n: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
    sites: Sequence[str] = ("site_a", "site_b", "site_c"),
) -> Path:
    """Write `n` synthetic bi-parametric prostate MRI cases and ``out/manifest.csv``.

    Manifest columns: case_id, patient_id, site, modality (``MR``), image_t2, image_adc,
    image_hbv, label, mask (lesion mask on the T2 grid), split, meta_zones (zone map),
    meta_lesion_zone, meta_lesion_volume_ml.

    Args:
        out: Output folder.
        n: Number of cases (one patient each).
        seed: Run seed.
        scale: Multiplies the number of voxels along each axis.
        progress: Show a progress bar.
        sites: Sites taken in turn (keys of `MRI_SITES`).

    Returns:
        Path of the manifest.
    """
    check_kind_args(n, seed, scale)
    out = Path(out)
    rows: list[dict[str, object]] = []
    for i in track(range(n), total=n, desc="phantom mri", enabled=progress):
        case_id = f"mri_{i:03d}"
        site = site_of(i, sites)
        case = make_case(seed, i, scale, site=site)
        names = {"t2": "t2w", "adc": "adc", "hbv": "hbv"}
        images = {
            f"image_{c}": Path(save_nifti(v, out / "images" / f"{case_id}_{names[c]}.nii.gz"))
            for c, v in case.channels.items()
        }
        mask = save_nifti(case.lesion, out / "labels" / f"{case_id}_lesion.nii.gz")
        zones = save_nifti(case.zones, out / "labels" / f"{case_id}_zones.nii.gz")
        rows.append(
            {
                "case_id": case_id,
                "patient_id": f"mri_patient_{i:03d}",
                "site": site,
                "modality": "MR",
                **images,
                "label": case.label,
                "mask": Path(mask),
                "meta_zones": Path(zones),
                **{f"meta_{k}": v for k, v in case.meta.items()},
            }
        )
    add_splits(rows, seed)
    return write_manifest(rows, out / "manifest.csv")
