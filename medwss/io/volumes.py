"""Reading and writing volumes: NIfTI (nibabel), NRRD/MHA/MHD and others (SimpleITK), DICOM (pydicom)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medwss.errors import CorruptFileError, InvalidDataError, UnsupportedFormatError, require_file
from medwss.io.atomic import atomic_path
from medwss.io.dicom import is_dicom, read_dicom_file, read_dicom_series
from medwss.io.limits import check_bytes, check_compressed
from medwss.io.volume import Volume, affine_from_lps
from medwss.registry import Registry

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
        img: Any = nib.load(str(path))  # the header only; the data are read below, after the checks
    except Exception as exc:
        raise CorruptFileError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from exc
    _check_nifti_header(img, path)
    try:
        array = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise CorruptFileError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from exc
    meta = {"reader": "nibabel", "intent": str(img.header.get_intent()[0])}
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return Volume(array, img.affine, meta, str(path))


def _check_nifti_header(img: Any, path: Path) -> None:
    """Refuse, from the header alone, data too large for the cap or larger than the file can hold."""
    shape = tuple(int(s) for s in img.shape)
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind == "c":
        raise InvalidDataError(f"complex voxels ({dtype}); medwss needs real values (split magnitude/phase)", path)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    scaled = not (slope in (1, None) and inter in (0, None))
    stored = check_bytes(f"header ({dtype})", shape, dtype.itemsize, "MEDWSS_MAX_VOLUME_BYTES", path)
    if scaled:  # scaled data come out as floats
        check_bytes("header (scaled to float)", shape, max(dtype.itemsize, 8), "MEDWSS_MAX_VOLUME_BYTES", path)
    check_compressed(stored, path)
    if not path.name.lower().endswith(".gz"):
        offset = int(getattr(img.dataobj, "offset", 0) or 0)
        size = path.stat().st_size
        if path.name.lower().endswith(".nii") and offset + stored > size:
            raise CorruptFileError(
                f"header claims {stored:,} bytes of data from offset {offset} but the file has {size:,} bytes "
                "(truncated)",
                path,
            )


_ITK_BYTES = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}


def _check_itk_header(path: Path) -> None:
    """Refuse an image whose header claims more than the volume cap, before SimpleITK reads the data."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception:
        return  # unreadable headers are reported by the full read below
    kind = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in kind:
        raise InvalidDataError(f"complex voxels ({kind}); medwss needs real values (split magnitude/phase)", path)
    itemsize = next((b for k, b in _ITK_BYTES.items() if k in kind), 8)
    shape = tuple(int(s) for s in reader.GetSize()) + (max(1, int(reader.GetNumberOfComponents())),)
    stored = check_bytes(f"header ({kind})", shape, itemsize, "MEDWSS_MAX_VOLUME_BYTES", path)
    check_compressed(stored, path)


def _read_itk(path: Path) -> Volume:
    import SimpleITK as sitk

    _check_itk_header(path)
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


def load_volume(
    path: str | Path, series: str | None = None, nan: NanPolicy = "raise", channels: bool = False
) -> Volume:
    """Read a volume from NIfTI, NRRD/MHA/MHD, a DICOM series folder or a single DICOM file.

    Every pipeline of medwss needs a 3D real volume: a file with one channel axis of length 1 is
    read as 3D, and a multi-channel (4D) file is refused naming it, unless `channels` (``medwss
    info`` and readers that take channels apart themselves), which returns ``(X, Y, Z, C)``.

    The first reader of `VOLUME_READERS` that accepts the path reads it (`register_volume_reader`
    adds one).

    Args:
        path: File or folder.
        series: For a folder with several DICOM series, the SeriesInstanceUID or SeriesNumber to read.
        nan: What to do with NaN or infinite voxels: raise `InvalidDataError`, fill with the minimum, or keep.
        channels: Return a 3D-plus-channels volume as it is instead of refusing it.

    Raises:
        FileNotFound, UnsupportedFormatError, CorruptFileError, InvalidDataError, AmbiguousInputError;
        `medwss.io.limits.LimitExceededError` when the header claims more than ``MEDWSS_MAX_VOLUME_BYTES``
        (checked before any data are read), or, for ``.gz``, more than the file can hold.
    """
    p = require_file(path)
    reader = next((r for r in VOLUME_READERS.values() if r.accepts(p)), None)
    if reader is None:
        raise UnsupportedFormatError("not a volume format medwss reads (NIfTI, NRRD, MHA/MHD, DICOM)", p)
    volume = reader.read(p, series)
    _check_volume(volume, p)
    if not channels and volume.array.ndim == 4:
        if volume.array.shape[3] != 1:
            raise InvalidDataError(
                f"image has {volume.array.shape[3]} channels (shape {volume.shape}); a 3D volume is needed here: "
                "give one file per channel (image_<name> columns of the manifest)",
                p,
            )
        volume = volume.with_array(volume.array[..., 0])
    return _check_nan(volume, nan)


@dataclass(frozen=True)
class VolumeReader:
    """A registered volume reader: which paths it takes and how it reads them.

    Attributes:
        name: Its name (recorded nowhere else; for messages and listings).
        accepts: ``accepts(path) -> bool``; readers are asked in registration order, the first that accepts reads.
        read: ``read(path, series) -> Volume`` (`series` only matters to DICOM folders).
    """

    name: str
    accepts: Callable[[Path], bool]
    read: Callable[[Path, str | None], Volume]


VOLUME_READERS: Registry[VolumeReader] = Registry("volume reader", package="medwss.io", marker="register_volume_reader")
"""Every volume reader, asked in order; a module of `medwss.io` that calls `register_volume_reader` is found."""


def register_volume_reader(
    name: str, accepts: Callable[[Path], bool]
) -> Callable[[Callable[[Path, str | None], Volume]], Callable[[Path, str | None], Volume]]:
    """Register ``read(path, series) -> Volume`` for the paths `accepts` takes (a decorator).

    The checks of `load_volume` (empty, complex, > 4D, singular affine, NaN policy) run on what it returns.
    """

    def decorate(read: Callable[[Path, str | None], Volume]) -> Callable[[Path, str | None], Volume]:
        VOLUME_READERS.register(name, VolumeReader(name, accepts, read))
        return read

    return decorate


VOLUME_READERS.register("dicom_series", VolumeReader("dicom_series", Path.is_dir, read_dicom_series))
VOLUME_READERS.register(
    "nifti", VolumeReader("nifti", lambda p: has_suffix(p, NIFTI_SUFFIXES), lambda p, _s: _read_nifti(p))
)
VOLUME_READERS.register("itk", VolumeReader("itk", lambda p: has_suffix(p, ITK_SUFFIXES), lambda p, _s: _read_itk(p)))
VOLUME_READERS.register(
    "dicom_file",
    VolumeReader("dicom_file", lambda p: has_suffix(p, (".dcm",)) or is_dicom(p), lambda p, _s: read_dicom_file(p)),
)


def _check_volume(volume: Volume, path: Path) -> None:
    """Refuse what no 3D pipeline can use: empty, complex, more than 4D, or a singular affine."""
    array = volume.array
    if array.size == 0:
        raise InvalidDataError("image is empty", path)
    if np.iscomplexobj(array):
        raise InvalidDataError(
            f"complex voxels ({array.dtype}); medwss needs real values (split magnitude/phase)", path
        )
    if array.ndim > 4 and sum(n != 1 for n in array.shape[3:]) <= 1:  # e.g. NIfTI (x, y, z, 1, c): drop the 1s
        extra = tuple(n for n in array.shape[3:] if n != 1)
        volume.array = array = array.reshape(array.shape[:3] + (extra or (1,)))
    if array.ndim > 4:
        raise InvalidDataError(
            f"image is {array.ndim}D (shape {array.shape}); medwss reads 3D volumes, or 3D plus one channel axis", path
        )
    linear = volume.affine[:3, :3]
    if not np.isfinite(volume.affine).all() or abs(float(np.linalg.det(linear))) < 1e-12:
        raise InvalidDataError("the voxel-to-world affine is singular or not finite (zero spacing?)", path)


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
