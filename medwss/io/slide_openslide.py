"""OpenSlide backend: vendor formats (SVS, NDPI, MRXS, SCN, ...), tiled TIFF and DICOM WSI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medwss.errors import CorruptFileError
from medwss.io.slide import BackendDeclined, SlideFile, register_slide_backend


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Composite an (H, W, 4) uint8 image on white."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


class OpenSlideBackend:
    """Reads a slide through OpenSlide (the binary from the openslide-bin wheel)."""

    name = "openslide"

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = path
        self._slide = openslide.OpenSlide(str(path))
        props = dict(self._slide.properties)
        self.properties: dict[str, str] = props
        self.vendor: str | None = props.get("openslide.vendor")
        self.level_dimensions = [(int(w), int(h)) for w, h in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        mx, my = _float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))
        self.mpp: tuple[float, float] | None = (mx, my or mx) if mx else None
        self.objective_power = _float(props.get("openslide.objective-power"))
        self.associated_names = sorted(self._slide.associated_images)

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        import openslide

        try:
            region = self._slide.read_region((int(x), int(y)), int(level), (int(width), int(height)))
        except openslide.OpenSlideError as exc:
            raise CorruptFileError(f"cannot read region at ({x}, {y}) level {level}: {exc}", self.path) from exc
        alpha_min = region.getchannel("A").getextrema()[0]
        if alpha_min == 255:  # fully opaque: no compositing needed
            return np.asarray(region.convert("RGB"))
        return rgba_to_rgb(np.asarray(region))

    def associated(self, name: str) -> np.ndarray:
        image = self._slide.associated_images[name]
        return np.asarray(image.convert("RGB"))

    def close(self) -> None:
        self._slide.close()


def _openslide_probe(f: SlideFile) -> bool:
    """OpenSlide recognises the file's format (multiplex TIFFs excepted: it would read only the first channel)."""
    if f.is_multiplex:
        return False
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(f.target)) is not None
    except Exception:
        return False


@register_slide_backend("openslide", probe=_openslide_probe, priority=10)
def open_openslide(path: Path) -> OpenSlideBackend:
    """`OpenSlideBackend`, or `BackendDeclined` (``OpenSlide: ...``) when OpenSlide fails on the file."""
    import openslide

    try:
        return OpenSlideBackend(path)
    except openslide.OpenSlideError as exc:
        raise BackendDeclined(f"OpenSlide: {exc}") from exc
