"""COIN does not depend on the stored axis order: the real CT, and permuted / flipped copies of it.

The CT ``example_ct_sm.nii.gz`` and its organ map (kidneys 2, 3) get a synthetic tumour (label 4)
in a kidney (`write_kidney_cases`); the copies store the same voxels with the axes in another order
(`permuted_copy`). Slices, slice labels and masks pasted back must be the same, on each copy's grid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medwss.counterfactual.segment import volume_mask
from medwss.counterfactual.slices import SliceSpec, volume_slices
from medwss.data.orientation import permuted_copy
from medwss.data.slicer import SliceGeometry
from medwss.io.volume import Volume

VARIANTS = {"permuted": ((2, 0, 1), ()), "permuted_flipped": ((2, 0, 1), (1,)), "swapped_flipped": ((1, 0, 2), (0,))}


@pytest.fixture(scope="module")
def kidney_case(real, tmp_path_factory):
    """The abnormal copy of the real CT (tumour label 4 in a kidney) and its label map."""
    from medwss.counterfactual.synth import write_kidney_cases
    from medwss.io.volumes import load_volume

    vol = real / "volumes"
    root = tmp_path_factory.mktemp("kidney")
    write_kidney_cases(load_volume(vol / "example_ct_sm.nii.gz"), load_volume(vol / "example_seg.nii.gz"), root, 2, 0)
    image = load_volume(root / "images" / "kidney_001.nii.gz")
    labels = load_volume(root / "labels" / "kidney_001.nii.gz")
    assert labels.array.dtype == np.int16 and set(np.unique(labels.array)) == {0, 2, 3, 4}
    return image, labels


def _coin_like(images: np.ndarray) -> np.ndarray:
    """A stand-in for COIN's per-slice masks: bright pixels (N, S, S)."""
    return images[:, 0] > 0.3


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_slices_labels_and_paste_do_not_depend_on_axis_order(kidney_case, variant):
    image, labels = kidney_case
    axes, flip = VARIANTS[variant]
    s, g = volume_slices(image, labels, SliceSpec(), "k")
    assert s.images.shape == (len(g), 1, 64, 64) and 0 < s.labels.sum() < len(s)
    assert s.masks[s.labels == 1].any() and not s.masks[s.labels == 0].any()
    pi, pl = permuted_copy(image, axes, flip), permuted_copy(labels, axes, flip)
    assert pi.shape != image.shape or flip
    sp, gp = volume_slices(pi, pl, SliceSpec(), "k")
    np.testing.assert_array_equal(sp.images, s.images)
    np.testing.assert_array_equal(sp.masks, s.masks)
    np.testing.assert_array_equal(sp.labels, s.labels)
    np.testing.assert_array_equal(sp.slice_index, s.slice_index)
    assert gp.box == g.box and gp.indices == g.indices and gp.shape == pi.shape
    # a COIN-style mask pasted back: on each copy's own grid, the permuted copy of the original's
    back, back_p = volume_mask(_coin_like(s.images), g), volume_mask(_coin_like(sp.images), gp)
    assert back.shape == image.shape and back_p.shape == pi.shape and back.any()
    np.testing.assert_array_equal(back_p, permuted_copy(image.with_array(back), axes, flip).array)
    # the true lesion goes back where it was (nearest-neighbour resize both ways: close, not exact)
    tumour = labels.array == 4
    lesion = volume_mask(s.masks, g).astype(bool)
    assert (lesion & tumour).sum() / (lesion | tumour).sum() > 0.7
    # the geometry survives JSON
    g2 = SliceGeometry.from_dict(json.loads(json.dumps(gp.as_dict())))
    np.testing.assert_array_equal(volume_mask(_coin_like(sp.images), g2), back_p)


def test_whole_slices_without_mask_are_axial(kidney_case):
    image, _ = kidney_case
    axes, flip = VARIANTS["permuted_flipped"]
    s, g = volume_slices(image, None, SliceSpec(size=32))
    sp, gp = volume_slices(permuted_copy(image, axes, flip), None, SliceSpec(size=32))
    assert len(s) == image.shape[2] == 30 and not s.labels.any() and not s.masks.any()
    np.testing.assert_array_equal(sp.images, s.images)


def _tiny_models(tmp_path, images: np.ndarray, spec: SliceSpec):
    """A fixed random tiny classifier (calibrated to call about half the slices abnormal) and generator."""
    from medwss.counterfactual.classifier import ClassifierConfig, create_classifier, save_classifier
    from medwss.counterfactual.generator import CounterfactualGenerator
    from medwss.counterfactual.train import CoinConfig, save_generator

    torch.manual_seed(0)
    cfg = ClassifierConfig(channels=(4, 4, 8, 8))
    clf = create_classifier(cfg.channels, cfg.stem_stride).eval()
    with torch.no_grad():
        logits = clf(torch.from_numpy(images))  # (N, 2)
        clf.fc.bias[1] -= float(torch.median(logits[:, 1] - logits[:, 0]))
    G = CounterfactualGenerator((4, 8), (2,), 1, 1.0)
    torch.nn.init.normal_(G.head.weight, std=0.5)  # a generator that changes the slices
    return (
        save_classifier(clf, cfg, spec, tmp_path / "classifier.pt"),
        save_generator(G, CoinConfig(gen_channels=(4, 8)), tmp_path / "generator.pt"),
    )


@pytest.mark.slow  # ~25 s on a loaded 2-core machine (MONAI import, three segment runs)
def test_coin_segment_masks_same_for_every_orientation(kidney_case, tmp_path):
    """`segment_step` on the CT and on permuted copies: each mask on its own grid and affine, all the same."""
    import nibabel as nib

    from medwss.counterfactual.segment import MaskSettings
    from medwss.counterfactual.workflow import segment_step
    from medwss.data.labels import save_label_map
    from medwss.data.manifest import load_manifest, write_manifest
    from medwss.io.volumes import save_nifti

    image, labels = kidney_case
    spec = SliceSpec(size=32)
    s, _ = volume_slices(image, labels, spec)
    clf, gen = _tiny_models(tmp_path, s.images, spec)
    variants = {k: VARIANTS[k] for k in ("permuted", "permuted_flipped")}
    masks, affines = {}, {}
    for name, (axes, flip) in {"source": ((0, 1, 2), ()), **variants}.items():
        img, lab = permuted_copy(image, axes, flip), permuted_copy(labels, axes, flip)
        d = tmp_path / name
        row = {"case_id": "k", "patient_id": "k", "site": "real_ct", "modality": "CT", "label": 1}
        row["image"] = save_nifti(img, d / "image.nii.gz")
        row["mask"] = save_label_map(lab.array, d / "mask.nii.gz", lab.affine)
        cases = list(load_manifest(write_manifest([row], d / "manifest.csv")))
        metrics = segment_step(cases, clf, gen, MaskSettings(), d / "seg", progress=False, n_overlays=0)
        assert metrics["n_cases"] == 1 and not metrics["failed"] and metrics["n_slices"] == len(s)
        out = nib.load(d / "seg" / "masks" / "k.nii.gz")
        assert out.get_data_dtype() == np.int16 and out.shape == img.shape
        masks[name], affines[name] = np.asarray(out.dataobj), out.affine
        np.testing.assert_allclose(out.affine, nib.load(row["image"]).affine)
    ref = masks["source"]
    assert ref.any() and set(np.unique(ref)) <= {0, 1}
    for name, (axes, flip) in variants.items():
        np.testing.assert_array_equal(masks[name], permuted_copy(Volume(ref, affines["source"]), axes, flip).array)
