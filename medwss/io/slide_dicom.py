"""DICOM whole-slide backends for the files OpenSlide refuses: wsidicom when installed, else pydicom.

A DICOM WSI is one instance per pyramid level (``ImageType`` value 3 ``VOLUME``) plus optional
``LABEL``, ``OVERVIEW`` and ``THUMBNAIL`` instances, all in one series; each level's pixels are
tiles (frames) of the total pixel matrix. OpenSlide refuses instances whose ``ImageType`` lacks
the third value ("Couldn't get image flavor"), and so does wsidicom; the pydicom backend takes
such an instance as a pyramid level. Frames are decoded one at a time (`pydicom.pixels.pixel_array`
with ``index=``), so a region read decodes only the tiles it covers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import CorruptFileError, UnsupportedFormatError
from medwss.io.slide import SlideFile, register_slide_backend

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_ASSOCIATED = {"LABEL": "label", "OVERVIEW": "macro", "THUMBNAIL": "thumbnail"}
_FRAME_CACHE = 64


def _header(path: Path) -> Any | None:
    import pydicom

    from medwss.io.dicom import is_dicom

    if not is_dicom(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
    return ds if str(ds.get("SOPClassUID", "")) == WSI_SOP_CLASS else None


def series_files(path: Path) -> list[Path]:
    """The DICOM WSI files of one slide: those of `path`'s series in its folder (or in folder `path`)."""
    if path.is_dir():
        files = [f for f in sorted(path.iterdir()) if f.is_file() and _header(f) is not None]
        if not files:
            raise UnsupportedFormatError("folder holds no DICOM whole-slide image", path)
        series = {str(_header(f).SeriesInstanceUID) for f in files}  # type: ignore[union-attr]
        if len(series) > 1:
            raise UnsupportedFormatError(f"folder holds {len(series)} DICOM WSI series; give one file instead", path)
        return files
    ds = _header(path)
    if ds is None:
        raise UnsupportedFormatError("not a DICOM whole-slide image (VL Whole Slide Microscopy)", path)
    uid = str(ds.SeriesInstanceUID)
    siblings = [path]
    for f in sorted(path.parent.iterdir()):
        if f != path and f.is_file() and f.suffix.lower() in (".dcm", ""):
            h = _header(f)
            if h is not None and str(h.SeriesInstanceUID) == uid:
                siblings.append(f)
    return siblings


def flavor(ds: Any) -> str:
    """``VOLUME``, ``LABEL``, ``OVERVIEW`` or ``THUMBNAIL``; an instance without the value is a ``VOLUME``."""
    values = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return values[2] if len(values) >= 3 and values[2] in ("VOLUME", *_ASSOCIATED) else "VOLUME"


def _mpp(ds: Any) -> tuple[float, float] | None:
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        row, col = float(spacing[0]), float(spacing[1])  # mm between rows (y), between columns (x)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        width = ds.get("ImagedVolumeWidth")
        if not width:
            return None
        col = row = float(width) / int(ds.TotalPixelMatrixColumns)
    return (col * 1000.0, row * 1000.0) if col > 0 and row > 0 else None


def _objective_power(ds: Any) -> float | None:
    try:
        return float(ds.OpticalPathSequence[0].ObjectiveLensPower)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


class _Instance:
    """One multi-frame instance: its tile grid and a frame decoder."""

    def __init__(self, path: Path, ds: Any) -> None:
        self.path, self.ds = path, ds
        self.width, self.height = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
        self.tile_w, self.tile_h = int(ds.Columns), int(ds.Rows)
        self.n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        across = -(-self.width // self.tile_w)
        self.frames: dict[tuple[int, int], int] = {}
        if str(ds.get("DimensionOrganizationType", "TILED_FULL")).upper() == "TILED_SPARSE":
            for i, group in enumerate(ds.get("PerFrameFunctionalGroupsSequence") or []):
                pos = group.PlanePositionSlideSequence[0]
                r = (int(pos.RowPositionInTotalImagePixelMatrix) - 1) // self.tile_h
                c = (int(pos.ColumnPositionInTotalImagePixelMatrix) - 1) // self.tile_w
                self.frames.setdefault((r, c), i)
        else:  # TILED_FULL: columns fastest, then rows; the first focal plane and optical path come first
            down = -(-self.height // self.tile_h)
            for i in range(min(self.n_frames, across * down)):
                self.frames[(i // across, i % across)] = i

    def frame(self, index: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        try:
            arr = pixel_array(str(self.path), index=index)
        except Exception as exc:
            raise CorruptFileError(f"cannot decode frame {index} of the DICOM WSI ({exc})", self.path) from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.dtype != np.uint8:
            arr = np.clip(arr.astype(np.float32) / max(float(np.iinfo(arr.dtype).max), 1) * 255, 0, 255)
            arr = arr.astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])

    def whole(self) -> np.ndarray:
        out = np.full((self.height, self.width, 3), 255, np.uint8)
        for (r, c), i in self.frames.items():
            f = self.frame(i)
            y, x = r * self.tile_h, c * self.tile_w
            h, w = min(f.shape[0], self.height - y), min(f.shape[1], self.width - x)
            out[y : y + h, x : x + w] = f[:h, :w]
        return out


class PydicomWsiBackend:
    """Reads a DICOM WSI (one file or a folder of instances) through pydicom, frame by frame."""

    name = "pydicom-wsi"

    def __init__(self, path: Path) -> None:
        self.path = path
        levels: list[_Instance] = []
        self._associated: dict[str, _Instance] = {}
        for f in series_files(path):
            ds = _header(f)
            if ds is None or "TotalPixelMatrixColumns" not in ds:
                continue
            kind = flavor(ds)
            if kind == "VOLUME":
                levels.append(_Instance(f, ds))
            else:
                self._associated.setdefault(_ASSOCIATED[kind], _Instance(f, ds))
        if not levels:
            raise UnsupportedFormatError("DICOM WSI has no pyramid level (no VOLUME instance)", path)
        levels.sort(key=lambda inst: -inst.width)
        unique: list[_Instance] = []
        for inst in levels:  # other focal planes or optical paths of a level: the first one is kept
            if not unique or (inst.width, inst.height) != (unique[-1].width, unique[-1].height):
                unique.append(inst)
        self._levels = unique
        self.level_dimensions = [(i.width, i.height) for i in unique]
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = [(w0 / w + h0 / h) / 2 for w, h in self.level_dimensions]
        ds0 = unique[0].ds
        self.mpp = _mpp(ds0)
        self.objective_power = _objective_power(ds0)
        self.vendor: str | None = "dicom"
        self.properties: dict[str, str] = {
            f"dicom.{k}": str(ds0.get(k)) for k in ("Manufacturer", "ManufacturerModelName", "SeriesInstanceUID")
            if k in ds0
        }  # fmt: skip
        self.associated_names = sorted(self._associated)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _frame(self, level: int, index: int) -> np.ndarray:
        key = (level, index)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        tile = self._levels[level].frame(index)
        with self._lock:
            self._cache[key] = tile
            while len(self._cache) > _FRAME_CACHE:
                self._cache.popitem(last=False)
        return tile

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        inst = self._levels[level]
        ds = self.level_downsamples[level]
        lx, ly = int(x / ds), int(y / ds)  # location in level-0 pixels, as in OpenSlide
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + width, inst.width), min(ly + height, inst.height)
        if x1 <= x0 or y1 <= y0:
            return out
        for r in range(y0 // inst.tile_h, (y1 - 1) // inst.tile_h + 1):
            for c in range(x0 // inst.tile_w, (x1 - 1) // inst.tile_w + 1):
                index = inst.frames.get((r, c))
                if index is None:  # sparse tiling without this tile: background
                    continue
                tile = self._frame(level, index)
                sx, sy = c * inst.tile_w, r * inst.tile_h
                ax0, ay0 = max(sx, x0), max(sy, y0)
                ax1, ay1 = min(sx + tile.shape[1], x1), min(sy + tile.shape[0], y1)
                if ax1 > ax0 and ay1 > ay0:
                    out[ay0 - ly : ay1 - ly, ax0 - lx : ax1 - lx] = tile[ay0 - sy : ay1 - sy, ax0 - sx : ax1 - sx]
        return out

    def associated(self, name: str) -> np.ndarray:
        return self._associated[name].whole()

    def close(self) -> None:
        self._cache.clear()


class WsiDicomBackend:
    """Reads a DICOM WSI through wsidicom (the optional ``dicom-wsi`` extra)."""

    name = "wsidicom"

    def __init__(self, path: Path) -> None:
        from wsidicom import WsiDicom

        self.path = path
        try:
            self._wsi = WsiDicom.open(series_files(path))
        except UnsupportedFormatError:
            raise
        except Exception as exc:
            raise UnsupportedFormatError(f"wsidicom cannot open it ({exc})", path) from exc
        self._levels = list(self._wsi.levels)
        self.level_dimensions = [(int(lv.size.width), int(lv.size.height)) for lv in self._levels]
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = [(w0 / w + h0 / h) / 2 for w, h in self.level_dimensions]
        mpp = self._levels[0].mpp
        self.mpp = (float(mpp.width), float(mpp.height)) if mpp is not None else None
        self.objective_power: float | None = None
        self.vendor: str | None = "dicom"
        self.properties: dict[str, str] = {}
        names = {"label": self._wsi.labels, "macro": self._wsi.overviews}
        self.associated_names = sorted(k for k, v in names.items() if v)

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        lx, ly = int(x / ds), int(y / ds)
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + width, lw), min(ly + height, lh)
        if x1 <= x0 or y1 <= y0:
            return out
        try:
            region = self._wsi.read_region((x0, y0), self._levels[level].level, (x1 - x0, y1 - y0))
        except Exception as exc:
            raise CorruptFileError(f"cannot read region at ({x}, {y}) level {level}: {exc}", self.path) from exc
        out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = np.asarray(region.convert("RGB"))
        return out

    def associated(self, name: str) -> np.ndarray:
        image = self._wsi.read_label() if name == "label" else self._wsi.read_overview()
        return np.asarray(image.convert("RGB"))

    def close(self) -> None:
        self._wsi.close()


def _dicom_probe(f: SlideFile) -> bool:
    return f.is_dicom_wsi


@register_slide_backend("dicom", probe=_dicom_probe, priority=30, folders=True)
def open_dicom_backend(path: Path) -> PydicomWsiBackend | WsiDicomBackend:
    """wsidicom when it is installed and accepts the slide, else pydicom."""
    try:
        import wsidicom  # noqa: F401
    except ImportError:
        return PydicomWsiBackend(path)
    try:
        return WsiDicomBackend(path)
    except UnsupportedFormatError as exc:
        if "wsidicom" not in exc.message:
            raise
        return PydicomWsiBackend(path)
