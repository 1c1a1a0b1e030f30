"""Hostile volume files: headers that claim huge sizes are refused before any data is read (one line,
naming the file, the claim and the override), and complex, >4D or singular-affine volumes are refused."""

from __future__ import annotations

import gzip
import resource
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medwss.cli.main import main
from medwss.errors import CorruptFileError, InvalidDataError
from medwss.io.limits import LimitExceededError, check_mpp
from medwss.io.volumes import load_volume, save_nifti


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _forged_nifti(path: Path, shape: tuple[int, ...], dtype=np.int16, data_bytes: int = 1000) -> Path:
    """A NIfTI header claiming `shape`, followed by only `data_bytes` of data (gzip if the name ends .gz)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * data_bytes
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def test_huge_gz_header_refused_fast_and_small(tmp_path):
    f = _forged_nifti(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    assert f.stat().st_size < 2000
    before, t0 = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(LimitExceededError) as err:
        load_volume(f)
    assert time.perf_counter() - t0 < 1.0 and _peak_rss_mb() - before < 100
    msg = str(err.value)
    assert "\n" not in msg and "bomb.nii.gz" in msg and "2000x2000x2000" in msg
    assert "16 GB" in msg and "MEDWSS_MAX_VOLUME_BYTES" in msg


def test_gz_claim_larger_than_gzip_can_hold(tmp_path):
    """Under the cap, but 1.4 KB of gzip cannot hold 200 MB: truncated or forged, refused before reading."""
    f = _forged_nifti(tmp_path / "forged.nii.gz", (500, 500, 400))
    with pytest.raises(LimitExceededError, match="forged.nii.gz: .*compressed file is only .*truncated or forged"):
        load_volume(f)


def test_truncated_uncompressed_nifti(tmp_path):
    f = _forged_nifti(tmp_path / "short.nii", (64, 64, 64))
    with pytest.raises(CorruptFileError, match=r"short.nii: header claims 524,288 bytes .*\(truncated\)"):
        load_volume(f)


def test_cap_is_configurable(tmp_path, monkeypatch):
    f = save_nifti(np.zeros((16, 16, 16), np.float32), tmp_path / "ok.nii.gz")
    assert load_volume(f).shape == (16, 16, 16)
    monkeypatch.setenv("MEDWSS_MAX_VOLUME_BYTES", "1000")
    with pytest.raises(LimitExceededError, match="16x16x16 .*over the 1 KB limit"):
        load_volume(f)


def test_itk_header_checked(tmp_path, monkeypatch):
    import SimpleITK as sitk

    f = tmp_path / "v.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(f))
    monkeypatch.setenv("MEDWSS_MAX_VOLUME_BYTES", "100")
    with pytest.raises(LimitExceededError, match=r"v.nrrd: header \(16-bit signed integer\) claims 8x8x8x1"):
        load_volume(f)


def test_complex_5d_and_singular_refused(tmp_path):
    c = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.complex64), np.eye(4)), str(c))
    with pytest.raises(InvalidDataError, match="c.nii: complex voxels"):
        load_volume(c)
    v5 = save_nifti(np.ones((4, 4, 4, 2, 2), np.float32), tmp_path / "v5.nii.gz")
    with pytest.raises(InvalidDataError, match="v5.nii.gz: image is 5D"):
        load_volume(v5)
    sing = tmp_path / "sing.nii"
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 4, 4))
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"], hdr["sform_code"], hdr["qform_code"] = 352, 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]
    sing.write_bytes(hdr.binaryblock + b"\0" * 4 + np.ones(64, np.float32).tobytes())
    with pytest.raises(InvalidDataError, match="sing.nii: the voxel-to-world affine is singular"):
        load_volume(sing)


def test_info_on_bomb_is_one_line_exit_2(tmp_path, capsys):
    f = _forged_nifti(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    t0 = time.perf_counter()
    assert main(["info", str(f)]) == 2
    assert time.perf_counter() - t0 < 5.0  # was 46 s and 15.5 GB; the parser build dominates on a loaded machine
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("medwss: error: ") and "bomb.nii.gz" in err


def test_nan_volume_raises_unless_fill(tmp_path):
    f = save_nifti(np.full((4, 4, 4), np.nan, np.float32), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidDataError, match="nan.nii.gz: 64 NaN or infinite voxels"):
        load_volume(f)
    assert load_volume(f, nan="fill").metadata["nan_filled"] == 64


def test_mpp_plausibility():
    check_mpp(0.25, "slide", "s.svs")
    with pytest.raises(LimitExceededError, match=r"s.tif: slide resolution 352.8 µm/px is outside .*--force-mpp"):
        check_mpp(352.8, "slide resolution", "s.tif")
    check_mpp(352.8, "slide resolution", "s.tif", force=True)
    with pytest.raises(InvalidDataError, match="not a positive number"):
        check_mpp(float("nan"), "slide", "s.tif", force=True)
