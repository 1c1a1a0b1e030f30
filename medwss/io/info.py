"""`describe(path)`: what a slide or volume file holds, as a JSON-ready dict (the `medwss info` output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import UnsupportedFormatError, require_file
from medwss.io.dicom import is_dicom
from medwss.io.slide import SLIDE_SUFFIXES, Slide, is_dicom_wsi, open_slide
from medwss.io.volumes import VOLUME_SUFFIXES, has_suffix, load_volume


def kind_of(path: str | Path) -> str:
    """``"slide"`` or ``"volume"``, from the extension, the DICOM SOP class, or the folder content."""
    p = require_file(path)
    if p.is_dir() or has_suffix(p, (".dcm",)) or is_dicom(p):
        return "slide" if is_dicom_wsi(p) else "volume"
    if has_suffix(p, VOLUME_SUFFIXES):
        return "volume"
    if has_suffix(p, SLIDE_SUFFIXES):
        return "slide"
    raise UnsupportedFormatError("unknown file type (expected a slide or a volume)", p)


def check_slide_pixels(slide: Slide) -> None:
    """Decode a tile at the centre of level 0 and the thumbnail; raise `CorruptFileError` if either fails."""
    w, h = slide.dimensions
    size = (min(w, 512), min(h, 512))
    slide.read_region(((w - size[0]) // 2, (h - size[1]) // 2), 0, size)
    slide.thumbnail(256)


def describe_slide(path: str | Path, mpp: float | None = None, check: bool = False) -> dict[str, Any]:
    with open_slide(path, mpp=mpp) as slide:
        if check:
            check_slide_pixels(slide)
        return {
            "kind": "slide",
            "path": str(path),
            "reader": slide.reader,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "level_count": slide.level_count,
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": round(d, 6)}
                for i, ((w, h), d) in enumerate(zip(slide.level_dimensions, slide.level_downsamples, strict=True))
            ],
            "mpp": [round(v, 6) for v in slide.mpp_xy] if slide.has_mpp else None,
            "objective_power": slide.objective_power,
            "associated_images": slide.associated_images,
        }


def describe_volume(path: str | Path, series: str | None = None) -> dict[str, Any]:
    vol = load_volume(path, series=series, nan="keep", channels=True)
    floating = np.issubdtype(vol.array.dtype, np.floating)
    finite = vol.array[np.isfinite(vol.array)] if floating else vol.array
    lo, hi = (finite.min().item(), finite.max().item()) if finite.size else (None, None)
    meta = {k: v for k, v in vol.metadata.items() if k not in ("reader", "modality")}
    return {
        "kind": "volume",
        "path": str(path),
        "reader": vol.metadata.get("reader"),
        "shape": list(vol.shape),
        "spacing": [round(s, 6) for s in vol.spacing],
        "orientation": vol.orientation,
        "dtype": str(vol.array.dtype),
        "intensity_range": [lo, hi],
        "modality": vol.modality,
        "nan_voxels": int(vol.array.size - finite.size),
        "affine": np.round(vol.affine, 6).tolist(),
        "metadata": meta,
    }


def describe(
    path: str | Path, mpp: float | None = None, series: str | None = None, check: bool = False
) -> dict[str, Any]:
    """Describe a slide or a volume; see README "medwss info" for the keys.

    Args:
        path: Slide, volume file or DICOM folder.
        mpp: Microns per pixel for slides that lack it.
        series: DICOM series to read from a folder holding several.
        check: For slides, also decode pixels (volumes are always read whole).
    """
    return describe_slide(path, mpp, check) if kind_of(path) == "slide" else describe_volume(path, series)
