"""DICOM volumes: a series folder (slices ordered by position) or a single file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import AmbiguousInputError, CorruptFileError, InvalidDataError, UnsupportedFormatError
from medwss.io.limits import check_bytes
from medwss.io.volume import Volume, affine_from_lps

_KEEP = (
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "PatientID",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "ImageType",
)


def is_dicom(path: Path) -> bool:
    """True if the file carries the DICM preamble marker."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: Path) -> Any | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
    if "Rows" not in ds or "Columns" not in ds:
        return None  # not an image (DICOMDIR, structured report, ...)
    return ds


def list_series(folder: str | Path) -> dict[str, list[tuple[Path, Any]]]:
    """Group the DICOM image files under `folder` by SeriesInstanceUID."""
    groups: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and not f.name.startswith("."):
            ds = _read_header(f)
            if ds is not None:
                groups[str(ds.get("SeriesInstanceUID", "unknown"))].append((f, ds))
    return dict(groups)


def _describe(uid: str, items: list[tuple[Path, Any]]) -> str:
    ds = items[0][1]
    return f"{uid} (#{ds.get('SeriesNumber', '?')} {ds.get('SeriesDescription', '')!s}, {len(items)} files)".replace(
        " ,", ","
    )


def _choose(folder: Path, groups: dict[str, list[tuple[Path, Any]]], series: str | None) -> list[tuple[Path, Any]]:
    if not groups:
        raise UnsupportedFormatError("folder holds no DICOM images", folder)
    if series is None:
        if len(groups) > 1:
            listing = "; ".join(_describe(u, it) for u, it in groups.items())
            raise AmbiguousInputError(
                f"{len(groups)} DICOM series in folder, choose one with --series: {listing}", folder
            )
        return next(iter(groups.values()))
    for uid, items in groups.items():
        if series == uid or series == str(items[0][1].get("SeriesNumber", "")):
            return items
    raise AmbiguousInputError(
        f"no series {series!r}; found: " + "; ".join(_describe(u, it) for u, it in groups.items()), folder
    )


def _pixels(path: Path, ds: Any) -> np.ndarray:
    """Pixel values of one file as (frames, rows, cols[, samples]); pydicom decodes, else SimpleITK (GDCM).

    Colour images (SamplesPerPixel 3) are converted to RGB.
    """
    import pydicom

    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    try:
        full = pydicom.dcmread(path, force=True)
        arr = full.pixel_array
        if samples > 1 and str(full.get("PhotometricInterpretation", "")).startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, str(full.PhotometricInterpretation), "RGB")
    except Exception as exc:  # a transfer syntax without a pydicom handler: try GDCM via SimpleITK
        try:
            import SimpleITK as sitk

            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        except Exception:
            raise CorruptFileError(f"cannot decode DICOM pixel data ({exc})", path) from exc
    shape = (-1, rows, cols) + ((samples,) if samples > 1 else ())
    try:
        return arr.reshape(shape)
    except ValueError as exc:
        raise CorruptFileError(f"pixel data of shape {arr.shape} does not match {rows}x{cols}x{samples}", path) from exc


def _to_ijk(frames: np.ndarray) -> np.ndarray:
    """(k, rows, cols[, samples]) -> (i=col, j=row, k[, samples])."""
    axes = (2, 1, 0) + ((3,) if frames.ndim == 4 else ())
    return np.ascontiguousarray(frames.transpose(axes))


def _rescale(stack: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if slope == 1.0 and intercept == 0.0:
        return stack
    out = stack.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if float(slope).is_integer() and float(intercept).is_integer() and out.size:
        lo, hi = float(out.min()), float(out.max())
        if lo >= -32768 and hi <= 32767:
            return out.astype(np.int16)
    return out


def _geometry(ds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Row direction, column direction, slice normal (LPS) and PixelSpacing (row, column) of a slice."""
    iop = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    ps = [float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])]
    if np.linalg.norm(normal) == 0:
        normal = np.array([0.0, 0.0, 1.0])
    return row_dir, col_dir, normal, ps


def _metadata(ds: Any, reader: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"reader": reader}
    for key in _KEEP:
        if key in ds:
            value = ds.get(key)
            meta[key[0].lower() + key[1:]] = [str(v) for v in value] if key == "ImageType" else str(value)
    return meta


def read_dicom_series(folder: str | Path, series: str | None = None) -> Volume:
    """Read a DICOM series folder; slices are ordered by their position along the slice normal.

    Args:
        folder: Folder holding the files (searched recursively).
        series: SeriesInstanceUID or SeriesNumber to pick when the folder holds several series.
    """
    folder = Path(folder)
    items = _choose(folder, list_series(folder), series)
    ds0 = items[0][1]
    row_dir, col_dir, normal, ps = _geometry(ds0)
    positions = []
    for f, ds in items:
        ipp = ds.get("ImagePositionPatient")
        if ipp is None:
            raise InvalidDataError("slice has no ImagePositionPatient; cannot order the series", f)
        positions.append(np.asarray(ipp, dtype=np.float64))
    order = np.argsort([float(p @ normal) for p in positions], kind="stable")
    items = [items[i] for i in order]
    positions = [positions[i] for i in order]
    proj = np.array([p @ normal for p in positions])
    if len(proj) > 1 and np.min(np.diff(proj)) < 1e-4:
        raise InvalidDataError(
            "several slices share one position (multi-echo or time series?); split the series", folder
        )
    samples = int(ds0.get("SamplesPerPixel", 1) or 1)
    shape = (int(ds0.Rows), int(ds0.Columns), len(items), samples)
    check_bytes("series", shape, 4, "MEDWSS_MAX_VOLUME_BYTES", folder)  # before decoding any pixels
    slices = []
    for f, ds in items:
        if (int(ds.Rows), int(ds.Columns)) != (int(ds0.Rows), int(ds0.Columns)):
            raise InvalidDataError(
                f"slice size {ds.Rows}x{ds.Columns} differs from the series' {ds0.Rows}x{ds0.Columns}", f
            )
        px = _pixels(f, ds)
        px = _rescale(px[0], float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
        slices.append(px)
    stack = _to_ijk(np.stack(slices, axis=0))
    if len(positions) > 1:
        step = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        step = normal * float(ds0.get("SpacingBetweenSlices", ds0.get("SliceThickness", 1.0)) or 1.0)
    dz = float(np.linalg.norm(step))
    direction = np.stack([row_dir, col_dir, step / dz if dz > 0 else normal], axis=1)
    affine = affine_from_lps(direction, np.array([ps[1], ps[0], dz]), positions[0])
    meta = _metadata(ds0, "pydicom-series")
    meta["n_files"] = len(items)
    if len(proj) > 2:
        gaps = np.diff(proj)
        meta["slice_gap_range_mm"] = [round(float(gaps.min()), 4), round(float(gaps.max()), 4)]
    return Volume(stack, affine, meta, str(folder))


def read_dicom_file(path: str | Path) -> Volume:
    """Read one DICOM file (a single slice, or a multi-frame image as a stack)."""
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise CorruptFileError(f"not a readable DICOM file ({exc})", path) from exc
    if "Rows" not in ds:
        raise UnsupportedFormatError("DICOM file holds no image", path)
    row_dir, col_dir, normal, ps = _geometry(ds)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    check_bytes("header", (n_frames, int(ds.Rows), int(ds.Columns), samples), 4, "MEDWSS_MAX_VOLUME_BYTES", path)
    frames = _pixels(path, ds)
    frames = _rescale(frames, float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
    stack = _to_ijk(frames)
    dz = float(ds.get("SpacingBetweenSlices", ds.get("SliceThickness", 1.0)) or 1.0)
    origin = np.asarray(ds.get("ImagePositionPatient", [0.0, 0.0, 0.0]), dtype=np.float64)
    affine = affine_from_lps(np.stack([row_dir, col_dir, normal], axis=1), np.array([ps[1], ps[0], dz]), origin)
    return Volume(stack, affine, _metadata(ds, "pydicom"), str(path))
