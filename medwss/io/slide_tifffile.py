"""tifffile backend: plain, strip and OME TIFF that OpenSlide refuses, and multiplex TIFF/QPTIFF (one grey page
per channel, read as channels); decodes only the segments a region needs."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

from medwss.errors import CorruptFileError, UnsupportedFormatError
from medwss.io.slide import SlideFile, is_multiplex_series, register_slide_backend

_UNIT_TO_UM = {"m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "nm": 1e-3}
_ASSOCIATED = ("label", "macro", "thumbnail")


def _to_rgb(block: np.ndarray) -> np.ndarray:
    """(H, W[, S]) of any dtype → (H, W, 3) uint8."""
    if block.dtype != np.uint8:
        info = np.iinfo(block.dtype) if np.issubdtype(block.dtype, np.integer) else None
        top = float(info.max) if info else max(float(np.nanmax(block)), 1e-6)
        block = np.clip(block.astype(np.float32) / top * 255, 0, 255).astype(np.uint8)
    if block.ndim == 2:
        block = block[..., None]
    if block.shape[2] == 1:
        block = np.repeat(block, 3, axis=2)
    return np.ascontiguousarray(block[..., :3])


def _ome_mpp(xml: str) -> tuple[float, float] | None:
    found = {}
    for axis in ("X", "Y"):
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', xml)
        if m:
            unit = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', xml)
            found[axis] = float(m.group(1)) * _UNIT_TO_UM.get(unit.group(1) if unit else "µm", 1.0)
    return (found["X"], found.get("Y", found["X"])) if "X" in found else None


def _tag_mpp(page) -> tuple[float, float] | None:  # noqa: ANN001
    unit = page.tags.get("ResolutionUnit")
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if unit is None or xres is None or int(unit.value) not in (2, 3):
        return None
    per = 25400.0 if int(unit.value) == 2 else 1e4

    def to_float(v) -> float:  # noqa: ANN001
        return v[0] / v[1] if isinstance(v, tuple) else float(v)

    rx = to_float(xres.value)
    ry = to_float(yres.value) if yres is not None else rx
    return (per / rx, per / ry) if rx > 0 and ry > 0 else None


def _channel_names(tif, pages: list) -> list[str]:  # noqa: ANN001
    """Names of the channels: QPTIFF ``<Name>`` of each page, OME ``Channel Name=``, else ``channel<i>``."""
    names: list[str | None] = [None] * len(pages)
    if tif.is_qpi:
        for i, page in enumerate(pages):
            m = re.search(r"<Name>([^<]+)</Name>", page.description or "")
            names[i] = m.group(1).strip() if m else None
    elif tif.is_ome:
        found = re.findall(r'<Channel\b[^>]*\bName="([^"]*)"', tif.ome_metadata or "")
        if len(found) == len(pages):
            names = list(found)
    out = [n or f"channel{i}" for i, n in enumerate(names)]
    return [n if out.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(out)]


def _qpi_mpp(desc: str) -> tuple[float, float] | None:
    """QPTIFF ``<ScanProfile>``'s pixel size: ``<PixelSizeMicrons>`` (µm per pixel)."""
    m = re.search(r"<PixelSizeMicrons>([0-9.eE+-]+)</PixelSizeMicrons>", desc)
    return (float(m.group(1)),) * 2 if m and float(m.group(1)) > 0 else None


class TiffFileBackend:
    """Reads plain/strip/tiled/OME TIFF through tifffile, segment by segment."""

    name = "tifffile"

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            self._tif = tifffile.TiffFile(str(path))
        except Exception as exc:
            raise CorruptFileError(f"not a readable TIFF ({exc})", path) from exc
        self._lock = threading.Lock()
        series = [s for s in self._tif.series if (s.name or "").lower() not in _ASSOCIATED] or self._tif.series
        if not series:
            raise UnsupportedFormatError("TIFF holds no image", path)
        self._pages = [lvl.keyframe for lvl in series[0].levels]
        self.channel_names: list[str] | None = None
        self._channel_pages: list[list] = []
        if is_multiplex_series(series[0]):
            self._channel_pages = [list(lvl.pages) for lvl in series[0].levels]
            if any(len(pages) != len(self._channel_pages[0]) or None in pages for pages in self._channel_pages):
                raise UnsupportedFormatError("multiplex TIFF whose levels hold different channel counts", path)
            self.channel_names = _channel_names(self._tif, self._channel_pages[0])
        for page in self._pages:
            if page.compression not in tifffile.TIFF.DECOMPRESSORS:
                raise UnsupportedFormatError(f"unsupported TIFF compression {int(page.compression)}", path)
            if page.planarconfig != 1 and page.samplesperpixel > 1:
                raise UnsupportedFormatError("TIFF with separate colour planes is not supported", path)
        self.level_dimensions = [(int(p.imagewidth), int(p.imagelength)) for p in self._pages]
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples = [(w0 / w + h0 / h) / 2 for w, h in self.level_dimensions]
        page0 = self._pages[0]
        desc = page0.description or ""
        self.properties: dict[str, str] = {"tiff.ImageDescription": desc[:2000]}
        self.vendor: str | None = (
            "ome" if self._tif.is_ome else ("aperio" if desc.startswith("Aperio") else "generic-tiff")
        )
        if self._tif.is_qpi:
            self.vendor = "qptiff"
            qpi_mpp = _qpi_mpp(desc)
            if qpi_mpp is not None:
                self.properties["qptiff.mpp"] = str(qpi_mpp[0])
        mpp = _ome_mpp(self._tif.ome_metadata or "") if self._tif.is_ome else None
        aperio = re.search(r"MPP\s*=\s*([0-9.]+)", desc)
        if mpp is None and aperio:
            mpp = (float(aperio.group(1)),) * 2
        self.mpp = mpp or _tag_mpp(page0) or (_qpi_mpp(desc) if self._tif.is_qpi else None)
        mag = re.search(r"AppMag\s*=\s*([0-9.]+)", desc) or re.search(r'NominalMagnification="([0-9.]+)"', desc)
        self.objective_power = float(mag.group(1)) if mag else None
        self._associated = {s.name.lower(): s for s in self._tif.series if (s.name or "").lower() in _ASSOCIATED}
        self.associated_names = sorted(self._associated)

    def _segment_index(self, page, row: int, col: int) -> int:  # noqa: ANN001
        if page.is_tiled:
            across = -(-page.imagewidth // page.tilewidth)
            return row * across + col
        return row

    def _read_page(
        self, page, level: int, lx: int, ly: int, width: int, height: int, out: np.ndarray, rgb: bool
    ) -> None:  # noqa: ANN001
        """Paste the segments of `page` covering the level-pixel box at (lx, ly) into `out`."""
        x0, y0 = max(lx, 0), max(ly, 0)
        x1, y1 = min(lx + width, page.imagewidth), min(ly + height, page.imagelength)
        if x1 <= x0 or y1 <= y0:
            return
        th = page.tilelength if page.is_tiled else page.rowsperstrip
        tw = page.tilewidth if page.is_tiled else page.imagewidth
        fh = self._tif.filehandle
        decode = page.decode
        for r in range(y0 // th, (y1 - 1) // th + 1):
            for c in range(x0 // tw, (x1 - 1) // tw + 1):
                index = self._segment_index(page, r, c)
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                with self._lock:
                    fh.seek(offset)
                    data = fh.read(count) if count else None
                try:
                    seg, (_, _, sy, sx, _), _ = decode(data, index, jpegtables=page.jpegtables)
                except Exception as exc:
                    raise CorruptFileError(
                        f"cannot decode TIFF segment {index} of level {level}: {exc}", self.path
                    ) from exc
                if seg is None:
                    continue
                seg = _to_rgb(seg[0]) if rgb else seg[0].reshape(seg.shape[1], seg.shape[2], -1)[..., 0]
                # intersect the segment with the request
                ax0, ay0 = max(sx, x0), max(sy, y0)
                ax1, ay1 = min(sx + seg.shape[1], x1), min(sy + seg.shape[0], y1)
                if ax1 > ax0 and ay1 > ay0:
                    out[ay0 - ly : ay1 - ly, ax0 - lx : ax1 - lx] = seg[ay0 - sy : ay1 - sy, ax0 - sx : ax1 - sx]

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        out = np.full((height, width, 3), 255, np.uint8)
        self._read_page(self._pages[level], level, int(x / ds), int(y / ds), width, height, out, rgb=True)
        return out

    def read_channels(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """Multiplex TIFF: (height, width, channels) in the file's dtype; 0 outside the image."""
        if self.channel_names is None:
            raise UnsupportedFormatError("not a multiplex TIFF: it has no channels to read", self.path)
        pages = self._channel_pages[level]
        ds = self.level_downsamples[level]
        out = np.zeros((height, width, len(pages)), pages[0].dtype)
        for i, page in enumerate(pages):
            plane = np.zeros((height, width), page.dtype)
            self._read_page(page, level, int(x / ds), int(y / ds), width, height, plane, rgb=False)
            out[..., i] = plane
        return out

    def associated(self, name: str) -> np.ndarray:
        return _to_rgb(self._associated[name].asarray())

    def close(self) -> None:
        self._tif.close()


def _tiff_probe(f: SlideFile) -> bool:
    return f.is_tiff


register_slide_backend("tifffile", probe=_tiff_probe, priority=20)(TiffFileBackend)
