"""Synthetic kidney tumours inserted into a real CT (the COIN paper's synthetic setting).

The kidney slices of one real CT are cut out once (`load_kidney_source`); every sample then takes
one of them, augments it (flip, small rotation and shift, intensity jitter, noise) and, for an
abnormal sample, adds a blob of random size, star-shaped outline and contrast centred inside a
kidney. The same couple of dozen slices give thousands of different samples; the blob mask is the
ground truth. `write_kidney_cases` does the same in 3D and writes NIfTI volumes and a manifest, so
the command-line tools run on these data too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from medwss.counterfactual.slices import SliceSet, SliceSpec, volume_slices
from medwss.data.labels import label_spec
from medwss.io.volume import Volume

KIDNEY_TUMOUR = label_spec("kidney_tumour")
"""Labels of the written cases: kidney = 2, 3 (as in the example organ map), tumour = 4."""


@dataclass
class KidneySource:
    """Kidney slices of one CT. ``images`` (n, S, S) in [-1, 1]; ``kidneys`` (n, S, S) bool."""

    images: np.ndarray
    kidneys: np.ndarray


@dataclass(frozen=True)
class BlobSettings:
    """Ranges the blobs are drawn from (pixels of the output grid; contrast in [-1, 1] units)."""

    radius: tuple[float, float] = (2.5, 7.0)
    wobble: float = 0.25
    contrast: tuple[float, float] = (0.25, 0.6)
    bright_fraction: float = 0.5


def load_kidney_source(image: Volume, labels: Volume, spec: SliceSpec) -> KidneySource:
    """Cut the organ slices (class ``spec.roi`` of the spec's labels) and their organ masks out of a CT."""
    if spec.roi is None:
        raise ValueError("load_kidney_source needs a spec with an organ (roi) class")
    s, _ = volume_slices(image, labels, replace(spec, lesion=spec.roi))
    return KidneySource(s.images[:, 0], s.masks)


def blob_alpha(rng: np.random.Generator, shape: tuple[int, int], center: np.ndarray, cfg: BlobSettings) -> np.ndarray:
    """A soft star-shaped blob in [0, 1]: radius ``R (1 + Σ a_k cos(kθ + φ_k))``, edge about one pixel wide."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    theta, dist = np.arctan2(dy, dx), np.hypot(dy, dx)
    r0 = rng.uniform(*cfg.radius)
    stretch = rng.uniform(0.7, 1.0)
    turn = rng.uniform(0, np.pi)
    radius = r0 * (
        1
        + sum(
            rng.uniform(-cfg.wobble, cfg.wobble) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
        )
    )
    radius *= 1 / np.sqrt((np.cos(theta - turn) ** 2) + (np.sin(theta - turn) / stretch) ** 2)
    return np.clip(radius - dist + 0.5, 0, 1).astype(np.float32)


def _augment(rng: np.random.Generator, image: np.ndarray, kidney: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.5:
        image, kidney = image[:, ::-1], kidney[:, ::-1]
    angle = np.deg2rad(rng.uniform(-10, 10))
    shift = rng.uniform(-3, 3, 2)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    centre = (np.array(image.shape) - 1) / 2
    offset = centre - rot @ centre + shift
    img = ndimage.affine_transform(image, rot, offset, order=1, mode="nearest")
    kid = ndimage.affine_transform(kidney.astype(np.float32), rot, offset, order=1) >= 0.5
    gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-0.05, 0.05)
    return (img * gain + bias).astype(np.float32), kid


def synth_sample(
    rng: np.random.Generator, src: KidneySource, abnormal: bool, cfg: BlobSettings = BlobSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented kidney slice (S, S) in [-1, 1] and its tumour mask (S, S) bool (empty when normal)."""
    k = int(rng.integers(len(src.images)))
    img, kid = _augment(rng, src.images[k], src.kidneys[k])
    mask = np.zeros(img.shape, bool)
    if abnormal:
        inner = ndimage.binary_erosion(kid, iterations=2)
        pts = np.argwhere(inner if inner.sum() >= 4 else kid)
        if len(pts) == 0:
            pts = np.argwhere(np.ones_like(kid))
        centre = pts[rng.integers(len(pts))].astype(np.float32) + rng.uniform(-0.5, 0.5, 2)
        alpha = blob_alpha(rng, img.shape, centre, cfg)
        sign = 1.0 if rng.random() < cfg.bright_fraction else -1.0
        texture = 1 + 0.25 * ndimage.gaussian_filter(rng.standard_normal(img.shape), 1.0)
        img = img + sign * rng.uniform(*cfg.contrast) * alpha * texture.astype(np.float32)
        mask = alpha >= 0.5
    img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape).astype(np.float32)
    return np.clip(img, -1, 1).astype(np.float32), mask


def make_kidney_slices(
    src: KidneySource, n: int, seed: int, abnormal_fraction: float = 0.5, cfg: BlobSettings = BlobSettings()
) -> SliceSet:
    """`n` samples, a share `abnormal_fraction` with a tumour; every sample drawn from `seed` alone."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < abnormal_fraction).astype(np.int64)
    ims, masks = zip(*(synth_sample(rng, src, bool(lab), cfg) for lab in labels), strict=True)
    return SliceSet(np.stack(ims)[:, None], np.stack(masks), labels, [f"synth_{seed}"] * n, np.arange(n))


def write_kidney_cases(image: Volume, organs: Volume, out: str | Path, n: int, seed: int) -> Path:
    """Write `n` copies of a CT, about half with 3D tumours in a kidney, and a manifest.

    Each copy gets its own noise, intensity jitter and (when abnormal) one ellipsoidal-star tumour of
    radius 6–15 mm and contrast ±40–100 HU. The mask (int16 label map) keeps the kidney labels (2, 3)
    and adds the tumour (4): the labels of `KIDNEY_TUMOUR`, the default `SliceSpec`.
    """
    from medwss.data.labels import save_label_map
    from medwss.data.manifest import write_manifest
    from medwss.io.volumes import save_nifti

    out = Path(out)
    rng = np.random.default_rng(seed)
    lab = np.rint(organs.array).astype(np.int16)
    kid = KIDNEY_TUMOUR.mask(lab, "kidney")
    tumour = KIDNEY_TUMOUR.values("tumour")[0]
    spacing = np.array(image.spacing)
    rows = []
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in lab.shape], indexing="ij"), -1).astype(np.float32)
    for i in range(n):
        hu = image.array.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.uniform(-15, 15)
        new = np.where(kid, lab, 0).astype(np.int16)
        abnormal = i % 2 == 1
        if abnormal:
            pts = np.argwhere(ndimage.binary_erosion(kid, iterations=1))
            centre = pts[rng.integers(len(pts))]
            d = (grid - centre) * spacing
            dist = np.linalg.norm(d, axis=-1)
            theta = np.arctan2(d[..., 1], d[..., 0])
            r = rng.uniform(6, 15) * (1 + 0.15 * np.cos(3 * theta + rng.uniform(0, 6.28)))
            alpha = np.clip(r - dist + 0.5, 0, 1)
            hu += rng.choice([-1, 1]) * rng.uniform(40, 100) * alpha
            new[alpha >= 0.5] = tumour
        hu += rng.normal(0, 8, hu.shape)
        cid = f"kidney_{i:03d}"
        ip = save_nifti(image.with_array(hu.astype(np.float32)), out / "images" / f"{cid}.nii.gz")
        mp = save_label_map(new, out / "labels" / f"{cid}.nii.gz", organs.affine)
        split = "train" if i < int(0.6 * n) else ("val" if i < int(0.8 * n) else "test")
        rows.append(
            {
                "case_id": cid,
                "patient_id": cid,
                "site": "real_ct",
                "modality": "CT",
                "image": ip,
                "label": int(abnormal),
                "mask": mp,
                "split": split,
            }
        )
    return write_manifest(rows, out / "manifest.csv")
