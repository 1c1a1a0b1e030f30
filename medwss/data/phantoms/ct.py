"""Synthetic abdominal CT volumes with organ, kidney tumour and kidney cyst labels.

Each scan is a slab of an abdomen drawn in world millimetres, RAS (x grows towards the patient's
right, y towards the front, z towards the head): air outside an elliptical body, a rim of
subcutaneous fat, soft tissue, a vertebra with spinous process, the liver on the right, the spleen
on the left, two kidneys in perirenal fat on either side of the spine (the right one a little
lower), and, in about half the scans, a heterogeneous kidney tumour (scan label 1). Round water-
density cysts appear in scans of either label, as the confounder they are in practice. The image
is blurred slightly (partial volume) and Gaussian noise is added; values are Hounsfield units,
int16.

`CTOptions` changes the tumour (the defaults give the original phantoms, draw for draw): its
mean attenuation and spread (an enhancing tumour, brighter than every other soft tissue, is what a
case-label learner can find; at the default 40–80 HU it matches liver and spleen) and its size.

The label map (`CT_LABELS`) is drawn on the same grid, from the same shapes, and saved with the
same affine. The field of view is fixed (144 mm cube at the default 96 × 96 × 48 voxels of
1.5 × 1.5 × 3 mm); `scale` changes the number of voxels and so the spacing.

Files per case, under the output folder::

    images/<case>.nii.gz     CT, int16 HU
    labels/<case>.nii.gz     label map, uint8 (values in `CT_LABELS`)
    labels.json              the label values, once
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
from pydantic import Field
from scipy import ndimage

from medwss.config import StrictConfig
from medwss.data.manifest import write_manifest
from medwss.data.phantoms.common import (
    add_splits,
    balanced_label,
    case_rng,
    centered_affine,
    check_kind_args,
    ellipsoid,
    parse_options,
    register_phantom,
    rotation_z,
    scaled_shape,
    site_of,
    smooth_noise,
    track,
    world_grid,
)
from medwss.io.atomic import write_json
from medwss.io.volume import Volume
from medwss.io.volumes import save_nifti

KIND = "ct"
BASE_SHAPE = (96, 96, 48)
BASE_SPACING = (1.5, 1.5, 3.0)  # mm

CT_LABELS: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "right_kidney",
    3: "left_kidney",
    4: "kidney_tumor",
    5: "kidney_cyst",
    6: "bone",
    7: "spleen",
}
"""Label map values. Body soft tissue, fat and air are background (0)."""

CT_HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft_tissue": 40.0,
    "liver": 60.0,
    "spleen": 45.0,
    "kidney": 30.0,
    "renal_sinus": -40.0,
    "cyst": 5.0,
    "tumor": 60.0,  # mean; the tumour varies within 40-80 HU
    "cortical_bone": 700.0,
    "cancellous_bone": 250.0,
}
"""Mean attenuation of each tissue, Hounsfield units."""


class CTSite(TypedDict):
    """Scanner effects of one site."""

    noise_hu: tuple[float, float]
    blur_mm: float


CT_SITES: dict[str, CTSite] = {
    "site_a": {"noise_hu": (10.0, 14.0), "blur_mm": 0.5},
    "site_b": {"noise_hu": (15.0, 20.0), "blur_mm": 0.9},
}
"""Per-site scanner effects: noise standard deviation range (HU) and in-plane blur (Gaussian sigma, mm)."""

CYST_PROBABILITY = 0.4


class CTOptions(StrictConfig):
    """The kidney tumour of the CT phantoms; the defaults give the original phantoms, draw for draw."""

    tumor_hu: float = 60.0
    """Mean attenuation of the tumour, HU (60: like liver; 120: an enhancing tumour)."""
    tumor_spread_hu: float = Field(20.0, ge=0)
    """The tumour's values lie within ``tumor_hu ± tumor_spread_hu`` (smooth heterogeneity of 0.6 × this)."""
    tumor_radius_mm: tuple[float, float] = (7.0, 14.0)
    """Radius range of the tumour, mm."""


@dataclass
class CTPhantom:
    """One synthetic CT scan and its labels.

    Attributes:
        image: int16 HU volume.
        labels: uint8 label map on the same grid (values in `CT_LABELS`).
        label: 1 iff a kidney tumour is present.
        site: Site name (a key of `CT_SITES`).
        meta: Other facts (tumour side, cyst, noise level).
    """

    image: Volume
    labels: Volume
    label: int
    site: str
    meta: dict[str, object] = field(default_factory=dict)


def _kidney(rng: np.random.Generator, side: int, z: float, spine_y: float) -> dict[str, np.ndarray]:
    """Centre, radii and rotation of a kidney; `side` is +1 (right, +x) or -1 (left)."""
    center = np.array([side * rng.uniform(30, 35), spine_y + rng.uniform(2, 7), z])
    radii = np.array([13.0, 10.5, 26.0]) * rng.uniform(0.9, 1.1, 3)
    return {"center": center, "radii": radii, "rotation": rotation_z(side * np.deg2rad(rng.uniform(15, 30)))}


def make_scan(
    seed: int,
    index: int,
    scale: float = 1.0,
    site: str = "site_a",
    label: int | None = None,
    options: CTOptions | None = None,
) -> CTPhantom:
    """Synthesise scan `index` of the run seeded by `seed` (the same whatever the other cases).

    Args:
        seed: Run seed.
        index: Case number.
        scale: Multiplies the number of voxels along each axis (the field of view stays 144 mm).
        site: Scanner site, a key of `CT_SITES`.
        label: 1 to place a kidney tumour, 0 for none; drawn with `balanced_label` if None.
        options: The tumour (`CTOptions`); None for the original phantoms.
    """
    options = options or CTOptions()
    rng = case_rng(seed, KIND, index)
    label = balanced_label(seed, KIND, index) if label is None else int(label)
    shape = scaled_shape(BASE_SHAPE, scale)
    spacing = tuple(b * s / n for b, s, n in zip(BASE_SPACING, BASE_SHAPE, shape, strict=True))
    affine = centered_affine(shape, spacing, (0.0, 0.0, 0.0))
    x, y, z = world_grid(shape, affine)
    xy = (x, y)

    hu = np.full(shape, CT_HU["air"], dtype=np.float32)
    lab = np.zeros(shape, dtype=np.uint8)

    # Body: fat rim around soft tissue.
    body_c = (0.0, rng.uniform(-3, 3))
    body_r = np.array([rng.uniform(62, 68), rng.uniform(48, 54)])
    wobble = 1 + 0.03 * np.sin(z / 25.0 + rng.uniform(0, 2 * np.pi))
    body = ellipsoid(xy, body_c, body_r) < 1 / wobble
    inner = ellipsoid(xy, body_c, body_r - rng.uniform(6, 10)) < 1 / wobble
    texture = smooth_noise(rng, shape, cell=(6, 6, 3))
    hu[body] = CT_HU["fat"]
    hu[inner] = CT_HU["soft_tissue"] + 6 * texture[inner]

    # Liver (right, upper), spleen (left, posterior), inside the inner body.
    z_kidney = rng.uniform(-15, 5)
    liver = (
        ellipsoid((x, y, z), (28, 5, z_kidney + 40), np.array([42, 38, 45]) * rng.uniform(0.9, 1.1, 3)) < 1
    ) & inner
    spleen_c = (-40 + rng.uniform(-3, 3), -10 + rng.uniform(-3, 3), z_kidney + 35)
    spleen = (ellipsoid((x, y, z), spleen_c, (14, 20, 28), rotation_z(np.deg2rad(-30))) < 1) & inner
    hu[liver] = CT_HU["liver"] + 5 * texture[liver]
    lab[liver] = 1
    hu[spleen] = CT_HU["spleen"] + 4 * texture[spleen]
    lab[spleen] = 7

    # Kidneys in perirenal fat, renal sinus (fat) at the medial hilum; the right one lower.
    spine_y = body_c[1] - body_r[1] + rng.uniform(20, 24)
    kidneys = {
        2: _kidney(rng, +1, z_kidney - rng.uniform(6, 12), spine_y),
        3: _kidney(rng, -1, z_kidney, spine_y),
    }
    kidney_masks = {}
    for value, k in kidneys.items():
        r = ellipsoid((x, y, z), k["center"], k["radii"], k["rotation"])
        fat = (r < 1.35) & inner & (lab == 0)
        hu[fat] = CT_HU["fat"] + 8 * texture[fat]
        lab[fat] = 0
        hilum = k["center"] - np.sign(k["center"][0]) * np.array([k["radii"][0] * 0.8, -2.0, 0.0])
        sinus = ellipsoid((x, y, z), hilum, k["radii"] * np.array([0.45, 0.4, 0.45])) < 1
        kidney = (r < 1) & ~sinus
        hu[(r < 1) & sinus] = CT_HU["renal_sinus"]
        lab[(r < 1) & sinus] = 0
        hu[kidney] = CT_HU["kidney"] + 4 * texture[kidney]
        lab[kidney] = value
        kidney_masks[value] = kidney

    # Vertebra (cortical rim, cancellous core, discs) and spinous process.
    disc = ((z - rng.uniform(0, 30)) % 30) > 25
    vert_r = ellipsoid(xy, (0.0, spine_y), (12.0, 10.5))
    process = ellipsoid(xy, (0.0, spine_y - 16.0), (3.5, 8.0)) < 1
    bone = ((vert_r < 1) | process) & ~disc
    hu[bone] = CT_HU["cancellous_bone"] + 40 * texture[bone]
    cortex = bone & ((vert_r > 0.8) | process)
    hu[cortex] = CT_HU["cortical_bone"]
    hu[(vert_r < 1) & disc] = 80.0
    lab[bone] = 6

    meta: dict[str, object] = {"tumor_side": "", "cyst": 0}
    sides = {2: "right", 3: "left"}

    # Cyst: round, water density, in either kidney, in scans of either label.
    cyst_kidney = None
    if rng.random() < CYST_PROBABILITY:
        cyst_kidney = int(rng.choice([2, 3]))
        k = kidneys[cyst_kidney]
        offset = k["rotation"] @ (k["radii"] * rng.uniform(-0.5, 0.5, 3))
        radius = rng.uniform(4.5, 9.0)
        cyst = (ellipsoid((x, y, z), k["center"] + offset, (radius,) * 3) < 1) & ~bone & inner
        hu[cyst] = CT_HU["cyst"]
        lab[cyst] = 5
        meta["cyst"] = int(cyst.any())

    # Tumour: irregular, heterogeneous 40-80 HU, centred near the surface of one kidney.
    if label:
        side = int(rng.choice([2, 3])) if cyst_kidney is None else (5 - cyst_kidney)  # the other kidney
        k = kidneys[side]
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        center = k["center"] + k["rotation"] @ (k["radii"] * direction * rng.uniform(0.3, 0.7))
        radius = rng.uniform(*options.tumor_radius_mm)
        r = ellipsoid((x, y, z), center, radius * rng.uniform(0.8, 1.2, 3), rotation_z(rng.uniform(0, np.pi)))
        r = r * (1 + 0.12 * smooth_noise(rng, shape, cell=(3, 3, 2)))
        tumor = (r < 1) & ~bone & inner
        if not tumor.any():  # coarse grids: keep at least the voxel nearest the centre
            tumor.flat[np.argmin(r)] = True
        hetero = smooth_noise(rng, shape, cell=(2, 2, 1.5))
        mean, spread = options.tumor_hu, options.tumor_spread_hu
        hu[tumor] = np.clip(mean + 0.6 * spread * hetero[tumor], mean - spread, mean + spread)
        lab[tumor] = 4
        meta["tumor_side"] = sides[side]
        meta["tumor_volume_ml"] = round(float(tumor.sum()) * float(np.prod(spacing)) / 1000, 2)

    # Scanner: partial-volume blur and noise.
    settings = CT_SITES[site]
    blur_mm = settings["blur_mm"]
    hu = ndimage.gaussian_filter(hu, sigma=(blur_mm / spacing[0], blur_mm / spacing[1], 0.3))
    noise_hu = float(rng.uniform(*settings["noise_hu"]))
    hu += noise_hu * rng.standard_normal(shape, dtype=np.float32)
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    meta["noise_hu"] = round(noise_hu, 2)
    metadata = {"modality": "CT", "phantom": "ct", "seed": seed, "index": index}
    return CTPhantom(Volume(image, affine, metadata), Volume(lab, affine.copy(), dict(metadata)), label, site, meta)


@register_phantom("ct")
def generate_ct(
    out: str | Path,
    n: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
    sites: Sequence[str] = ("site_a", "site_b"),
    options: CTOptions | dict[str, object] | None = None,
) -> Path:
    """Write `n` synthetic CT scans with label maps, and ``out/manifest.csv``.

    Manifest columns: case_id, patient_id, site, modality (``CT``), image, label, mask (label map),
    split, meta_tumor_side, meta_tumor_volume_ml, meta_cyst, meta_noise_hu.

    Args:
        out: Output folder.
        n: Number of scans (one patient each).
        seed: Run seed.
        scale: Multiplies the number of voxels along each axis.
        progress: Show a progress bar.
        sites: Sites taken in turn (keys of `CT_SITES`).
        options: The tumour (`CTOptions` or its fields as a dict); None for the original phantoms.

    Returns:
        Path of the manifest.
    """
    check_kind_args(n, seed, scale)
    opts = parse_options(CTOptions, options)
    out = Path(out)
    write_json(out / "labels.json", {str(k): v for k, v in CT_LABELS.items()}, indent=1)
    rows: list[dict[str, object]] = []
    for i in track(range(n), total=n, desc="phantom ct", enabled=progress):
        case_id = f"ct_{i:03d}"
        site = site_of(i, sites)
        scan = make_scan(seed, i, scale, site=site, options=opts)
        image = save_nifti(scan.image, out / "images" / f"{case_id}.nii.gz")
        mask = save_nifti(scan.labels, out / "labels" / f"{case_id}.nii.gz")
        rows.append(
            {
                "case_id": case_id,
                "patient_id": f"ct_patient_{i:03d}",
                "site": site,
                "modality": "CT",
                "image": Path(image),
                "label": scan.label,
                "mask": Path(mask),
                "meta_tumor_volume_ml": scan.meta.get("tumor_volume_ml", 0.0),
                **{f"meta_{k}": v for k, v in scan.meta.items()},
            }
        )
    add_splits(rows, seed)
    return write_manifest(rows, out / "manifest.csv")
