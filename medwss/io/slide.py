"""`Slide`: a lazy whole-slide image pyramid, read through the first registered backend that takes the file.

Backends live in `SLIDE_BACKENDS` (OpenSlide first, then tifffile for TIFFs OpenSlide refuses and
multiplex TIFF/QPTIFF, then DICOM WSI through wsidicom or pydicom); `register_slide_backend` adds one,
and a module of `medwss.io` that calls it is found without being imported by hand.

Multiplex fluorescence slides (QPTIFF, OME-TIFF with one grey page per channel) are read as
channels (`Slide.read_channels`); `Slide.read_region` gives up to three chosen channels as the
planes of an RGB image (one channel: grey), each scaled to 0-255 by its 99.9th percentile on the
coarsest level, so tiling and encoders see a fixed display of the chosen channels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medwss.errors import CorruptFileError, MissingMetadataError, UnsupportedFormatError, require_file
from medwss.registry import Registry

SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
    ".qptiff",
)
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage


@runtime_checkable
class SlideBackend(Protocol):
    """What a slide reader provides; `Slide` adds mpp handling, checks and resampling.

    The contract (``tests/test_contracts.py`` checks it for every entry of `SLIDE_BACKENDS` on a
    tiny slide): `level_dimensions` are (width, height) per level, level 0 the largest, with as many
    `level_downsamples` (level 0: 1.0); ``read(x, y, level, width, height)`` returns (height, width, 3)
    uint8 RGB, `x`/`y` in level-0 pixels, the same pixels on every call; ``close()`` releases the
    file. Multiplex readers add ``channel_names`` and ``read_channels`` (same arguments, (h, w, C)).
    """

    name: str
    vendor: str | None
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    properties: dict[str, str]
    mpp: tuple[float, float] | None
    objective_power: float | None
    associated_names: list[str]

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray: ...

    def associated(self, name: str) -> np.ndarray: ...

    def close(self) -> None: ...


class BackendDeclined(Exception):
    """Raised by a backend's ``open`` that cannot read a file it probed: the next backend is tried.

    The message (``"OpenSlide: ..."``) is kept: it ends the one-line error when no later backend
    reads the file, and is appended to a later backend's error.
    """


class SlideFile:
    """What probes look at: the path given, the file to read (a DICOM WSI folder's first instance), cached checks."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target

    @functools.cached_property
    def is_tiff(self) -> bool:
        """The target starts with a TIFF or BigTIFF header."""
        return _is_tiff(self.target)

    @functools.cached_property
    def is_multiplex(self) -> bool:
        """A TIFF of several grey channels (QPTIFF, OME ``CYX``)."""
        return self.is_tiff and _is_multiplex_tiff(self.target)

    @functools.cached_property
    def sop_class(self) -> str | None:
        """The DICOM SOPClassUID of the target, None when it is not DICOM."""
        return _dicom_sop_class(self.target)

    @property
    def is_dicom_wsi(self) -> bool:
        return self.sop_class == WSI_SOP_CLASS


@dataclass(frozen=True)
class SlideBackendEntry:
    """A registered slide backend.

    Attributes:
        name: Registry name (``openslide``, ``tifffile``, ``dicom``).
        open: ``open(path) -> SlideBackend``; raises `BackendDeclined` to pass the file on, or a
            `CorruptFileError`/`UnsupportedFormatError` that ends the search (with the reasons of
            earlier backends appended).
        probe: ``probe(SlideFile) -> bool``, cheap: whether `open` should be tried.
        priority: Backends are tried in increasing priority (then registration order).
        folders: `open` takes a DICOM WSI folder itself (others get the folder's first instance).
        sample: ``sample(folder) -> path`` writes a tiny slide this backend reads, for the contract
            tests; None when one of the test's stock files (tiled TIFF, DICOM WSI) passes the probe.
    """

    name: str
    open: Callable[[Path], SlideBackend]
    probe: Callable[[SlideFile], bool]
    priority: int = 50
    folders: bool = False
    sample: Callable[[Path], Path] | None = None


SLIDE_BACKENDS: Registry[SlideBackendEntry] = Registry(
    "slide backend", package="medwss.io", marker="register_slide_backend"
)
"""Every slide backend; a module of `medwss.io` that calls `register_slide_backend` is found on first use."""


def register_slide_backend(
    name: str,
    probe: Callable[[SlideFile], bool],
    priority: int = 50,
    folders: bool = False,
    sample: Callable[[Path], Path] | None = None,
) -> Callable[[Callable[[Path], SlideBackend]], Callable[[Path], SlideBackend]]:
    """Register ``open(path) -> SlideBackend`` for the files `probe` takes (a decorator); see `SlideBackendEntry`."""

    def decorate(open_fn: Callable[[Path], SlideBackend]) -> Callable[[Path], SlideBackend]:
        SLIDE_BACKENDS.register(name, SlideBackendEntry(name, open_fn, probe, priority, folders, sample))
        return open_fn

    return decorate


def slide_backends() -> list[SlideBackendEntry]:
    """The registered backends in the order `open_slide` tries them."""
    return sorted(SLIDE_BACKENDS.values(), key=lambda e: e.priority)


class Slide:
    """A whole-slide image. Pixels are read lazily; arrays are (H, W, 3) uint8 RGB on white.

    Args:
        backend: The reader.
        path: The slide's file.
        mpp: Microns per pixel at level 0; overrides the file's value (required when the file has none).
    """

    def __init__(
        self, backend: SlideBackend, path: Path, mpp: float | None = None, channels: Sequence[str | int] | None = None
    ) -> None:
        self.backend = backend
        self.path = path
        self.mpp_override = mpp
        self._tops: np.ndarray | None = None
        self.channels: list[int] | None = None
        names = self.channel_names
        if names is None:
            if channels:
                raise UnsupportedFormatError(f"channels {list(channels)} asked of a slide that has none (RGB)", path)
        else:
            picks = [resolve_channel(c, names, path) for c in (channels or range(min(3, len(names))))]
            if not 1 <= len(picks) <= 3:
                raise ValueError(f"{path}: choose 1 to 3 channels of {names}, got {list(channels or [])}")
            self.channels = picks

    # --- channels (multiplex fluorescence) ----------------------------------------------------
    @property
    def channel_names(self) -> list[str] | None:
        """Names of the channels of a multiplex slide (QPTIFF, OME ``CYX``); None for RGB slides."""
        return getattr(self.backend, "channel_names", None)

    @property
    def is_fluorescence(self) -> bool:
        """A multiplex slide of grey channels (tissue detection then thresholds a nuclear channel)."""
        return self.channel_names is not None

    def read_channels(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """All channels of a region of a multiplex slide: (height, width, C) in the file's dtype."""
        if self.channel_names is None:
            raise UnsupportedFormatError("not a multiplex slide: it has no channels to read", self.path)
        w, h = self._check(level, size)
        return self.backend.read_channels(int(location[0]), int(location[1]), level, w, h)  # type: ignore[attr-defined]

    def channel_tops(self) -> np.ndarray:
        """Per-channel display maximum: the 99.9th percentile of each channel on the coarsest level."""
        if self._tops is None:
            level = self.level_count - 1
            lw, lh = self.level_dimensions[level]
            scale = min(1.0, 2048 / max(lw, lh))
            step = max(1, round(1 / scale))
            data = self.read_channels((0, 0), level, (lw, lh))[::step, ::step]
            tops = np.percentile(data.reshape(-1, data.shape[-1]).astype(np.float32), 99.9, axis=0)
            self._tops = np.maximum(tops, 1e-6)
        return self._tops

    def _composite(self, data: np.ndarray) -> np.ndarray:
        assert self.channels is not None
        tops = self.channel_tops()
        planes = [np.clip(data[..., c].astype(np.float32) * (255.0 / tops[c]), 0, 255) for c in self.channels]
        if len(planes) == 1:
            planes = planes * 3
        while len(planes) < 3:
            planes.append(np.zeros_like(planes[0]))
        return np.round(np.stack(planes, axis=-1)).astype(np.uint8)

    def thumbnail_channels(self, max_size: int = 1024) -> np.ndarray:
        """All channels of the whole slide as float32 (h, w, C), longer side at most `max_size` pixels."""
        from PIL import Image

        w0, h0 = self.dimensions
        scale = min(1.0, max_size / max(w0, h0))
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        level = self.best_level_for_downsample(w0 / tw)
        lw, lh = self.level_dimensions[level]
        data = self.read_channels((0, 0), level, (lw, lh)).astype(np.float32)
        if (lw, lh) == (tw, th):
            return data
        planes = [
            np.asarray(Image.fromarray(data[..., c]).resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=2.0))
            for c in range(data.shape[-1])
        ]
        return np.stack(planes, axis=-1)

    # --- metadata -----------------------------------------------------------------------------
    @property
    def reader(self) -> str:
        return self.backend.name

    @property
    def vendor(self) -> str | None:
        return self.backend.vendor

    @property
    def level_count(self) -> int:
        return len(self.backend.level_dimensions)

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """(width, height) of each level."""
        return list(self.backend.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.backend.level_dimensions[0]

    @property
    def level_downsamples(self) -> list[float]:
        return list(self.backend.level_downsamples)

    @property
    def properties(self) -> dict[str, str]:
        return self.backend.properties

    @property
    def objective_power(self) -> float | None:
        return self.backend.objective_power

    @property
    def has_mpp(self) -> bool:
        return self.mpp_override is not None or self.backend.mpp is not None

    @property
    def mpp_xy(self) -> tuple[float, float]:
        """Microns per pixel (x, y) at level 0."""
        if self.mpp_override is not None:
            return (float(self.mpp_override), float(self.mpp_override))
        if self.backend.mpp is None:
            raise MissingMetadataError(
                "slide has no microns-per-pixel metadata; pass it explicitly (mpp=... or --mpp)", self.path
            )
        return self.backend.mpp

    @property
    def mpp(self) -> float:
        """Microns per pixel at level 0 (mean of x and y)."""
        mx, my = self.mpp_xy
        return (mx + my) / 2

    def level_mpp(self, level: int) -> float:
        return self.mpp * self.level_downsamples[level]

    @property
    def associated_images(self) -> list[str]:
        return list(self.backend.associated_names)

    def associated_image(self, name: str) -> np.ndarray:
        if name not in self.backend.associated_names:
            raise KeyError(f"{self.path}: no associated image {name!r}; has {self.backend.associated_names}")
        return self.backend.associated(name)

    # --- pixels -------------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read `size` = (width, height) pixels of `level`, whose top-left is `location` in level-0 pixels."""
        w, h = self._check(level, size)
        if self.channels is not None:
            return self._composite(self.backend.read_channels(int(location[0]), int(location[1]), level, w, h))  # type: ignore[attr-defined]
        return self.backend.read(int(location[0]), int(location[1]), level, w, h)

    def _check(self, level: int, size: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} out of range 0..{self.level_count - 1}")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.path}: region size must be positive, got {size}")
        return w, h

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed `downsample` (1% tolerance)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.01:
                best = i
        return best

    def read_region_mpp(self, location: tuple[int, int], size: tuple[int, int], mpp: float) -> np.ndarray:
        """Read a region at a target resolution, from the best level, resized to exactly `size`.

        Args:
            location: Top-left corner in level-0 pixels.
            size: Output (width, height) in pixels at `mpp`.
            mpp: Target microns per pixel.
        """
        factor = mpp / self.mpp  # level-0 pixels per output pixel
        level = self.best_level_for_downsample(factor)
        ds = self.level_downsamples[level]
        w0, h0 = size[0] * factor, size[1] * factor
        lw, lh = max(1, math.ceil(w0 / ds - 1e-6)), max(1, math.ceil(h0 / ds - 1e-6))
        region = self.read_region(location, level, (lw, lh))
        return resize(region, (int(size[0]), int(size[1])))

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """The whole slide, scaled so its longer side is at most `max_size` pixels."""
        w0, h0 = self.dimensions
        scale = min(1.0, max_size / max(w0, h0))
        tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        level = self.best_level_for_downsample(w0 / tw)
        lw, lh = self.level_dimensions[level]
        return resize(self.read_region((0, 0), level, (lw, lh)), (tw, th))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, reader={self.reader}, levels={self.level_dimensions})"


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (width, height) = `size` (area-like when shrinking)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def _dicom_sop_class(path: Path) -> str | None:
    from medwss.io.dicom import is_dicom

    if not is_dicom(path):
        return None
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID)
    except Exception:
        return None


def is_dicom_wsi(path: str | Path) -> bool:
    """True for a DICOM whole-slide file, or a folder whose first DICOM file is one."""
    p = Path(path)
    if p.is_dir():
        first = next((f for f in sorted(p.iterdir()) if f.is_file() and _dicom_sop_class(f)), None)
        return first is not None and _dicom_sop_class(first) == WSI_SOP_CLASS
    return _dicom_sop_class(p) == WSI_SOP_CLASS


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def resolve_channel(choice: str | int, names: Sequence[str], path: Path | None = None) -> int:
    """Index of a channel given by name (case-insensitive) or index (an int, or a string of digits)."""
    if isinstance(choice, int) or (isinstance(choice, str) and choice.strip().lstrip("-").isdigit()):
        i = int(choice)
        if not 0 <= i < len(names):
            raise ValueError(f"{path}: channel index {i} out of range 0..{len(names) - 1} ({list(names)})")
        return i
    lowered = [n.lower() for n in names]
    if str(choice).lower() not in lowered:
        raise ValueError(f"{path}: no channel {choice!r}; the slide has {list(names)}")
    return lowered.index(str(choice).lower())


def is_multiplex_series(series) -> bool:  # noqa: ANN001
    """A tifffile series of several grey channels, one page per channel (QPTIFF, OME-TIFF ``CYX``)."""
    axes = series.axes.upper()
    return axes in ("CYX", "CYXS") and series.shape[0] > 1 and (axes == "CYX" or series.shape[-1] == 1)


def _is_multiplex_tiff(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            return bool(tif.series) and is_multiplex_series(tif.series[0])
    except Exception:
        return False


def open_slide(path: str | Path, mpp: float | None = None, channels: Sequence[str | int] | None = None) -> Slide:
    """Open a whole-slide image with the first backend of `SLIDE_BACKENDS` whose probe takes it: OpenSlide,
    then tifffile (TIFFs OpenSlide refuses, multiplex TIFF/QPTIFF) or a DICOM reader (DICOM WSI OpenSlide
    refuses: wsidicom if installed, else pydicom).

    Args:
        path: Slide file (SVS, NDPI, MRXS, SCN, generic/OME TIFF, QPTIFF, DICOM WSI) or a DICOM WSI folder.
        mpp: Microns per pixel at level 0, overriding (or supplying) the file's value.
        channels: Multiplex slides: 1 to 3 channels (names or indices) shown as the RGB planes of
            `Slide.read_region`; default the first three.

    Raises:
        FileNotFound, UnsupportedFormatError, CorruptFileError.
    """
    p = require_file(path)
    target = p
    if p.is_dir():
        target = next((f for f in sorted(p.iterdir()) if f.is_file() and _dicom_sop_class(f) == WSI_SOP_CLASS), p)
        if target == p:
            raise UnsupportedFormatError("folder holds no DICOM whole-slide image", p)
    if mpp is not None and not mpp > 0:
        raise ValueError(f"{p}: mpp must be positive, got {mpp}")
    probe = SlideFile(p, target)
    reasons: list[str] = []
    for entry in slide_backends():
        if not entry.probe(probe):
            continue
        try:
            return Slide(entry.open(p if entry.folders else target), p, mpp, channels)
        except BackendDeclined as exc:
            reasons.append(str(exc))
        except (UnsupportedFormatError, CorruptFileError) as exc:
            detail = f"{exc.message} ({'; '.join(reasons)})" if reasons else exc.message
            raise type(exc)(detail, p) from exc
    if reasons:
        raise CorruptFileError("; ".join(reasons), p)
    suffix = "".join(p.suffixes[-1:]).lower()
    if suffix in SLIDE_SUFFIXES:
        raise CorruptFileError(f"not a readable {suffix} slide (neither OpenSlide nor tifffile recognises it)", p)
    raise UnsupportedFormatError("not a slide format medwss reads", p)
