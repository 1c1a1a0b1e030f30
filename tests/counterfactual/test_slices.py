"""Slice sets from volumes, back to volumes, and synthetic kidney tumours on the real CT."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.counterfactual.slices import SliceSpec, paste_back, volume_slices, window_normalise
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume


def _toy() -> tuple[Volume, Volume]:
    img = np.full((30, 30, 6), -100.0, np.float32)
    lab = np.zeros((30, 30, 6), np.uint8)
    lab[8:22, 8:22, 1:5] = 2  # organ in slices 1..4
    lab[12:16, 12:16, 2:4] = 4  # lesion in slices 2, 3
    img[lab == 4] = 200.0
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    return Volume(img, aff), Volume(lab, aff)


def test_window_normalise_maps_window_to_unit_range():
    out = window_normalise(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]), (-160, 240))
    np.testing.assert_allclose(out, [-1, -1, 0, 1, 1])
    with pytest.raises(InvalidDataError):
        window_normalise(np.zeros(3), (5, 5))


def test_volume_slices_labels_crop_and_paste_back():
    img, lab = _toy()
    spec = SliceSpec(window=(-160, 240), size=16, tumour_labels=(4,), roi_labels=(2,), margin=1)
    s, g = volume_slices(img, lab, spec, "toy")
    assert s.images.shape == (4, 1, 16, 16) and s.images.min() >= -1 and s.images.max() <= 1
    assert g.indices == [1, 2, 3, 4] and g.box == (7, 23, 7, 23)
    np.testing.assert_array_equal(s.labels, [0, 1, 1, 0])
    back = paste_back(s.masks, g, 2)
    assert back.shape == (30, 30, 6)
    truth = lab.array == 4
    inter = (back.astype(bool) & truth).sum()
    assert inter / (back.astype(bool) | truth).sum() > 0.7


def test_volume_slices_errors():
    img, lab = _toy()
    with pytest.raises(InvalidDataError, match="organ labels"):
        volume_slices(img, lab, SliceSpec(roi_labels=(7,)))
    with pytest.raises(InvalidDataError, match="grid"):
        volume_slices(img, Volume(np.zeros((5, 5, 5)), np.eye(4)), SliceSpec())


def test_kidney_synthesis_on_real_ct(real):
    from medwss.counterfactual.synth import load_kidney_source, make_kidney_slices
    from medwss.io.volumes import load_volume

    vol = real / "volumes"
    src = load_kidney_source(
        load_volume(vol / "example_ct_sm.nii.gz"), load_volume(vol / "example_seg.nii.gz"), SliceSpec()
    )
    assert src.images.shape == (23, 64, 64) and src.kidneys.any((1, 2)).all()
    a = make_kidney_slices(src, 40, seed=3)
    b = make_kidney_slices(src, 40, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.min() >= -1 and a.images.max() <= 1
    ab = a.labels == 1
    assert 5 < ab.sum() < 35
    assert a.masks[ab].any((1, 2)).all() and not a.masks[~ab].any()
    # the blob changes the image where the mask is
    assert not np.allclose(a.images, make_kidney_slices(src, 40, seed=4).images)
