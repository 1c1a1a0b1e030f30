"""DICOM SEG, Slicer colour tables and probability maps on the source grid (medwss.io.seg_export)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medwss.data.labels import LABEL_SPECS, LabelSpec
from medwss.errors import InvalidDataError
from medwss.io import load_volume
from medwss.io.seg_export import (
    read_colour_table,
    read_dicom_seg,
    segment_colours,
    source_instances,
    write_colour_table,
    write_dicom_seg,
    write_outputs,
    write_probability_map,
    write_slicer_labels,
)
from tests.conftest import package_data

SPEC = LABEL_SPECS["kidney_tumour"]  # 1 kidney, 2 tumour


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    """Distinct content per slice, so a slice order mix-up changes the voxels."""
    lab = np.zeros(shape[:3], dtype=np.int64)
    for k in range(shape[2]):
        lab[1 + k : 6 + k, 2 : 4 + 2 * k, k] = 1
    lab[8:12, 9:15, 0] = 2
    lab[0, 0, -1] = -1  # unlabelled → background in the SEG
    return lab


def _check_seg(seg_path: Path, source: Path, labels: np.ndarray, spec: LabelSpec) -> None:
    """Same segments (numbers, labels, colours), same geometry per frame, same voxels."""
    hd = pytest.importorskip("highdicom")
    import pydicom

    seg = hd.seg.segread(str(seg_path))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.get_segment_numbers() == list(range(1, spec.num_classes))
    assert [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()] == spec.names[1:]
    family = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmFamilyCodeSequence[0]
    assert (family.CodeValue, family.CodingSchemeDesignator) == ("123110", "DCM")
    for n, rgb in zip(seg.get_segment_numbers(), segment_colours(spec), strict=True):
        lab = seg.get_segment_description(n).RecommendedDisplayCIELabValue
        back = hd.color.CIELabColor.from_dicom_value(lab).to_rgb()
        assert np.abs(np.subtract(back, rgb)).max() <= 2
    # geometry: every frame sits at the position of the source instance it references
    sources = {str(ds.SOPInstanceUID): ds for ds in source_instances(source)}
    first = next(iter(sources.values()))
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float),
        np.asarray(first.ImageOrientationPatient, float),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        np.asarray(shared.PixelMeasuresSequence[0].PixelSpacing, float), np.asarray(first.PixelSpacing, float)
    )
    assert seg.Rows == first.Rows and seg.Columns == first.Columns
    assert str(seg.StudyInstanceUID) == str(first.StudyInstanceUID)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        np.testing.assert_allclose(ipp, np.asarray(sources[uid].ImagePositionPatient, float), atol=1e-4)
    # voxels: read back through highdicom, mapped onto the source grid
    expected = np.where(labels < 0, 0, labels)
    np.testing.assert_array_equal(read_dicom_seg(seg_path, source), expected)
    # and independently with pydicom: frame f of segment s is labels[:, :, k].T of its source instance
    ds = pydicom.dcmread(seg_path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    order = [str(d.SOPInstanceUID) for d in source_instances(source)]
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ident = group if "SegmentIdentificationSequence" in group else ds.SharedFunctionalGroupsSequence[0]
        s = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = str(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        k = order.index(uid)
        np.testing.assert_array_equal(frames[f].astype(bool), (expected[:, :, k] == s).T)


def test_dicom_seg_on_the_real_ct_series_reads_back_with_same_segments_geometry_voxels(real, tmp_path):
    pytest.importorskip("highdicom")
    source = real / "volumes" / "ct_dicom_series"
    vol = load_volume(source)
    assert vol.shape == (16, 16, 4)
    labels = _labels(vol.shape)
    out = write_dicom_seg(vol.with_array(labels), source, tmp_path / "ct_seg.dcm", SPEC)
    assert out.exists() and not list(tmp_path.glob(".*tmp*"))
    _check_seg(out, source, labels, SPEC)


def test_dicom_seg_follows_slice_positions_not_file_names(real, tmp_path):
    """Files renamed in reverse position order: frames still map to the right slices."""
    pytest.importorskip("highdicom")
    src = real / "volumes" / "ct_dicom_series"
    ordered = source_instances(src)
    files = sorted(src.iterdir())
    by_uid = {}
    import pydicom

    for f in files:
        by_uid[str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)] = f
    copy = tmp_path / "series"
    copy.mkdir()
    for i, ds in enumerate(reversed(ordered)):  # highest slice gets the first name
        shutil.copy(by_uid[str(ds.SOPInstanceUID)], copy / f"{i:02d}.dcm")
    vol = load_volume(copy)
    labels = _labels(vol.shape)
    out = write_dicom_seg(vol.with_array(labels), copy, tmp_path / "seg.dcm", SPEC)
    _check_seg(out, copy, labels, SPEC)


def test_dicom_seg_on_a_single_ct_image(tmp_path):
    pytest.importorskip("highdicom")
    source = package_data("pydicom", "data", "test_files", "CT_small.dcm")
    vol = load_volume(source)
    labels = np.zeros(vol.shape[:3], dtype=np.int64)
    labels[20:40, 10:30, 0] = 1
    spec = LABEL_SPECS["lesion"]
    out = write_dicom_seg(labels, source, tmp_path / "seg.dcm", spec)
    _check_seg(out, source, labels, spec)
    empty = write_dicom_seg(labels * 0, source, tmp_path / "empty.dcm", spec)  # no foreground: still a valid SEG
    assert (read_dicom_seg(empty, source) == 0).all()


def test_dicom_seg_refuses_another_grid_and_bad_labels(real, tmp_path):
    pytest.importorskip("highdicom")
    source = real / "volumes" / "ct_dicom_series"
    vol = load_volume(source)
    with pytest.raises(InvalidDataError, match="not on the source grid"):
        write_dicom_seg(np.zeros((16, 16, 3), np.int64), source, tmp_path / "a.dcm", SPEC)
    shifted = vol.affine.copy()
    shifted[0, 3] += 5.0
    from medwss.io.volume import Volume

    with pytest.raises(InvalidDataError, match="grid"):
        write_dicom_seg(Volume(np.zeros(vol.shape, np.int64), shifted), source, tmp_path / "b.dcm", SPEC)
    with pytest.raises(InvalidDataError, match="outside"):
        write_dicom_seg(np.full(vol.shape, 5, np.int64), source, tmp_path / "c.dcm", SPEC)
    assert not list(tmp_path.iterdir())


def test_colour_table_names_and_colours_as_in_the_spec(tmp_path):
    spec = LabelSpec.from_classes({"liver": [5], "right kidney": [2], "odd class": [9]})
    path = write_colour_table(spec, tmp_path / "t.ctbl", colours={"odd class": (1, 2, 3)})
    text = path.read_text().splitlines()
    assert text[0].startswith("# Color table file") and text[1] == "# 4 values"
    table = read_colour_table(path)
    assert table[0] == ("background", (0, 0, 0, 0))
    assert [table[i][0] for i in (1, 2, 3)] == ["liver", "right_kidney", "odd_class"]  # spaces → underscores
    colours = segment_colours(spec, {"odd class": (1, 2, 3)})
    assert [table[i][1] for i in (1, 2, 3)] == [(*c, 255) for c in colours]
    assert table[3][1] == (1, 2, 3, 255) and table[1][1] == (221, 130, 101, 255)
    bad = tmp_path / "bad.ctbl"
    bad.write_text("0 background 0 0 0 0\n1 liver red 0 0 255\n")
    with pytest.raises(InvalidDataError, match="line 2"):
        read_colour_table(bad)


def test_slicer_labels_and_probability_map_on_the_source_grid(tmp_path):
    import nibabel as nib

    from medwss.io.volume import Volume

    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    aff[:3, 3] = [-10, 5, 20]
    vol = Volume(np.zeros((12, 10, 4), np.int16), aff, path=str(tmp_path / "case7.nii.gz"))
    labels = _labels(vol.shape)
    nifti, table = write_slicer_labels(labels, vol, tmp_path / "out" / "case7.nii.gz", SPEC)
    assert table == tmp_path / "out" / "case7.ctbl"
    img = nib.load(nifti)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    np.testing.assert_allclose(img.affine, aff)
    assert [v[0] for v in read_colour_table(table).values()] == ["background", "kidney", "tumour"]
    prob = np.linspace(0, 1, labels.size).reshape(labels.shape)
    p = write_probability_map(prob, vol, tmp_path / "p.nii.gz")
    img = nib.load(p)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(img.dataobj), prob, atol=1e-7)
    np.testing.assert_allclose(img.affine, aff)
    with pytest.raises(InvalidDataError, match="not probabilities"):
        write_probability_map(prob * 3, vol, tmp_path / "q.nii.gz")
    with pytest.raises(InvalidDataError, match="source grid"):
        write_probability_map(prob[:5], vol, tmp_path / "q.nii.gz")
    written = write_outputs(vol, labels, SPEC, tmp_path / "all", formats=("nifti",), probabilities=prob)
    assert sorted(written) == ["labels", "probabilities"] and written["labels"].name == "case7.nii.gz"
    with pytest.raises(InvalidDataError, match="unknown output format"):
        write_outputs(vol, labels, SPEC, tmp_path / "all", formats=("png",))


def test_write_outputs_dicom_seg_uses_the_volume_source(real, tmp_path):
    pytest.importorskip("highdicom")
    vol = load_volume(real / "volumes" / "ct_dicom_series")
    labels = _labels(vol.shape)
    written = write_outputs(vol, labels, SPEC, tmp_path, formats=("slicer", "dicom-seg"), name="ct")
    assert sorted(written) == ["colour_table", "dicom_seg", "labels"]
    assert written["dicom_seg"].name == "ct_seg.dcm"
    np.testing.assert_array_equal(read_dicom_seg(written["dicom_seg"], vol.path), np.where(labels < 0, 0, labels))


def test_scribble_predict_writes_dicom_seg_and_slicer_outputs(real, tmp_path, monkeypatch):
    """`scribble predict --format dicom-seg --format slicer` on a DICOM reference (model pieces stubbed)."""
    pytest.importorskip("highdicom")
    from types import SimpleNamespace

    import medwss.scribble.workflow as wf
    from medwss.data.manifest import Case, Manifest

    source = real / "volumes" / "ct_dicom_series"
    ref = load_volume(source)
    prob = np.zeros(ref.shape, np.float32)
    prob[3:9, 4:10, 1:3] = 0.8
    cfg = SimpleNamespace(
        sequences=["t2"], crop_mm=50.0, spacing_mm=None, use_zones=False, reference=None, num_classes=2
    )
    monkeypatch.setattr(wf, "load_members", lambda paths: [(None, None, cfg)])
    monkeypatch.setattr(wf, "load_case", lambda *a, **k: SimpleNamespace(grid=None, reference=ref))
    monkeypatch.setattr(wf, "case_prediction", lambda members, ci, *a, **k: prob)
    case = Case(case_id="ct1", patient_id="p1", site="s", modality="CT", images={"t2": source})
    manifest = Manifest(None, [case])
    out = wf.predict_cases(
        manifest, [case], ["m.pt"], tmp_path, progress=False, formats=("nifti", "dicom-seg", "slicer")
    )
    assert out["done"] == 1 and not out["failed"]
    pred = tmp_path / "predictions"
    assert (pred / "ct1.nii.gz").exists() and (pred / "ct1_labels.ctbl").exists()
    np.testing.assert_array_equal(read_dicom_seg(pred / "ct1_labels_seg.dcm", source), (prob >= 0.5).astype(int))
    assert read_colour_table(pred / "ct1_labels.ctbl")[1][0] == "lesion"
