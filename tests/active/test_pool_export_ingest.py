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
