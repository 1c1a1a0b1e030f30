"""Pyramidal tiled TIFF writing (generic TIFF that OpenSlide and tifffile open)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medwss.io.atomic import atomic_path


def downsample2(image: np.ndarray) -> np.ndarray:
    """Halve an (H, W[, C]) image by 2×2 mean pooling (odd edges dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    x = image[:h, :w].astype(np.float32)
    mean = (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4
    return np.round(mean).astype(image.dtype)


def write_pyramid_tiff(
    image: np.ndarray,
    path: str | Path,
    mpp: float | None,
    tile: int = 256,
    min_size: int = 512,
    compression: str = "jpeg",
    quality: int = 90,
    description: str = "",
) -> Path:
    """Write an RGB image as a tiled pyramidal TIFF, levels halving until the short side < `min_size`.

    Microns per pixel go into XResolution/YResolution (centimetre unit), which OpenSlide reads as
    ``openslide.mpp-x``/``mpp-y``. Written atomically.

    Args:
        image: (H, W, 3) uint8.
        path: Output ``.tif``/``.tiff``.
        mpp: Microns per pixel of level 0, or None to store no resolution.
        tile: Tile size in pixels (multiple of 16).
        min_size: Stop adding levels once the shorter side would fall below this.
        compression: ``jpeg``, ``zlib`` (deflate) or ``none``.
        quality: JPEG quality.
        description: ImageDescription of level 0.
    """
    import tifffile

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    levels = [image]
    while min(levels[-1].shape[:2]) // 2 >= min_size:
        levels.append(downsample2(levels[-1]))
    comp = None if compression == "none" else compression
    args: dict = {"compression": comp}
    if comp == "jpeg":
        args["compressionargs"] = {"level": quality}
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31) as tw:
        for i, level in enumerate(levels):
            res = None
            if mpp is not None:
                px_per_cm = 1e4 / (mpp * (2**i))
                res = (px_per_cm, px_per_cm)
            tw.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                resolution=res,
                resolutionunit="CENTIMETER" if res else None,
                subfiletype=0 if i == 0 else 1,
                description=description if i == 0 else None,
                metadata=None,
                **args,
            )
    return Path(path)
