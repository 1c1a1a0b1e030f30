"""Slice pool, export with source geometry (phantom and the real CT), ingest with geometry checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.active.export import export_slices
from medwss.active.ingest import read_annotation, scan_folder, slice_id_of
from medwss.active.pool import SlicePool, SliceReader, SliceRef, build_pool
from medwss.data.labels import LabelSpec, save_label_map
from medwss.data.manifest import load_manifest
from medwss.errors import InvalidDataError
from medwss.io import load_volume, save_nifti
from medwss.io.volume import Volume

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "volumes" / "example_ct_sm.nii.gz"


def test_pool_keeps_patient_volume_index_and_roundtrips(ct_manifest, tmp_path):
    cases = list(load_manifest(ct_manifest))
    pool, skipped = build_pool(cases, (-100.0, 150.0), thumb_size=16, progress=False)
    assert not skipped and len(pool) == 24 * len(cases) and pool.thumbs.shape == (len(pool), 1, 16, 16)
    r = pool.refs[30]
    assert (r.case_id, r.patient_id, r.volume, r.index) == (cases[1].case_id, cases[1].patient_id, 1, 6)
    assert r.slice_id == f"{cases[1].case_id}_z006"
    assert pool.thumbs.min() >= 0.0 and pool.thumbs.max() <= 1.0
    assert list(pool.groups("volume")[22:26]) == [0, 0, 1, 1]
    pool.save(tmp_path)
    back = SlicePool.load(tmp_path)
    assert back.refs == pool.refs and np.array_equal(back.thumbs, pool.thumbs)


def test_reader_maps_mask_labels_through_the_label_spec(ct_manifest):
    cases = list(load_manifest(ct_manifest))
    pool, _ = build_pool(cases[:1], "soft_tissue", thumb_size=8, progress=False)
    ref = pool.refs[12]
    raw = load_volume(ref.label).array[:, :, 12]  # the phantom is stored RAS: canonical = stored
    lab = SliceReader("soft_tissue", LabelSpec.from_groups([[1], [2, 3], [7]])).label(ref)
    assert (
        lab.dtype == np.int64
        and lab.tolist() == np.select([raw == 1, np.isin(raw, [2, 3]), raw == 7], [1, 2, 3]).tolist()
    )
    img = SliceReader((-160.0, 240.0)).image(ref)
    assert img.shape == (1, 48, 48) and np.array_equal(img, SliceReader("soft_tissue").image(ref))


def _real_ref(tmp_path) -> SliceRef:
    if not REAL.exists():
        pytest.skip("real data folder absent")
    return SliceRef("example_z012", "example", "p0", 0, 12, str(REAL), "", "")


def test_export_real_ct_slice_keeps_world_geometry(tmp_path):
    ref = _real_ref(tmp_path)
    csv_path = export_slices(
        [ref], tmp_path / "exp", (-160.0, 240.0), 1, "random", ["background", "kidney"], progress=False
    )
    vol = load_volume(REAL)
    out = load_volume(tmp_path / "exp" / "images" / "example_z012.nii.gz")
    assert out.shape == (122, 101, 1) and np.array_equal(out.array[:, :, 0], vol.array[:, :, 12])
    assert np.allclose(out.affine @ [40, 50, 0, 1], vol.affine @ [40, 50, 12, 1])
    assert (tmp_path / "exp" / "previews" / "example_z012.png").stat().st_size > 100
    readme = (tmp_path / "exp" / "README.txt").read_text()
    assert "example_z012" in csv_path.read_text() and "-1 (int16 files), 255 in a uint8 file" in readme


def test_ingest_accepts_full_and_scribble_and_rejects_mismatches_naming_the_file(tmp_path):
    ref = _real_ref(tmp_path)
    export_slices([ref], tmp_path / "exp", None, unlabelled=9, progress=False)
    assert "255 in a uint8 file, or 9" in (tmp_path / "exp" / "README.txt").read_text()
    img = load_volume(tmp_path / "exp" / "images" / "example_z012.nii.gz")
    ann = tmp_path / "ann"
    full = np.zeros((122, 101, 1), np.uint8)
    full[40:60, 30:50] = 2
    save_nifti(Volume(full, img.affine), ann / "example_z012_label.nii.gz")
    a = read_annotation(ann / "example_z012_label.nii.gz", ref, num_classes=3)
    assert a.kind == "full" and a.label.shape == (122, 101) and int((a.label == 2).sum()) == 400
    scrib = np.full((122, 101, 1), 255, np.uint8)
    scrib[45, 35:45] = 1
    save_nifti(Volume(scrib, img.affine), ann / "example_z012.nii.gz")
    s = read_annotation(ann / "example_z012.nii.gz", ref, num_classes=3)
    assert s.kind == "scribble" and int((s.label == -1).sum()) == 122 * 101 - 10
    own = np.where(scrib == 255, 9, scrib).astype(np.int16)
    save_nifti(Volume(own, img.affine), ann / "own" / "example_z012.nii.gz")
    o = read_annotation(ann / "own" / "example_z012.nii.gz", ref, num_classes=3, unlabelled=9)
    assert np.array_equal(o.label, s.label)
    save_label_map(s.label[:, :, None], ann / "ours" / "example_z012.nii.gz", img.affine)  # int16, -1
    assert np.array_equal(read_annotation(ann / "ours" / "example_z012.nii.gz", ref, num_classes=3).label, s.label)
    with pytest.raises(InvalidDataError, match="declared a full mask"):
        read_annotation(ann / "example_z012.nii.gz", ref, num_classes=3, kind="full")
    moved = img.affine.copy()
    moved[2, 3] += 3.0  # the next slice up
    bad = tmp_path / "bad"
    save_nifti(Volume(full, moved), bad / "example_z012.nii.gz")
    with pytest.raises(InvalidDataError, match=r"bad/example_z012.nii.gz: geometry differs .* 3 mm"):
        read_annotation(bad / "example_z012.nii.gz", ref, num_classes=3)
    save_nifti(Volume(full[:100], img.affine), bad / "example_z012.nii.gz")
    with pytest.raises(InvalidDataError, match=r"shape \(100, 101, 1\) does not match"):
        read_annotation(bad / "example_z012.nii.gz", ref, num_classes=3)
    save_nifti(Volume(full * 3, img.affine), bad / "example_z012.nii.gz")
    with pytest.raises(InvalidDataError, match=r"bad/example_z012.nii.gz: label values \[6\]"):
        read_annotation(bad / "example_z012.nii.gz", ref, num_classes=3)
    save_nifti(Volume(full, img.affine), bad / "other_z001.nii.gz")
    accepted, rejected = scan_folder(bad, {ref.slice_id: ref}, 3)
    assert not accepted and len(rejected) == 2
    assert any("other_z001.nii.gz: not one of the selected slices" in m for m in rejected)
    assert any("example_z012.nii.gz" in m and "label values" in m for m in rejected)


def test_slice_id_of():
    assert slice_id_of(Path("ct_000_z004_label.nii.gz")) == "ct_000_z004"
    assert slice_id_of(Path("ct_000_z004.seg.nrrd")) == "ct_000_z004"
    assert slice_id_of(Path("ct_000_z004.nii")) == "ct_000_z004"


def test_volume_export_and_slicer_style_volume_or_crop_segmentations(tmp_path):
    from medwss.data.orientation import canonical, permuted_copy

    aff = np.array([[0.0, 0, 2.0, -30], [1.5, 0, 0, 4], [0, -1.5, 0, 9], [0, 0, 0, 1]])  # stored A, S, R
    save_nifti(Volume(np.arange(9 * 6 * 8, dtype=np.int16).reshape(9, 6, 8), aff), tmp_path / "v.nii.gz")
    canon, orient = canonical(load_volume(tmp_path / "v.nii.gz"))
    assert orient.codes != "RAS" and orient.canonical_shape == (8, 9, 6)
    X, Y, Z = orient.canonical_shape
    refs = {f"case1_z00{k}": SliceRef(f"case1_z00{k}", "case1", "p", 0, k, str(tmp_path / "v.nii.gz")) for k in (1, 4)}
    export_slices(list(refs.values()), tmp_path / "exp", None, progress=False)
    vol = load_volume(tmp_path / "exp" / "volumes" / "case1.nii.gz")
    assert np.array_equal(vol.array, canon.array) and np.allclose(vol.affine, orient.canonical_affine)
    lines = (tmp_path / "exp" / "volumes" / "case1_slices.csv").read_text().splitlines()
    z = [float((orient.canonical_affine @ [0, 0, k, 1])[2]) for k in (1, 4)]
    assert lines[0] == "slice_id,slice_index,world_z_mm" and lines[1:] == [
        f"case1_z00{k},{k},{w:.3f}" for k, w in zip((1, 4), z, strict=True)
    ]
    assert "volumes/case1.nii.gz" in (tmp_path / "exp" / "selection.csv").read_text()

    seg = np.zeros((X, Y, Z), np.uint8)  # a Slicer labelmap on the volume grid: painted slices 1, 2 and 4
    seg[2:5, 3:6, 1], seg[1:3, 1:4, 2], seg[4:7, 2:5, 4] = 1, 2, 2
    save_nifti(Volume(seg, vol.affine), tmp_path / "ann" / "case1_seg.nii.gz")
    accepted, rejected = scan_folder(tmp_path / "ann", refs, 3)
    assert not rejected and [(a.slice_id, a.kind) for a in accepted] == [("case1_z001", "full"), ("case1_z004", "full")]
    assert np.array_equal(accepted[1].label, seg[:, :, 4]) and np.allclose(
        accepted[1].affine, load_volume(tmp_path / "exp" / "images" / "case1_z004.nii.gz").affine
    )
    save_nifti(permuted_copy(Volume(seg, vol.affine), (2, 0, 1), flip=(1,)), tmp_path / "perm" / "case1.nii.gz")
    back, _ = scan_folder(tmp_path / "perm", refs, 3)  # saved in another axis order: same slices
    assert [np.array_equal(a.label, b.label) for a, b in zip(back, accepted, strict=True)] == [True, True]

    shift = np.eye(4)
    shift[:3, 3] = [2, 1, 0]
    crop = seg[2:7, 1:6, 0:3]  # a crop (ITK-SNAP / Slicer Crop Volume, no resampling) covering slice 1 only
    save_nifti(Volume(crop, vol.affine @ shift), tmp_path / "crop" / "case1.nii.gz")
    (a,) = scan_folder(tmp_path / "crop", refs, 3)[0]
    assert a.slice_id == "case1_z001" and a.kind == "scribble" and int((a.label >= 0).sum()) == 25
    assert np.array_equal(a.label[2:7, 1:6], crop[:, :, 1])
    empty = seg.copy()
    empty[:, :, 4] = 0  # slice 4 not painted: pending, unless declared full
    save_nifti(Volume(empty, vol.affine), tmp_path / "empty" / "case1.nii.gz")
    assert [a.slice_id for a in scan_folder(tmp_path / "empty", refs, 3)[0]] == ["case1_z001"]
    assert [a.slice_id for a in scan_folder(tmp_path / "empty", refs, 3, kind="full")[0]] == [
        "case1_z001",
        "case1_z004",
    ]
    half = shift.copy()
    half[:3, 3] = [2.5, 1, 0]
    save_nifti(Volume(crop, vol.affine @ half), tmp_path / "bad" / "case1.nii.gz")
    save_nifti(Volume(crop, vol.affine @ np.diag([2, 1, 1, 1]) @ shift), tmp_path / "bad" / "case1_seg.nii.gz")
    shift[:3, 3] = [6, 1, 0]
    save_nifti(Volume(crop, vol.affine @ shift), tmp_path / "bad" / "case1_label.nii.gz")
    accepted, rejected = scan_folder(tmp_path / "bad", refs, 3)
    assert not accepted and len(rejected) == 3
    assert sum("not on the grid of volume case1 nor a crop of it" in m for m in rejected) == 2
    assert any(m.startswith(str(tmp_path / "bad" / "case1_label.nii.gz")) and "reach outside" in m for m in rejected)


@pytest.mark.slow
def test_real_ct_organ_map_as_a_volume_and_a_crop_segmentation(tmp_path):
    ref = _real_ref(tmp_path)
    refs = {ref.slice_id: ref, "example_z020": SliceRef("example_z020", "example", "p0", 0, 20, str(REAL))}
    seg = load_volume(REAL.parent / "example_seg.nii.gz")  # TotalSegmentator map on the CT grid, values 0..117
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "example.nii.gz").write_bytes((REAL.parent / "example_seg.nii.gz").read_bytes())
    accepted, rejected = scan_folder(tmp_path / "vol", refs, 118)
    assert not rejected and [a.slice_id for a in accepted] == ["example_z012", "example_z020"]
    assert np.array_equal(accepted[1].label, seg.array[:, :, 20]) and accepted[1].kind == "full"
    shift = np.eye(4)
    shift[:3, 3] = [30, 20, 10]
    save_nifti(Volume(seg.array[30:90, 20:80, 10:18], seg.affine @ shift), tmp_path / "crop" / "example_seg.nii.gz")
    (a,) = scan_folder(tmp_path / "crop", refs, 118)[0]  # slice 20 lies outside the crop: stays pending
    assert a.slice_id == "example_z012" and a.kind == "scribble"
    assert np.array_equal(a.label[30:90, 20:80], seg.array[30:90, 20:80, 12]) and int((a.label >= 0).sum()) == 3600
