"""Colour frames for the box segmenters: RGB → CIELAB features, or one "contrast" channel per box.

A colour image is an array with one axis more than its box, the last holding the channels:
``(H, W, 3)`` as PIL, scikit-image and SAM store it (an endoscopy frame, a slide tile). Grey images
(as many axes as the box) are left to the segmenters' intensity windows, unchanged.

Features (`COLOUR_FEATURES`):
    lab: CIELAB (scikit-image ``rgb2lab``) divided by 100, so L*, a* and b* keep their perceptual
        scale (a Euclidean distance is a colour difference); multichannel.
    rgb: the RGB values scaled to [0, 1]; multichannel.
    grey: luminance (``rgb2gray``), scaled to [0, 1]; one channel.
    contrast: the CIELAB colours projected on the Fisher direction that best separates the box's
        central core (object) from a band around the box (background), scaled to [0, 1] by the
        1st–99th percentiles of the crop with the object side bright; one channel. It adapts to
        each box: a reddish polyp on pink mucosa, a pale one on red. Used where a segmenter needs a
        scalar image (Chan-Vese, Otsu).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medwss.errors import ConfigError, InvalidDataError
from medwss.pseudo.protocol import Box

ColourFeature = Literal["lab", "rgb", "grey", "contrast"]
COLOUR_FEATURES: tuple[str, ...] = ("lab", "rgb", "grey", "contrast")
SCALAR_FEATURES: tuple[str, ...] = ("grey", "contrast")
"""Features with one channel (for segmenters that need a scalar image)."""


def check_feature(name: str, allowed: tuple[str, ...] = COLOUR_FEATURES) -> str:
    """`name` if it is one of `allowed`, else a `ConfigError` listing them."""
    if name not in allowed:
        raise ConfigError(f"unknown colour feature '{name}': choose one of {', '.join(allowed)}")
    return name


def is_colour(image: np.ndarray, box: Box) -> bool:
    """True when `image` has one axis more than `box` (channels last), e.g. an (H, W, 3) RGB frame.

    Raises:
        InvalidDataError: The extra axis holds neither 1, 3 nor 4 channels, or the image has too few axes.
    """
    nd = len(box.lo)
    if image.ndim == nd:
        return False
    if image.ndim != nd + 1 or image.shape[-1] not in (1, 3, 4):
        raise InvalidDataError(
            f"a {nd}D box needs a {nd}D grey image or a {nd}D colour image with 1, 3 or 4 channels last; "
            f"got shape {image.shape}"
        )
    return True


def spatial_shape(image: np.ndarray, box: Box) -> tuple[int, ...]:
    """The image's shape without its channel axis (the grid the box lives on)."""
    return tuple(image.shape[: len(box.lo)])


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    """(…, 3) float64 in [0, 1]: uint8 divided by 255, floats with a maximum above 1 divided by it."""
    a = np.asarray(image)
    if a.shape[-1] == 4:  # RGBA: drop alpha
        a = a[..., :3]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float64)
    top = float(np.nanmax(a)) if a.size else 1.0
    return np.clip(a / top if top > 1.0 else a, 0.0, 1.0)


def lab_image(image: np.ndarray) -> np.ndarray:
    """(…, 3) CIELAB / 100 of an RGB image (uint8 or floats in [0, 1])."""
    from skimage.color import rgb2lab

    return (rgb2lab(_unit_rgb(image)) / 100.0).astype(np.float32)


def _scale01(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(ref, (1.0, 99.0)) if ref.size else (0.0, 1.0)
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def box_seeds(shape: tuple[int, ...], box: Box, core: float = 0.3, band: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Object and background samples of a box: a central ellipse, and a band around the box.

    The band lies outside the box, `band` × the box size wide (at least 2 pixels); where the box
    fills the image it falls back on the outermost pixels inside the box.

    Returns:
        ``(object, background)``: boolean arrays of `shape`.
    """
    box = box.clip(shape)
    obj = box.core(shape, core)
    width = max(2, int(round(band * max(h - lo for lo, h in zip(box.lo, box.hi, strict=True)))))
    outer = box.grow(width, shape).mask(shape)
    bg = outer & ~box.mask(shape)
    if not bg.any():  # the box covers the image: its own rim is the best background guess
        inner = box.mask(shape)
        shrunk = Box(tuple(lo + width for lo in box.lo), tuple(h - width for h in box.hi), box.label)
        bg = inner & ~shrunk.mask(shape) if all(h > lo for lo, h in zip(shrunk.lo, shrunk.hi, strict=True)) else inner
        bg &= ~obj
    return obj, bg


def contrast_image(lab: np.ndarray, obj: np.ndarray, bg: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """One channel: `lab` projected on the Fisher direction separating `obj` from `bg` pixels, object bright.

    Args:
        lab: (*S, C) colour features.
        obj, bg: (*S) boolean samples of the object and the background.
        ridge: Added to the pooled covariance's diagonal (keeps it invertible on flat crops).

    Returns:
        (*S) float32 in [0, 1] (1st–99th percentiles of the projection); the luminance channel
        scaled the same way when either sample is empty.
    """
    x = lab.reshape(-1, lab.shape[-1]).astype(np.float64)
    o, b = x[obj.reshape(-1)], x[bg.reshape(-1)]
    if len(o) < 2 or len(b) < 2:
        return _scale01(lab[..., 0], lab[..., 0])
    cov = np.cov(o, rowvar=False) + np.cov(b, rowvar=False)
    cov = np.atleast_2d(cov) + ridge * np.eye(x.shape[1])
    w = np.linalg.solve(cov, o.mean(0) - b.mean(0))
    proj = (x @ w).reshape(lab.shape[:-1])
    return _scale01(proj, proj)


def box_features(image: np.ndarray, box: Box, feature: str, core: float = 0.3) -> np.ndarray:
    """The features a segmenter works on for one box of a colour image.

    Args:
        image: (*S, C) colour image, channels last.
        box: The box on its grid (used by ``contrast`` only).
        feature: One of `COLOUR_FEATURES`.
        core: Object seed of ``contrast`` (see `box_seeds`).

    Returns:
        ``lab``/``rgb``: (*S, 3) float32; ``grey``/``contrast``: (*S) float32 in [0, 1].
    """
    check_feature(feature)
    if feature == "rgb":
        return _unit_rgb(image).astype(np.float32)
    if feature == "grey":
        from skimage.color import rgb2gray

        return rgb2gray(_unit_rgb(image)).astype(np.float32)
    lab = lab_image(image)
    if feature == "lab":
        return lab
    obj, bg = box_seeds(lab.shape[:-1], box, core)
    return contrast_image(lab, obj, bg)
