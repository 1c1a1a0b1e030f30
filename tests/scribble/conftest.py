"""Shared by the scribble tests: a tiny multi-site bi-parametric MRI phantom manifest and a 4-class toy heart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mri_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six cases (two per site, one with a lesion each) at scale 0.5."""
    from medwss.data.phantoms import generate

    return generate("mri", tmp_path_factory.mktemp("mri"), n=6, seed=0, scale=0.5, progress=False)


SHAPE = (40, 48, 4)
INPUT = {"sequences": ("image",), "crop_mm": None, "spacing_mm": None, "use_zones": False, "num_classes": 4}
TINY = {"channels": (4, 8), "epochs": 1, "batch_size": 4, "augment": False, "oversample": 1, "device": "cpu"}


def _heart(rng: np.random.Generator, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """A cine-like toy: LV disc (3) in a myocardium ring (2), an RV crescent (1) beside; 4 slices, the last empty."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    label = np.zeros(SHAPE, np.int16)
    for z in range(3):
        r = (yy - 20 - shift) ** 2 + (xx - 26) ** 2
        label[..., z][r <= 64] = 2
        label[..., z][r <= 25] = 3
        label[..., z][((yy - 20 - shift) ** 2 + (xx - 14) ** 2 <= 36) & (label[..., z] == 0)] = 1
    image = 100.0 * label + rng.normal(0, 10, SHAPE)
    return image.astype(np.float32), label


@pytest.fixture(scope="module")
def heart(tmp_path_factory):
    """Six cases (train 4, val 1, test 1) with an image, a 4-class mask and a scribble file."""
    from medwss.data.manifest import load_manifest, write_manifest
    from medwss.data.weak import make_weak_label
    from medwss.io import save_nifti

    tmp = tmp_path_factory.mktemp("heart")
    rng = np.random.default_rng(0)
    rows = []
    for i, split in enumerate(["train"] * 4 + ["val", "test"]):
        image, label = _heart(rng, i - 2)
        cid = f"h{i}"
        save_nifti(image, tmp / f"{cid}_image.nii.gz", np.eye(4))
        save_nifti(label, tmp / f"{cid}_label.nii.gz", np.eye(4))
        weak = make_weak_label(label, "skeleton", i)
        save_nifti(weak.astype(np.int16), tmp / f"{cid}_scribble.nii.gz", np.eye(4))
        rows.append({"case_id": cid, "patient_id": cid, "site": "s", "modality": "MR", "split": split,
                     "image": tmp / f"{cid}_image.nii.gz", "mask": tmp / f"{cid}_label.nii.gz",
                     "scribble": tmp / f"{cid}_scribble.nii.gz"})  # fmt: skip
    return load_manifest(write_manifest(rows, tmp / "manifest.csv"))
