"""Volume reading and writing: NIfTI, MHA/NRRD, DICOM series and files; round trips and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import (
    AmbiguousInputError,
    CorruptFileError,
    FileNotFound,
    InvalidDataError,
    UnsupportedFormatError,
)
from medwss.io import Volume, load_volume, save_nifti
from tests.conftest import package_data


def _volume(rng: np.random.Generator) -> Volume:
    c, s = np.cos(0.1), np.sin(0.1)  # an oblique (rotated) but orthogonal grid, as scanners write
    affine = np.eye(4)
    affine[:3, :3] = np.array([[-1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([0.8, 0.8, 2.5])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    return Volume(rng.integers(-1000, 1000, (7, 6, 5)).astype(np.int16), affine, {"modality": "CT"})


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_array_and_affine(tmp_path, rng, suffix):
    vol = _volume(rng)
    path = save_nifti(vol, tmp_path / f"v{suffix}")
    back = load_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert back.array.dtype == np.int16
    assert back.orientation == vol.orientation == "LAS"


def test_save_nifti_leaves_no_temporary_files(tmp_path, rng):
    save_nifti(_volume(rng), tmp_path / "a.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


def test_save_nifti_converts_bool_and_rejects_other_suffix(tmp_path):
    path = save_nifti(np.ones((3, 3, 3), bool), tmp_path / "m.nii.gz")
    assert load_volume(path).array.dtype == np.uint8
    with pytest.raises(UnsupportedFormatError, match="m.png"):
        save_nifti(np.ones((3, 3, 3)), tmp_path / "m.png")


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_formats_match_nifti_geometry(tmp_path, rng, suffix):
    import SimpleITK as sitk

    vol = _volume(rng)
    nifti = save_nifti(vol, tmp_path / "v.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(nifti)), str(tmp_path / f"v{suffix}"))
    back = load_volume(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    assert back.metadata["reader"] == "SimpleITK"


def test_real_ct_nifti(real):
    vol = load_volume(real / "volumes" / "example_ct_sm.nii.gz")
    assert vol.shape == (122, 101, 30)
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert vol.array.dtype == np.int16
    assert vol.array.min() <= -1000 and vol.array.max() > 500  # Hounsfield units


def test_real_segmentation_kidney_counts(real):
    seg = load_volume(real / "volumes" / "example_seg.nii.gz").array
    assert int((seg == 2).sum()) == 3947
    assert int((seg == 3).sum()) == 3676
    assert int(np.any((seg == 2) | (seg == 3), axis=(0, 1)).sum()) == 23


def test_real_dicom_series_shape_spacing_and_order(real):
    import SimpleITK as sitk

    folder = real / "volumes" / "ct_dicom_series"
    vol = load_volume(folder)
    assert vol.shape == (16, 16, 4)
    assert vol.spacing[:2] == pytest.approx((0.488281, 0.488281))
    assert vol.modality == "CT"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    ref = sitk.GetArrayFromImage(reader.Execute()).transpose(2, 1, 0)
    np.testing.assert_array_equal(vol.array, ref)  # same slice order as GDCM's position sort
    assert vol.spacing[2] == pytest.approx(reader.Execute().GetSpacing()[2], rel=1e-4)


def test_dicom_series_ordered_by_position_not_name(tmp_path, real):
    import shutil

    import pydicom

    src = real / "volumes" / "ct_dicom_series"
    files = sorted(src.iterdir())
    ref = load_volume(src)
    # rename so that name order is the reverse of position order
    positions = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files]
    for rank, i in enumerate(np.argsort(positions)[::-1]):
        shutil.copy(files[i], tmp_path / f"slice_{rank:02d}.dcm")
    vol = load_volume(tmp_path)
    np.testing.assert_array_equal(vol.array, ref.array)


def test_two_series_in_one_folder_is_an_error_listing_them(tmp_path, real):
    import pydicom

    for i, f in enumerate(sorted((real / "volumes" / "ct_dicom_series").iterdir())):
        ds = pydicom.dcmread(f)
        ds.write_like_original = True
        ds.save_as(tmp_path / f"a{i}.dcm")
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.SeriesNumber = 7
        ds.SOPInstanceUID = f"1.2.3.4.{i}"
        ds.save_as(tmp_path / f"b{i}.dcm")
    with pytest.raises(AmbiguousInputError, match="2 DICOM series") as err:
        load_volume(tmp_path)
    assert "1.2.3.4" in str(err.value) and "--series" in str(err.value)
    assert load_volume(tmp_path, series="7").shape == (16, 16, 4)
    assert load_volume(tmp_path, series="1.2.3.4").metadata["seriesNumber"] == "7"


def test_pydicom_ct_small_single_file():
    vol = load_volume(package_data("pydicom", "data", "test_files", "CT_small.dcm"))
    assert vol.shape == (128, 128, 1)
    assert vol.modality == "CT"
    assert vol.spacing[:2] == pytest.approx((0.661468, 0.661468))
    assert vol.array.min() < -500  # rescaled to Hounsfield units


def test_nibabel_anatomical_nii():
    vol = load_volume(package_data("nibabel", "tests", "data", "anatomical.nii"))
    assert vol.shape == (33, 41, 25)
    assert vol.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert vol.array.dtype.isnative


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFound, match="nope.nii.gz"):
        load_volume(tmp_path / "nope.nii.gz")


def test_empty_folder(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="no DICOM images"):
        load_volume(tmp_path)


def test_corrupt_nifti(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(CorruptFileError, match="bad.nii.gz"):
        load_volume(bad)


def test_nifti_with_nans(tmp_path):
    arr = np.zeros((4, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    path = save_nifti(arr, tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidDataError, match="1 NaN"):
        load_volume(path)
    filled = load_volume(path, nan="fill")
    assert np.isfinite(filled.array).all() and filled.metadata["nan_filled"] == 1
    assert np.isnan(load_volume(path, nan="keep").array).sum() == 1


def test_unknown_extension(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="notes.txt"):
        load_volume(f)


def test_colour_multiframe_dicom_keeps_samples_last():
    path = package_data("pydicom", "data", "test_files", "SC_rgb_rle_2frame.dcm")
    vol = load_volume(path, channels=True)  # pipelines (channels=False) refuse a multi-channel volume
    assert vol.shape == (100, 100, 2, 3)
    with pytest.raises(InvalidDataError, match="3 channels"):
        load_volume(path)
    assert not np.array_equal(vol.array[..., 0], vol.array[..., 2])  # real colour, not three copies


def test_dicom_without_image_is_unsupported():
    with pytest.raises(UnsupportedFormatError, match="rtplan.dcm: DICOM file holds no image"):
        load_volume(package_data("pydicom", "data", "test_files", "rtplan.dcm"))
