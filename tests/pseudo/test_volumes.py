"""Slicing through the shared slicer: axial whatever the stored axis order, pseudo-labels back on the source grid."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medwss.data.labels import IGNORE, load_label_map
from medwss.data.orientation import permuted_copy
from medwss.io.volume import Volume
from medwss.pseudo.config import AgmmPseudoConfig, BoxPseudoConfig, PseudoConfig
from medwss.pseudo.protocol import Box
from medwss.pseudo.volumes import slice_boxes

AXES = (2, 0, 1)


def _manifest(path: Path, case_id: str, image: Path, mask: Path) -> Path:
    row = {"case_id": case_id, "patient_id": "p0", "site": "ts", "modality": "CT", "image": str(image)}
    row["mask"] = str(mask)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    return path


@pytest.fixture(scope="module")
def pair(real, tmp_path_factory) -> dict[str, Path]:
    """Manifests of the real CT (+ organ map) and of a copy stored with its axes permuted."""
    from medwss.io.volumes import load_volume, save_nifti

    tmp = tmp_path_factory.mktemp("permuted")
    src = real / "volumes"
    img, seg = load_volume(src / "example_ct_sm.nii.gz"), load_volume(src / "example_seg.nii.gz")
    p_img, p_seg = permuted_copy(img, AXES), permuted_copy(seg, AXES)
    save_nifti(p_img, tmp / "ct_perm.nii.gz")
    save_nifti(p_seg, tmp / "seg_perm.nii.gz")
    return {
        "original": _manifest(tmp / "orig.csv", "ct", src / "example_ct_sm.nii.gz", src / "example_seg.nii.gz"),
        "permuted": _manifest(tmp / "perm.csv", "ct", tmp / "ct_perm.nii.gz", tmp / "seg_perm.nii.gz"),
        "permuted_image": tmp / "ct_perm.nii.gz",
    }


CFG = BoxPseudoConfig(labels="totalseg", minor=("right_kidney", "left_kidney"), downsample=2, segmenter="otsu")


def _cases(manifest: Path):  # noqa: ANN202
    from medwss.data.manifest import load_manifest
    from medwss.pseudo.workflow import load_cases

    cases, failed = load_cases(load_manifest(manifest), CFG)
    assert not failed
    return cases


def test_slices_are_axial_whatever_the_axis_order(pair):
    orig, perm = _cases(pair["original"])[0], _cases(pair["permuted"])[0]
    assert len(orig.images) == len(perm.images) == 30  # the 30 axial slices, not 122 sagittal ones
    assert orig.images[0].shape == (1, 61, 51) and orig.images[0].dtype == np.float32
    assert orig.images[5].min() >= 0.0 and orig.images[5].max() <= 1.0
    for a, b in zip(orig.images + orig.gts, perm.images + perm.gts, strict=True):
        np.testing.assert_array_equal(a, b)
    classes = set(np.unique(np.concatenate([g.ravel() for g in orig.gts])).tolist())
    assert classes == {0, 1, 2, 3, 4}  # totalseg spec: liver, spleen, right and left kidney
    assert perm.geometry.shape == (30, 122, 101) and np.allclose(
        perm.affine, load_label_map(pair["permuted_image"]).affine
    )


@pytest.mark.parametrize("method", ["box", "agmm_offline"])
def test_pseudo_labels_of_a_permuted_copy_are_the_permuted_pseudo_labels(pair, method, tmp_path):
    import nibabel as nib

    from medwss.pseudo import workflow as wf
    from medwss.pseudo.outputs import write_outputs

    written = {}
    for name in ("original", "permuted"):
        cases = _cases(pair[name])
        if method == "box":  # box prompts from the masks, Otsu inside each box
            labels = wf.run_box(cases, CFG)
        else:  # 3 clicks per organ (make_weak_label "point"), offline GMM refiner
            agmm = AgmmPseudoConfig(**CFG.model_dump(include=set(PseudoConfig.model_fields)), weak="point")
            labels = wf.run_agmm(cases, agmm, offline=True)
        metrics = write_outputs(cases, labels, tmp_path / name, CFG)
        assert metrics is not None and metrics["pooled"]["coverage"] > 0.5
        written[name] = tmp_path / name / "labels" / "ct.nii.gz"
    orig, perm = load_label_map(written["original"]), load_label_map(written["permuted"])
    assert nib.load(written["permuted"]).get_data_dtype() == np.int16
    assert orig.shape == (122, 101, 30) and perm.shape == (30, 122, 101)
    np.testing.assert_array_equal(perm.array, np.transpose(orig.array, AXES))
    assert np.allclose(perm.affine, load_label_map(pair["permuted_image"]).affine)
    values = set(np.unique(perm.array).tolist())
    assert {0, 1, 2, 3, 4} <= values and values <= {IGNORE, 0, 1, 2, 3, 4}
    if method == "box":
        assert IGNORE in values  # the ignore ring


def test_agmm_reach_only_takes_foreground_far_from_the_clicks_away(pair):
    from medwss.pseudo import workflow as wf

    cases = _cases(pair["original"])
    base = AgmmPseudoConfig(**CFG.model_dump(include=set(PseudoConfig.model_fields)), weak="point")
    plain = wf.run_agmm(cases, base, offline=True)
    near = wf.run_agmm(cases, base.model_copy(update={"reach_mm": 10.0}), offline=True)
    fg_plain = np.stack(plain[0]) > 0
    fg_near = np.stack(near[0]) > 0
    assert fg_near.any() and not (fg_near & ~fg_plain).any() and fg_near.sum() < fg_plain.sum()
    assert (np.stack(near[0]) == IGNORE).sum() <= (np.stack(plain[0]) == IGNORE).sum()  # far abstentions: background


def test_read_labels_gives_back_the_slices(pair, tmp_path):
    from medwss.pseudo import workflow as wf
    from medwss.pseudo.outputs import read_labels, write_outputs

    cases = _cases(pair["permuted"])
    labels = wf.run_box(cases, CFG.model_copy(update={"segmenter": "box"}))
    write_outputs(cases, labels, tmp_path, CFG)
    kept, back, failed = read_labels(cases, tmp_path / "labels")
    assert not failed and len(kept) == 1
    for a, b in zip(labels[0], back[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_subset_keeps_the_geometry(pair):
    case = _cases(pair["permuted"])[0]
    part = case.subset([3, 4, 5], case_id="part", split="val")
    assert part.geometry.indices == [3, 4, 5] and len(part.images) == len(part.gts) == 3
    full = part.to_source([np.ones((61, 51), np.int64)] * 3)
    assert full.shape == (30, 122, 101)
    assert (full[3:6] == 1).all() and (full[:3] == IGNORE).all()  # axial slices 3..5 = source axis 0


def test_detector_boxes_follow_the_stored_axis_order():
    from medwss.data.slicer import plan_slices

    arr = np.zeros((20, 16, 10), np.float32)
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    vol = Volume(arr, aff)
    box = Box((4, 2, 3), (12, 9, 6), label=2)  # (i, j, k) of the RAS array
    for axes, flip in (((0, 1, 2), ()), ((2, 0, 1), ()), ((1, 2, 0), (0,))):
        moved = permuted_copy(vol, axes, flip)
        lo, hi = [0, 0, 0], [0, 0, 0]
        for new, old in enumerate(axes):
            lo[new], hi[new] = box.lo[old], box.hi[old]
            if new in flip:
                n = arr.shape[old]
                lo[new], hi[new] = n - box.hi[old], n - box.lo[old]
        per = slice_boxes([Box(tuple(lo), tuple(hi), 2)], plan_slices(moved))
        assert [len(b) for b in per] == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0], axes
        assert per[3][0] == Box((4, 2), (12, 9), 2)
        half = slice_boxes([Box(tuple(lo), tuple(hi), 2)], plan_slices(moved, size=(10, 8)))
        assert half[4][0] == Box((2, 1), (6, 5), 2)  # scaled to the slice size, rounded outwards


def test_config_takes_spec_names_mappings_and_named_windows():
    from medwss.errors import ConfigError

    assert PseudoConfig().classes() == ["background", "liver", "right_kidney", "left_kidney", "spleen", "kidney_tumor"]
    assert PseudoConfig(labels="totalseg").classes() == ["background", "liver", "spleen", "right_kidney", "left_kidney"]
    cfg = PseudoConfig(labels={"kidney": [2, 3], "tumour": 4}, minor=("tumour",))
    assert cfg.classes() == ["background", "kidney", "tumour"] and cfg.minor_ids() == [2]
    assert PseudoConfig().window_range() == (-160.0, 240.0)
    assert PseudoConfig(window=(-200, 300)).window_range() == (-200.0, 300.0)
    from medwss.pseudo.methods import config_for

    for method, bad in (("box", {"labels": "nope"}), ("cam", {"window": "nowhere"}), ("agmm", {"weak": "scribbles"})):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            config_for(method, bad)
    # a key the method does not read is refused, naming it; only_read drops it (a shared pool of settings)
    with pytest.raises(ConfigError, match="pseudo box.*iterations"):
        config_for("box", {"iterations": 3})
    assert config_for("box", {"iterations": 3, "ring": 2, "seed": 4}, only_read=True).model_dump()["ring"] == 2
    assert config_for("dhr", cfg).classes() == cfg.classes()  # the shared part carries over
