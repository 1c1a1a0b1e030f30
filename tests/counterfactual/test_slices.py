"""COIN slice sets from volumes (the shared slicer), back to volumes, and synthetic kidney tumours on the real CT."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.counterfactual.segment import volume_mask
from medwss.counterfactual.slices import SliceSpec, volume_slices
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


TOY = {"organ": [2], "tumour": [4]}


def test_slice_spec_defaults_round_trip_and_old_files():
    spec = SliceSpec()
    assert spec.label_spec.values("kidney") == (2, 3) and spec.label_spec.values("tumour") == (4,)
    assert spec.window == "soft_tissue"
    custom = SliceSpec(TOY, "tumour", "organ", (-100.0, 200.0), 16, 1)
    assert SliceSpec.from_dict(custom.as_dict()) == custom and SliceSpec.from_dict(spec.as_dict()) == spec
    # a classifier file written with the old tuples still loads
    old = SliceSpec.from_dict(
        {"window": [-160, 240], "size": 32, "tumour_labels": [4], "roi_labels": [2, 3], "margin": 6, "axis": 2}
    )
    assert old.label_spec.values(old.lesion) == (4,) and old.label_spec.values(old.roi) == (2, 3)
    assert old.window == (-160.0, 240.0) and old.size == 32
    with pytest.raises(InvalidDataError, match="no class"):
        SliceSpec(lesion="lesion")
    with pytest.raises(InvalidDataError, match="unknown CT window"):
        SliceSpec(window="nope")


def test_volume_slices_window_labels_crop_and_paste_back():
    img, lab = _toy()
    spec = SliceSpec(TOY, "tumour", "organ", "soft_tissue", 16, 1)
    s, g = volume_slices(img, lab, spec, "toy")
    assert s.images.shape == (4, 1, 16, 16) and s.images.min() >= -1 and s.images.max() <= 1
    # soft-tissue window (-160, 240) HU to [-1, 1]: -100 HU -> -0.7, 200 HU -> 0.8
    assert s.images[0, 0, 8, 8] == pytest.approx(-0.7) and s.images.max() == pytest.approx(0.8)
    assert g.indices == [1, 2, 3, 4] and g.box == (7, 23, 7, 23)
    np.testing.assert_array_equal(s.labels, [0, 1, 1, 0])
    back = volume_mask(s.masks, g)
    assert back.shape == (30, 30, 6)
    truth = lab.array == 4
    inter = (back.astype(bool) & truth).sum()
    assert inter / (back.astype(bool) | truth).sum() > 0.7


def test_volume_slices_errors():
    img, lab = _toy()
    with pytest.raises(InvalidDataError, match="none of the 'organ' labels"):
        volume_slices(img, lab, SliceSpec({"organ": [7], "tumour": [4]}, "tumour", "organ"))
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


def test_cli_flags_give_the_slice_spec():
    import argparse

    from medwss.cli.coin import _slice_spec, _window

    def spec(**kw: object) -> SliceSpec:
        base = {"labels": "kidney_tumour", "lesion": "tumour", "roi": "kidney", "tumour_labels": None}
        base |= {"roi_labels": None, "window": "soft_tissue", "size": 64, "margin": 6}
        return _slice_spec(argparse.Namespace(**{**base, **kw}))

    assert spec() == SliceSpec()
    custom = spec(labels="organ=2,3;lesion=9", lesion="lesion", roi="organ", window=_window("-100,200"))
    assert custom.label_spec.values("organ") == (2, 3) and custom.label_spec.values("lesion") == (9,)
    assert custom.window == (-100.0, 200.0) and _window("auto") is None and _window("abdomen") == "abdomen"
    assert spec(roi="none").roi is None and spec(roi_labels=()).roi is None
    old = spec(tumour_labels=(9,), roi_labels=(2,))  # the old flags set the values of the two classes
    assert old.label_spec.values("tumour") == (9,) and old.label_spec.values("kidney") == (2,)
    with pytest.raises(InvalidDataError, match="unknown label spec"):
        spec(labels="nope")
