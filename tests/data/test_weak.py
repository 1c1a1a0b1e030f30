"""Weak-label generators: marks inside their components, classes kept, seeded, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.weak import WEAK_KINDS, box_map, make_weak_label, weak_label_stats
from medwss.errors import ConfigError, InvalidDataError


def two_discs() -> np.ndarray:
    m = np.zeros((48, 48), dtype=np.int64)
    yy, xx = np.ogrid[:48, :48]
    m[(yy - 15) ** 2 + (xx - 15) ** 2 < 81] = 1
    m[(yy - 34) ** 2 + (xx - 34) ** 2 < 36] = 2
    return m


def cylinder() -> np.ndarray:
    m = np.zeros((32, 32, 8), dtype=np.int64)
    yy, xx = np.ogrid[:32, :32]
    m[(yy - 16) ** 2 + (xx - 16) ** 2 < 49, 2:6] = 1
    return m


@pytest.mark.parametrize("kind", WEAK_KINDS)
@pytest.mark.parametrize("mask_fn", [two_discs, cylinder])
def test_marks_agree_with_mask_and_are_seeded(kind: str, mask_fn) -> None:
    mask = mask_fn()
    weak = make_weak_label(mask, kind, seed=3)
    assert weak.shape == mask.shape and weak.dtype == np.int64
    labelled = weak != -1
    assert labelled.any()
    np.testing.assert_array_equal(weak[labelled], mask[labelled])  # every mark is right
    np.testing.assert_array_equal(weak, make_weak_label(mask, kind, seed=3))
    if kind != "box":
        for c in np.unique(mask[mask > 0]):
            assert (weak == c).any(), f"class {c} got no mark"
        assert weak_label_stats(weak, mask)["foreground_coverage"] < 0.6


def test_circle_is_a_ring_of_the_right_radius() -> None:
    mask = np.zeros((41, 41), dtype=np.int64)
    yy, xx = np.ogrid[:41, :41]
    mask[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1  # inscribed radius about 11 from the border
    weak = make_weak_label(mask, "circle", seed=0, background=False, radius_fraction=0.5)
    pts = np.argwhere(weak == 1)
    r = np.hypot(pts[:, 0] - 20, pts[:, 1] - 20)
    assert abs(np.median(r) - 0.5 * 11) < 1.0
    assert (weak[20, 20] == -1) and set(np.unique(weak)) == {-1, 1}


def test_arc_is_shorter_than_circle_and_seed_moves_it() -> None:
    mask = two_discs()
    full = (make_weak_label(mask, "circle", 0, background=False) == 1).sum()
    half = make_weak_label(mask, "circle", 0, background=False, arc=0.5)
    assert (half == 1).sum() < 0.7 * full
    other = make_weak_label(mask, "circle", 1, background=False, arc=0.5)
    assert not np.array_equal(half, other)


def test_3d_circle_center_only_marks_one_slice() -> None:
    weak = make_weak_label(cylinder(), "circle", 0, background=False, slices="center")
    assert np.flatnonzero((weak == 1).any(axis=(0, 1))).size == 1
    weak_all = make_weak_label(cylinder(), "circle", 0, background=False)
    assert np.flatnonzero((weak_all == 1).any(axis=(0, 1))).tolist() == [2, 3, 4, 5]


def test_centroid_disk_and_shift() -> None:
    mask = two_discs()
    weak = make_weak_label(mask, "centroid_disk", 0, background=False, radius=2)
    assert weak[15, 15] == 1 and (weak == 1).sum() == 13  # disk of radius 2: 13 pixels
    shifted = make_weak_label(mask, "centroid_disk", 0, background=False, radius=2, shift=4)
    pts = np.argwhere(shifted == 1).mean(0)
    assert 3.0 < np.hypot(pts[0] - 15, pts[1] - 15) < 5.0


def test_background_marks_stay_away_from_lesions() -> None:
    mask = two_discs()
    weak = make_weak_label(mask, "random_disk", 0, bg_margin=3)
    from scipy import ndimage

    near = ndimage.binary_dilation(mask > 0, iterations=3)
    assert (weak == 0).any() and not ((weak == 0) & near).any()


def test_empty_mask_gets_background_strokes_only() -> None:
    weak = make_weak_label(np.zeros((32, 32), np.int64), "circle", 0)
    assert set(np.unique(weak)) == {-1, 0}
    assert set(np.unique(make_weak_label(np.zeros((32, 32), np.int64), "circle", 0, background=False))) == {-1}


def test_box_map_and_box_kind() -> None:
    mask = two_discs()
    boxes = box_map(mask)
    assert boxes[7:24, 7:24].min() == 1 and (boxes == 1).sum() == 17 * 17
    weak = make_weak_label(mask, "box", 0)
    np.testing.assert_array_equal(weak == 0, boxes == 0)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown weak label kind"):
        make_weak_label(two_discs(), "lasso", 0)
    with pytest.raises(InvalidDataError, match="2D or 3D"):
        make_weak_label(np.zeros(5, np.int64), "circle", 0)


@pytest.mark.parametrize("kind", ["circle", "skeleton", "random_disk"])
def test_real_ct_organ_map_multiclass(real, kind) -> None:
    from medwss.io import load_volume

    seg = load_volume(real / "volumes" / "example_seg.nii.gz").array.astype(np.int64)
    weak = make_weak_label(seg, kind, seed=0)
    labelled = weak != -1
    np.testing.assert_array_equal(weak[labelled], seg[labelled])
    present = set(np.unique(seg)) - {0}
    assert present and set(np.unique(weak[weak > 0])) == present  # every organ (kidneys 2 and 3 included) marked
    assert (weak > 0).sum() < 0.5 * (seg > 0).sum()
