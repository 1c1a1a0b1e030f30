"""`cases_from_folder`: nnU-Net channel groups, plain files, DICOM series sub-folders, bad files skipped."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from medwss.errors import ConfigError, FileNotFound, InvalidDataError
from medwss.io.folder import cases_from_folder, cases_from_input, strip_suffix


def _nifti(path, shape=(4, 5, 3)) -> None:
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))


def test_nnunet_channels_are_grouped_in_suffix_order(tmp_path):
    for case in ("b", "a"):
        for ch in (1, 0, 2):  # written out of order
            _nifti(tmp_path / f"{case}_{ch:04d}.nii.gz")
    (tmp_path / "dataset.json").write_text("{}")  # not an image: ignored
    cases, skipped = cases_from_folder(tmp_path)
    assert [c.case_id for c in cases] == ["a", "b"] and skipped == []
    assert list(cases[0].images) == ["0000", "0001", "0002"]
    assert cases[0].images["0002"].name == "a_0002.nii.gz" and cases[0].modality == "OT"
    named, _ = cases_from_folder(tmp_path, "MR", channels=("t2", "adc", "hbv"))
    assert named[1].images == {n: tmp_path / f"b_{i:04d}.nii.gz" for i, n in enumerate(("t2", "adc", "hbv"))}
    assert named[1].modality == "MR" and named[1].patient_id == "b"


def test_single_channel_nnunet_and_plain_files(tmp_path):
    _nifti(tmp_path / "case1_0000.nii.gz")
    _nifti(tmp_path / "case2_0000.nii")
    cases, _ = cases_from_folder(tmp_path)
    assert [(c.case_id, list(c.images)) for c in cases] == [("case1", ["image"]), ("case2", ["image"])]
    plain = tmp_path / "plain"
    plain.mkdir()
    _nifti(plain / "liver_ct.nii.gz")
    _nifti(plain / "scan_0001.nii.gz")  # a 4-digit suffix without any _0000: a plain stem
    cases, _ = cases_from_folder(plain)
    assert [c.case_id for c in cases] == ["liver_ct", "scan_0001"]


def test_gaps_wrong_channel_counts_and_unreadable_files_are_skipped_and_reported(tmp_path):
    _nifti(tmp_path / "good_0000.nii.gz")
    _nifti(tmp_path / "good_0001.nii.gz")
    _nifti(tmp_path / "gap_0000.nii.gz")
    _nifti(tmp_path / "gap_0002.nii.gz")
    (tmp_path / "bad_0000.nii.gz").write_bytes(b"not a nifti")
    _nifti(tmp_path / "bad_0001.nii.gz")
    cases, skipped = cases_from_folder(tmp_path)
    assert [c.case_id for c in cases] == ["good"]
    errors = {s["path"].rsplit("/", 1)[-1]: s["error"] for s in skipped}
    assert set(errors) == {"bad_0000.nii.gz", "gap_0000.nii.gz"}
    assert "bad_0000.nii.gz" in errors["bad_0000.nii.gz"] and "cannot read NIfTI" in errors["bad_0000.nii.gz"]
    assert "0000, 0002" in errors["gap_0000.nii.gz"]
    with pytest.raises(InvalidDataError, match="the model takes 3"):
        cases_from_folder(tmp_path, channels=("t2", "adc", "hbv"))


def test_empty_or_all_bad_folder_is_one_clear_error(tmp_path):
    with pytest.raises(InvalidDataError, match="no image in this folder"):
        cases_from_folder(tmp_path)
    (tmp_path / "x.nii.gz").write_bytes(b"\x00" * 10)
    with pytest.raises(InvalidDataError, match="none of 1 image"):
        cases_from_folder(tmp_path)
    with pytest.raises(FileNotFound):
        cases_from_folder(tmp_path / "missing")
    with pytest.raises(InvalidDataError, match="not a folder"):
        cases_from_folder(tmp_path / "x.nii.gz")
    with pytest.raises(InvalidDataError, match="modality"):
        cases_from_folder(tmp_path, "XYZ")


def test_dicom_series_subfolders_are_cases(real, tmp_path):
    from medwss.io import load_volume

    series = real / "volumes" / "ct_dicom_series"
    shutil.copytree(series, tmp_path / "patient_a")
    (tmp_path / "empty_dir").mkdir()
    _nifti(tmp_path / "other.nii.gz")
    cases, skipped = cases_from_folder(tmp_path)
    by_id = {c.case_id: c for c in cases}
    assert set(by_id) == {"patient_a", "other"}
    assert by_id["patient_a"].image == tmp_path / "patient_a" and by_id["patient_a"].modality == "CT"
    assert load_volume(by_id["patient_a"].image).shape == load_volume(series).shape
    assert [s["path"] for s in skipped] == [str(tmp_path / "empty_dir")]
    assert "no DICOM image series" in skipped[0]["error"]
    loose, _ = cases_from_folder(series)  # loose DICOM files: the folder itself is one case
    assert [(c.case_id, c.image) for c in loose] == [("ct_dicom_series", series)]


def test_manifest_and_folder_are_exclusive(tmp_path):
    _nifti(tmp_path / "a.nii.gz")
    with pytest.raises(ConfigError, match="not both"):
        cases_from_input(tmp_path / "m.csv", tmp_path)
    with pytest.raises(ConfigError, match="give a manifest"):
        cases_from_input(None, None)
    manifest, cases, skipped = cases_from_input(None, tmp_path)
    assert manifest is None and [c.case_id for c in cases] == ["a"] and skipped == []


def test_strip_suffix():
    assert strip_suffix("x_0000.nii.gz") == "x_0000" and strip_suffix("slide.SVS") == "slide"
    assert strip_suffix("notes.txt") is None and strip_suffix(".nii.gz") is None
