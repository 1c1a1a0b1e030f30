"""Reading and writing volumes: NIfTI (nibabel), NRRD/MHA/MHD and others (SimpleITK), DICOM (pydicom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from medwss.errors import CorruptFileError, InvalidDataError, UnsupportedFormatError, require_file
from medwss.io.atomic import atomic_path
from medwss.io.dicom import is_dicom, read_dicom_file, read_dicom_series
from medwss.io.volume import Volume, affine_from_lps

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".gipl", ".gipl.gz", ".vtk")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + (".dcm",)

NanPolicy = Literal["raise", "fill", "keep"]


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def is_volume_path(path: str | Path) -> bool:
    """True if `path` looks like a volume: a volume file extension, a DICOM file, or a folder."""
    p = Path(path)
    return p.is_dir() or has_suffix(p, VOLUME_SUFFIXES) or (p.is_file() and is_dicom(p))


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        array = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CorruptFileError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from exc
    meta = {"reader": "nibabel", "intent": str(img.header.get_intent()[0])}
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return Volume(array, img.affine, meta, str(path))


def _read_itk(path: Path) -> Volume:
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()
        reason = next((ln.strip() for ln in first if "Exception" not in ln and ln.strip()), "unreadable")
        raise CorruptFileError(f"cannot read image with SimpleITK ({reason})", path) from exc
    dim = img.GetDimension()
    array = sitk.GetArrayFromImage(img)  # (z, y, x[, c])
    if dim == 2:
        array = array[None]
    spatial = array.ndim - (1 if img.GetNumberOfComponentsPerPixel() > 1 else 0)
    axes = list(range(spatial))[::-1] + list(range(spatial, array.ndim))
    array = np.ascontiguousarray(array.transpose(axes))
    direction = np.eye(3)
    spacing = np.ones(3)
    origin = np.zeros(3)
    n = min(dim, 3)
    direction[:n, :n] = np.asarray(img.GetDirection()).reshape(dim, dim)[:n, :n]
    spacing[:n] = img.GetSpacing()[:n]
    origin[:n] = img.GetOrigin()[:n]
    meta = {"reader": "SimpleITK"}
    for key in img.GetMetaDataKeys():
        if key.lower() in ("modality", "0008|0060"):
            meta["modality"] = img.GetMetaData(key).strip()
    return Volume(array, affine_from_lps(direction, spacing, origin), meta, str(path))


def _check_nan(volume: Volume, nan: NanPolicy) -> Volume:
    if not np.issubdtype(volume.array.dtype, np.floating) or nan == "keep":
        return volume
    bad = ~np.isfinite(volume.array)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return volume
    if nan == "raise":
        raise InvalidDataError(
            f"{n_bad} NaN or infinite voxels; pass nan='fill' to replace them with the minimum", volume.path
        )
    finite = volume.array[~bad]
    array = volume.array.copy()
    array[bad] = finite.min() if finite.size else 0
    return Volume(array, volume.affine, {**volume.metadata, "nan_filled": n_bad}, volume.path)


def load_volume(path: str | Path, series: str | None = None, nan: NanPolicy = "raise") -> Volume:
    """Read a volume from NIfTI, NRRD/MHA/MHD, a DICOM series folder or a single DICOM file.

    Args:
        path: File or folder.
        series: For a folder with several DICOM series, the SeriesInstanceUID or SeriesNumber to read.
        nan: What to do with NaN or infinite voxels: raise `InvalidDataError`, fill with the minimum, or keep.

    Raises:
        FileNotFound, UnsupportedFormatError, CorruptFileError, InvalidDataError, AmbiguousInputError.
    """
    p = require_file(path)
    if p.is_dir():
        volume = read_dicom_series(p, series)
    elif has_suffix(p, NIFTI_SUFFIXES):
        volume = _read_nifti(p)
    elif has_suffix(p, ITK_SUFFIXES):
        volume = _read_itk(p)
    elif has_suffix(p, (".dcm",)) or is_dicom(p):
        volume = read_dicom_file(p)
    else:
        raise UnsupportedFormatError("not a volume format medwss reads (NIfTI, NRRD, MHA/MHD, DICOM)", p)
    if volume.array.size == 0:
        raise InvalidDataError("image is empty", p)
    return _check_nan(volume, nan)


def save_nifti(volume: Volume | np.ndarray, path: str | Path, affine: np.ndarray | None = None) -> Path:
    """Write a volume (or an array with `affine`) as NIfTI, atomically, keeping the affine exactly.

    Bool arrays are stored as uint8, int64 as int32 when the values fit.
    """
    import nibabel as nib

    if isinstance(volume, Volume):
        array, affine = volume.array, volume.affine
    else:
        array = np.asarray(volume)
        affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.int64 and (array.size == 0 or (array.min() >= -(2**31) and array.max() < 2**31)):
        array = array.astype(np.int32)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path = Path(path)
    if not has_suffix(path, NIFTI_SUFFIXES):
        raise UnsupportedFormatError("NIfTI output needs a .nii or .nii.gz name", path)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
