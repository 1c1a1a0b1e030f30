"""Canonical orientation and the one slicer: a volume stored in any axis order gives the same slices."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.orientation import canonical, orientation_of, permuted_copy
from medwss.data.slicer import plan_slices
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.volume import Volume

LAYOUTS = [((2, 0, 1), ()), ((1, 2, 0), (0,)), ((0, 1, 2), (1, 2)), ((2, 1, 0), (2,))]


@pytest.fixture(scope="module")
def ct(real):
    return load_volume(real / "volumes" / "example_ct_sm.nii.gz"), load_volume(real / "volumes" / "example_seg.nii.gz")


def _world(vol: Volume, ijk: np.ndarray) -> np.ndarray:
    return (vol.affine @ np.append(ijk, 1.0))[:3]


def test_permuted_copy_keeps_world_geometry(ct):
    image, _ = ct
    p = permuted_copy(image, (2, 0, 1), flip=(1,))
    assert p.shape == (30, 122, 101)
    # voxel (i, j, k) of the original is voxel (k, X-1-i... ) of the copy: compare by world position
    i, j, k = 10, 20, 5
    src = np.array([k, image.shape[0] - 1 - i, j], dtype=float)
    assert p.array[tuple(src.astype(int))] == image.array[i, j, k]
    assert np.allclose(_world(p, src), _world(image, np.array([i, j, k], dtype=float)))


@pytest.mark.parametrize("axes,flip", LAYOUTS)
def test_canonical_array_is_the_same_whatever_the_order(ct, axes, flip):
    image, _ = ct
    p = permuted_copy(image, axes, flip)
    o = orientation_of(p)
    assert o.canonical_shape == (122, 101, 30)
    assert p.shape[o.axial_axis] == 30
    c, o2 = canonical(p)
    assert np.array_equal(c.array, image.array)
    assert np.allclose(c.affine, image.affine)
    assert np.array_equal(o2.to_source(c.array), p.array)
    assert c.metadata["source_orientation"] == o.codes != "RAS"


def test_ras_volume_is_untouched(ct):
    image, _ = ct
    c, o = canonical(image)
    assert o.identity and c is image and o.codes == "RAS"


@pytest.mark.parametrize("axes,flip", LAYOUTS)
def test_roi_slices_and_paste_back_match(ct, axes, flip):
    image, seg = ct
    pi, ps = permuted_copy(image, axes, flip), permuted_copy(seg, axes, flip)
    g0 = plan_slices(image, roi=np.isin(seg.array, [2, 3]), margin=4, size=32)
    g1 = plan_slices(pi, roi=np.isin(ps.array, [2, 3]), margin=4, size=32)
    assert len(g0) == len(g1) == 23  # the README: 23 slices hold kidney
    a0, a1 = g0.cut(image.array), g1.cut(pi.array)
    assert a0.shape == (23, 32, 32) and a0.dtype == np.float32
    assert np.array_equal(a0, a1)
    l0, l1 = g0.cut(seg.array, label=True), g1.cut(ps.array, label=True)
    assert np.array_equal(l0, l1) and l0.dtype == np.int64
    back0, back1 = g0.paste(l0), g1.paste(l1)
    assert back1.shape == pi.shape
    assert np.array_equal(permuted_copy(seg.with_array(back0), axes, flip).array, back1)
    for n in (0, 11):
        assert np.allclose(g0.slice_affine(n), g1.slice_affine(n))


def test_full_slices_round_trip_exactly(ct):
    _, seg = ct
    p = permuted_copy(seg, (2, 0, 1))
    g = plan_slices(p)
    slices = g.cut(p.array, label=True)
    assert slices.shape == (30, 122, 101)
    assert np.array_equal(g.paste(slices), p.array)


def test_paste_of_resized_slices_is_close_and_geometry_serialises(ct):
    image, seg = ct
    kidney = np.isin(seg.array, [2, 3])
    g = plan_slices(image, roi=kidney, margin=2, size=64)
    m = g.cut(kidney.astype(np.int64), label=True)
    back = g.paste(m).astype(bool)
    assert (back & kidney).sum() / (back | kidney).sum() > 0.9
    from medwss.data.slicer import SliceGeometry

    g2 = SliceGeometry.from_dict(g.as_dict())
    assert g2.box == g.box and g2.indices == g.indices and g2.size == g.size
    assert np.array_equal(g2.paste(m), g.paste(m))


def test_slice_affine_maps_pixels_to_world():
    vol = Volume(np.zeros((8, 6, 4), np.float32), np.diag([2.0, 3.0, 5.0, 1.0]))
    g = plan_slices(vol, indices=[2])
    aff = g.slice_affine(0)
    assert np.allclose(aff @ [1, 2, 0, 1], vol.affine @ [1, 2, 2, 1])
    half = plan_slices(vol, indices=[2], size=(4, 3))  # 2x downsampled: pixel 0 covers voxels 0-1
    assert np.allclose(half.slice_affine(0) @ [0, 0, 0, 1], vol.affine @ [0.5, 0.5, 2, 1])


def test_pixel_mm_is_the_canonical_spacing_scaled_by_the_resize():
    from medwss.data.slicer import plan_slices

    vol = Volume(np.zeros((40, 20, 4), np.float32), np.diag([0.5, 2.0, 5.0, 1.0]))
    assert plan_slices(vol).pixel_mm == pytest.approx((0.5, 2.0))
    g = plan_slices(vol, size=10)  # the 40 x 20 mm field (on a square of the larger side) at 10 x 10 pixels
    assert g.slice_shape == (10, 10)
    assert g.pixel_mm == pytest.approx((0.5 * g.crop_shape[0] / 10, 2.0 * g.crop_shape[1] / 10))
    swapped = permuted_copy(vol, (1, 0, 2))  # another stored order, the same world grid
    assert plan_slices(swapped).pixel_mm == pytest.approx((0.5, 2.0))


def test_slicer_errors():
    vol = Volume(np.zeros((4, 4, 3), np.float32), np.eye(4))
    with pytest.raises(InvalidDataError, match="ROI is empty"):
        plan_slices(vol, roi=np.zeros((4, 4, 3), bool))
    with pytest.raises(InvalidDataError, match="not on the volume grid"):
        plan_slices(vol, roi=np.ones((4, 4, 2), bool))
    with pytest.raises(InvalidDataError, match="outside"):
        plan_slices(vol, indices=[5])
    g = plan_slices(vol)
    with pytest.raises(InvalidDataError, match="do not fit"):
        g.paste(np.zeros((2, 4, 4)))


def test_box_leaving_the_image_is_filled():
    arr = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    vol = Volume(arr, np.eye(4))
    roi = np.zeros((4, 4, 2), bool)
    roi[0, 0, 1] = True
    g = plan_slices(vol, roi=roi, margin=1)
    s = g.cut(arr, fill=-5.0)
    assert s.shape == (1, 3, 3) and s[0, 0, 0] == -5.0 and s[0, 1, 1] == arr[0, 0, 1]
    back = g.paste(np.ones((1, 3, 3), np.int64))
    assert back[:2, :2, 1].all() and back.sum() == 4


def test_multichannel_cut_and_paste():
    arr = np.random.default_rng(0).random((5, 6, 3, 2)).astype(np.float32)
    vol = Volume(arr, np.eye(4))
    g = plan_slices(vol)
    s = g.cut(arr)
    assert s.shape == (3, 2, 5, 6)
    assert np.allclose(g.paste(s, label=False), arr)
