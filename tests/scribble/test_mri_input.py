"""Multi-parametric input: channels on one prostate crop, normalised, and predictions pasted back."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.manifest import load_manifest
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.volume import Volume
from medwss.scribble.mri_input import crop_grid, load_case, paste_back, to_grid, zones_path
from medwss.transforms.intensity import normalise


def test_channels_on_one_crop_around_the_prostate(mri_manifest):
    m = load_manifest(mri_manifest)
    for case in m.cases:
        ci = load_case(case, crop_mm=56.0, spacing_mm=1.0, root=m.path.parent)
        t2 = load_volume(case.images["t2"])
        assert ci.image.shape == (3, 56, 56, t2.shape[2]) and ci.image.dtype == np.float32
        assert np.allclose(ci.grid.spacing[:2], 1.0) and np.isclose(ci.grid.spacing[2], t2.spacing[2])
        np.testing.assert_allclose(ci.image.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
        np.testing.assert_allclose(ci.image.std(axis=(1, 2, 3)), 1.0, atol=1e-3)
        zones = load_volume(zones_path(case, m.path.parent))
        inside = to_grid(zones, ci.grid, fill=0) > 0
        mm2 = float(np.prod(zones.spacing))  # the whole prostate lies in the crop (same volume in mm³)
        assert (
            abs(inside.sum() * np.prod(ci.grid.spacing) - (zones.array > 0).sum() * mm2)
            < 0.02 * (zones.array > 0).sum() * mm2
        )


def test_paste_back_restores_the_mask_on_the_t2_grid(mri_manifest):
    m = load_manifest(mri_manifest)
    case = next(c for c in m.cases if c.site == "site_a" and c.label == 1)  # T2 spacing 1 mm at scale 0.5
    ci = load_case(case, crop_mm=56.0, spacing_mm=1.0, root=m.path.parent)
    back = paste_back(ci.mask.astype(np.float32), ci.grid, ci.reference)
    gt = load_volume(case.mask).array
    assert back.shape == gt.shape and back.dtype == np.float32
    np.testing.assert_array_equal(back > 0.5, gt > 0)  # same spacing: the crop is exact


def test_centred_crop_without_zones_and_keep_spacing(mri_manifest):
    m = load_manifest(mri_manifest)
    case = next(c for c in m.cases if c.site == "site_b")
    ci = load_case(case, crop_mm=40.0, spacing_mm=None, root=m.path.parent, use_zones=False)
    t2 = load_volume(case.images["t2"])
    assert ci.image.shape[1:3] == (32, 32)  # 40 mm at 1.25 mm
    centre_grid = ci.grid.affine @ np.array([15.5, 15.5, 0, 1.0])
    centre_t2 = t2.affine @ np.array([(t2.shape[0] - 1) / 2, (t2.shape[1] - 1) / 2, 0, 1.0])
    assert np.abs(centre_grid[:3] - centre_t2[:3]).max() <= 1.25


def test_crop_grid_spacing_and_shape():
    ref = Volume(np.zeros((100, 80, 5), np.float32), np.diag([0.5, 0.5, 3.0, 1.0]))
    zones = Volume(np.zeros((100, 80, 5), np.uint8), ref.affine)
    zones.array[40:60, 30:50, 1:4] = 1
    shape, affine = crop_grid(ref, zones, crop_mm=20.0, spacing_mm=1.0)
    assert shape == (20, 20, 5)
    np.testing.assert_allclose(np.diag(affine)[:3], [1.0, 1.0, 3.0])
    centre = affine @ np.array([9.5, 9.5, 0, 1])
    np.testing.assert_allclose(centre[:2], [49.5 * 0.5, 39.5 * 0.5], atol=0.5)


def test_normalise_is_robust_to_outliers():
    a = np.r_[np.linspace(0, 1, 1000), 1e6].astype(np.float32)
    z = normalise(a, method="zscore")  # what load_case applies per channel
    assert abs(z.mean()) < 1e-5 and z.max() < 3


def test_missing_channel_is_named(mri_manifest):
    m = load_manifest(mri_manifest)
    with pytest.raises(InvalidDataError, match="lacks channel.*dwi"):
        load_case(m.cases[0], channels=("t2", "dwi"), root=m.path.parent)
