"""Manifest → samples: slices or volumes, weak or full targets, bounds per mode, empty tags."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.manifest import load_manifest
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.dataset import build_samples, image_bounds, prepare_case, prior_pixels


@pytest.fixture(scope="module")
def manifest(mri_manifest):
    return load_manifest(mri_manifest)


def test_2d_weak_samples_tags_and_bounds(manifest):
    cfg = ScribbleConfig(size_prior=(10.0, 150.0), oversample=1)
    pos = next(c for c in manifest.cases if c.label == 1)
    neg = next(c for c in manifest.cases if c.label == 0)
    samples, failures = build_samples([pos, neg], cfg, manifest.path.parent)
    assert not failures
    p = prepare_case(pos, cfg, manifest.path.parent)
    z = p.target.shape[-1]
    assert len(samples) == z + prepare_case(neg, cfg, manifest.path.parent).target.shape[-1]
    first = samples[:z]
    assert first[0].image.shape == (3, 56, 56) and first[0].target.shape == (56, 56)
    for s, zz in zip(first, range(z), strict=True):
        marked = (p.target[..., zz] > 0).any()
        assert not s.empty
        if marked:  # a scribbled slice gets the prior, in pixels of the 1 mm crop
            np.testing.assert_allclose(s.bounds[1], [10.0, 150.0])
        else:  # unknown: unbounded
            assert np.isnan(s.bounds[1]).all()
        assert np.isnan(s.bounds[0]).all()  # background never bounded
    for s in samples[z:]:
        assert s.empty and np.array_equal(s.bounds[1], [0.0, 0.0]) and not (s.target > 0).any()
    # weak marks agree with the mask
    lab = p.target >= 0
    np.testing.assert_array_equal(p.target[lab], p.input.mask[lab])


def test_lesion_images_are_oversampled(manifest):
    pos = next(c for c in manifest.cases if c.label == 1)
    one, _ = build_samples([pos], ScribbleConfig(oversample=1), manifest.path.parent)
    three, _ = build_samples([pos], ScribbleConfig(oversample=3), manifest.path.parent)
    marked = sum((s.target > 0).any() for s in one)
    assert marked > 0 and len(three) == len(one) + 2 * marked
    (vol,), _ = build_samples([pos], ScribbleConfig(spatial_dims=3, oversample=1), manifest.path.parent)
    vols, _ = build_samples([pos], ScribbleConfig(spatial_dims=3, oversample=2), manifest.path.parent)
    assert len(vols) == 2


def test_unmarked_slices_tagged_empty(manifest):
    cfg = ScribbleConfig(negative_slices="unmarked")
    pos = next(c for c in manifest.cases if c.label == 1)
    samples, _ = build_samples([pos], cfg, manifest.path.parent)
    for s in samples:
        assert s.empty == (not (s.target > 0).any())


def test_bounds_modes_by_hand():
    mask = np.zeros((10, 10), np.int64)
    mask[2:6, 3:5] = 1  # 8 pixels, box 4 x 2
    weak = np.full((10, 10), -1, np.int64)
    weak[3, 3] = 1
    prior = (5.0, 20.0)
    b = image_bounds(ScribbleConfig(bounds="true", margin=0.25), weak, mask, False, prior)
    np.testing.assert_allclose(b[1], [6.0, 10.0])
    b = image_bounds(ScribbleConfig(bounds="box", box_fill=0.5), weak, mask, False, prior)
    np.testing.assert_allclose(b[1], [4.0, 8.0])
    b = image_bounds(ScribbleConfig(bounds="upper"), weak, mask, False, prior)
    np.testing.assert_allclose(b[1], [0.0, 20.0])
    assert image_bounds(ScribbleConfig(bounds="none"), weak, mask, False, prior) is None
    assert image_bounds(ScribbleConfig(supervision="full"), weak, mask, False, prior) is None
    np.testing.assert_allclose(image_bounds(ScribbleConfig(bounds="tag"), weak, mask, True, prior)[1], [0.0, 0.0])


def test_prior_units():
    assert prior_pixels(ScribbleConfig(size_prior=(10.0, 40.0)), (0.5, 0.5, 3.0)) == [(40.0, 160.0)]
    cfg3 = ScribbleConfig(spatial_dims=3, size_prior=(60.0, 600.0))
    assert prior_pixels(cfg3, (1.0, 1.0, 6.0)) == [(10.0, 100.0)]
    per_class = ScribbleConfig(num_classes=3, size_prior=((1.0, 2.0), (4.0, 8.0)))
    assert prior_pixels(per_class, (0.5, 0.5, 3.0)) == [(4.0, 8.0), (16.0, 32.0)]


def test_3d_samples_and_per_slice_bounds(manifest):
    pos = next(c for c in manifest.cases if c.label == 1)
    cfg = ScribbleConfig(spatial_dims=3, size_prior=(60.0, 600.0), oversample=1)
    (s,), _ = build_samples([pos], cfg, manifest.path.parent)
    assert s.image.ndim == 4 and s.bounds.shape == (2, 2)
    np.testing.assert_allclose(s.bounds[1], [10.0, 100.0])  # mm³ over 1 x 1 x 6 mm voxels
    per = ScribbleConfig(spatial_dims=3, size_per_slice=True, bounds="true", oversample=1)
    (s,), _ = build_samples([pos], per, manifest.path.parent)
    areas = (prepare_case(pos, per, manifest.path.parent).input.mask > 0).sum((0, 1))
    assert s.bounds.shape == (2, len(areas), 2)
    np.testing.assert_allclose(s.bounds[1, :, 1], 1.1 * areas, rtol=1e-5)


def test_full_supervision_and_scribble_column(manifest, tmp_path):
    from medwss.scribble.annotate import write_weak_labels

    pos = next(c for c in manifest.cases if c.label == 1)
    p = prepare_case(pos, ScribbleConfig(supervision="full"), manifest.path.parent)
    np.testing.assert_array_equal(p.target, p.input.mask)
    summary = write_weak_labels(manifest, tmp_path, "centroid_disk", 0, options={"radius": 2}, progress=False)
    assert summary["done"] == len(manifest.cases)
    m2 = load_manifest(tmp_path / "manifest.csv")
    case = next(c for c in m2.cases if c.case_id == pos.case_id)
    assert case.scribble is not None
    q = prepare_case(case, ScribbleConfig(), m2.path.parent)  # the scribble file, not a new circle
    assert (q.target == 1).sum() <= (4 / 3 * np.pi * 8 + 1) * 1.5 and (q.target == 1).any()


def test_bad_case_is_skipped_and_reported(manifest, tmp_path):
    import dataclasses

    broken = dataclasses.replace(
        manifest.cases[0], images={**manifest.cases[0].images, "adc": tmp_path / "gone.nii.gz"}
    )
    samples, failures = build_samples([broken, manifest.cases[1]], ScribbleConfig(), manifest.path.parent)
    assert len(failures) == 1 and failures[0]["case_id"] == broken.case_id and "gone.nii.gz" in failures[0]["error"]
    assert samples
