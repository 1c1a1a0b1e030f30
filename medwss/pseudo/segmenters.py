"""Weight-free promptable segmenters: random walker, morphological Chan-Vese, Otsu-in-box, GrabCut-style, raw box, ellipse.

All take an image and a `Box` and return a foreground probability on the box's grid; they work on
2D images and 3D volumes alike (scikit-image). Each crops the box plus a margin, so cost follows
the box, not the image.

Colour images (one axis more than the box, channels last: an (H, W, 3) RGB frame) go through
`medwss.pseudo.box_colour` first, chosen by each segmenter's `colour` argument (ignored on grey
images): the random walker and GrabCut work on the CIELAB colours (``lab``, multichannel),
Chan-Vese and Otsu on one channel, by default ``contrast`` (the colours projected on the direction
that best separates the box's centre from its surroundings); ``grey`` (luminance) is the plain
alternative.

Example:
    >>> seg = create_box_segmenter("random_walker")
    >>> prob = seg.segment(ct_slice, Box((20, 30), (50, 70), label=2))  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from medwss.errors import ConfigError
from medwss.pseudo.box_colour import SCALAR_FEATURES, box_features, check_feature, is_colour, spatial_shape
from medwss.pseudo.protocol import Box, PromptableSegmenter
from medwss.registry import Registry
from medwss.transforms.intensity import Window, normalise


def _features(image: np.ndarray, box: Box, colour: str) -> tuple[np.ndarray, bool]:
    """The array a segmenter works on, and whether it is already scaled (colour features) or raw intensity."""
    if is_colour(image, box):
        return box_features(image, box, colour), True
    return image, False


def _crop(
    image: np.ndarray, box: Box, margin: int, window: Window, scaled: bool = False
) -> tuple[np.ndarray, Box, Box]:
    """The normalised crop of box+margin, the grown box, and the box in crop coordinates.

    `image` may carry a trailing channel axis (colour features); `scaled` skips the intensity window.
    """
    shape = tuple(image.shape[: len(box.lo)])
    box = box.clip(shape)
    outer = box.grow(margin, shape)
    crop = image[outer.slices].astype(np.float32) if scaled else normalise(image[outer.slices], "window", window)
    inner = Box(
        tuple(a - o for a, o in zip(box.lo, outer.lo, strict=True)),
        tuple(b - o for b, o in zip(box.hi, outer.lo, strict=True)),
        box.label,
        box.score,
    )
    return crop, outer, inner


def _paste(prob_crop: np.ndarray, outer: Box, inner: Box, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    keep = np.zeros(prob_crop.shape, dtype=bool)
    keep[inner.slices] = True
    out[outer.slices] = np.where(keep, prob_crop, 0.0)
    return out


class BoxSegmenter:
    """The raw box as the mask (the baseline every box method must beat)."""

    name = "box"

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        shape = spatial_shape(image, box) if is_colour(image, box) else tuple(image.shape)
        return box.clip(shape).mask(shape).astype(np.float32)


class EllipseSegmenter:
    """The ellipse (ellipsoid in 3D) inscribed in the box: the refiner-free "box prior" of a roundish object.

    Args:
        fraction: Semi-axes as a fraction of the box's half-sizes (1.0: touching every side).

    With ``inside="ignore"`` (`boxes_to_labels`) the box corners outside the ellipse are ignored
    instead of background: "ellipse foreground, box corners unlabelled".
    """

    name = "ellipse"

    def __init__(self, fraction: float = 1.0) -> None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"ellipse fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        shape = spatial_shape(image, box) if is_colour(image, box) else tuple(image.shape)
        box = box.clip(shape)
        return (box.core(shape, self.fraction) & box.mask(shape)).astype(np.float32)


class RandomWalkerSegmenter:
    """Random walker seeded from the box: pixels outside it are background, a central core is object.

    Args:
        beta: Edge sensitivity of the random walker.
        margin: Pixels around the box used as background seeds.
        core: Semi-axes of the object seed, as a fraction of the box half-sizes.
        window: Intensity window (``(low, high)`` or a name of `CT_WINDOWS`); percentiles of the crop if None.
        colour: Feature of colour images (`medwss.pseudo.box_colour.COLOUR_FEATURES`); ``lab`` and
            ``rgb`` make a multichannel random walker (squared colour differences summed).
    """

    name = "random_walker"

    def __init__(
        self, beta: float = 130.0, margin: int = 3, core: float = 0.3, window: Window = None, colour: str = "lab"
    ) -> None:
        self.beta = beta
        self.margin = margin
        self.core = core
        self.window = window
        self.colour = check_feature(colour)

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        from skimage.segmentation import random_walker

        feats, scaled = _features(image, box, self.colour)
        grid = tuple(feats.shape[: len(box.lo)])
        crop, outer, inner = _crop(feats, box, self.margin, self.window, scaled)
        spatial = tuple(crop.shape[: len(box.lo)])
        channels = crop.ndim > len(box.lo)
        seeds = np.zeros(spatial, dtype=np.int32)
        outside = ~inner.mask(spatial)
        if not outside.any():  # box covers the whole image: use its border as background
            outside = ~ndimage.binary_erosion(np.ones(spatial, dtype=bool))
        seeds[outside] = 2
        seeds[inner.core(spatial, self.core)] = 1
        if not (seeds == 0).any() or not (seeds == 1).any():  # nothing to solve (tiny box)
            return _paste((seeds == 1).astype(np.float32), outer, inner, grid)
        with warnings.catch_warnings():  # tiny overshoots of [0, 1] from the linear solver are clipped below
            warnings.simplefilter("ignore", UserWarning)
            prob = random_walker(
                crop, seeds, beta=self.beta, mode="bf" if seeds.size < 4000 else "cg_j", return_full_prob=True,
                channel_axis=-1 if channels else None,
            )  # fmt: skip
        fg = prob[0] if prob.shape[1:] == spatial else (seeds == 1).astype(np.float64)
        return _paste(np.clip(fg, 0.0, 1.0), outer, inner, grid)


class ChanVeseSegmenter:
    """Morphological Chan-Vese (active contour without edges) started from an ellipse inscribed in the box.

    Args:
        iterations: Number of morphological iterations.
        smoothing: Smoothing steps per iteration.
        margin: Pixels of context around the box.
        window: Intensity window for normalisation.
        colour: Scalar feature of colour images: ``contrast`` or ``grey`` (`box_colour.SCALAR_FEATURES`).
    """

    name = "chan_vese"

    def __init__(
        self, iterations: int = 60, smoothing: int = 1, margin: int = 3, window: Window = None, colour: str = "contrast"
    ) -> None:
        self.iterations = iterations
        self.smoothing = smoothing
        self.margin = margin
        self.window = window
        self.colour = check_feature(colour, SCALAR_FEATURES)

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        from skimage.segmentation import morphological_chan_vese

        image, scaled = _features(image, box, self.colour)
        crop, outer, inner = _crop(image, box, self.margin, self.window, scaled)
        init = inner.core(crop.shape, 0.8)
        ls = morphological_chan_vese(crop, self.iterations, init_level_set=init, smoothing=self.smoothing)
        ls = ls.astype(bool)
        if ls[inner.slices].mean() > 0.95 or not (ls & init).any():  # took the complement: flip
            ls = ~ls
        return _paste(_component_at(ls, init).astype(np.float32), outer, inner, tuple(image.shape))


class OtsuBoxSegmenter:
    """Otsu threshold inside the box; the side containing the box centre, its component at the centre, holes filled.

    Args:
        margin: Pixels of context around the box (used for the threshold statistics).
        window: Intensity window for normalisation.
        colour: Scalar feature of colour images: ``contrast`` or ``grey`` (`box_colour.SCALAR_FEATURES`).
    """

    name = "otsu"

    def __init__(self, margin: int = 0, window: Window = None, colour: str = "contrast") -> None:
        self.margin = margin
        self.window = window
        self.colour = check_feature(colour, SCALAR_FEATURES)

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        from skimage.filters import threshold_otsu

        image, scaled = _features(image, box, self.colour)
        crop, outer, inner = _crop(image, box, self.margin, self.window, scaled)
        values = crop[inner.slices]
        if np.ptp(values) == 0:
            return _paste(inner.mask(crop.shape).astype(np.float32), outer, inner, tuple(image.shape))
        t = threshold_otsu(values)
        core = inner.core(crop.shape, 0.3)
        bright = crop > t
        fg = bright if bright[core].mean() >= 0.5 else ~bright
        fg &= inner.mask(crop.shape)
        fg = ndimage.binary_fill_holes(_component_at(fg, core))
        return _paste(fg.astype(np.float32), outer, inner, tuple(image.shape))


def _component_at(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of `mask` touching `seed` (all of `mask` if none does)."""
    lab, n = ndimage.label(mask)
    hit = np.unique(lab[seed & mask])
    hit = hit[hit > 0]
    return np.isin(lab, hit) if hit.size else mask


class BoxSegmenterFactory(Protocol):
    """A box segmenter by name: ``factory(**options) -> PromptableSegmenter`` (a class, or a function).

    Contract: with no options it builds (or raises for a missing checkpoint/optional package); its
    ``segment(image, box)`` returns a float map of the image's shape in [0, 1], zero far outside the
    box. `tests/test_contracts.py` builds every entry that needs no extra files and checks that on a
    bright square.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> PromptableSegmenter: ...


def _sam_factory(flavour: str) -> BoxSegmenterFactory:
    def build(
        checkpoint: str | Path | None = None,
        model_type: str = "vit_b",
        predictor: Any = None,
        window: Any = None,
        device: str = "cpu",
    ) -> PromptableSegmenter:
        """`medwss.pseudo.sam.SamSegmenter` of this flavour (its arguments; an explicit signature so
        `check_box_settings` names a wrong key before any weights are loaded)."""
        from medwss.pseudo.sam import SamSegmenter  # the optional segment_anything package, imported on use

        return SamSegmenter(
            checkpoint=checkpoint,
            flavour=flavour,
            model_type=model_type,
            predictor=predictor,
            window=window,
            device=device,
        )

    build.__qualname__ = f"_sam_factory.{flavour}"
    return build


BOX_SEGMENTERS: Registry[BoxSegmenterFactory] = Registry(
    "box segmenter", package="medwss.pseudo", marker="BOX_SEGMENTERS.register"
)
"""Promptable segmenters by name; a module of `medwss.pseudo` that calls ``BOX_SEGMENTERS.register`` is found."""
BOX_SEGMENTERS.register("box", BoxSegmenter)
BOX_SEGMENTERS.register("ellipse", EllipseSegmenter)
BOX_SEGMENTERS.register("random_walker", RandomWalkerSegmenter)
BOX_SEGMENTERS.register("chan_vese", ChanVeseSegmenter)
BOX_SEGMENTERS.register("otsu", OtsuBoxSegmenter)
BOX_SEGMENTERS.register("sam", _sam_factory("sam"))
BOX_SEGMENTERS.register("medsam", _sam_factory("medsam"))


def check_box_settings(name: str, settings: Mapping[str, object]) -> None:
    """Raise one `ConfigError` line naming the first key of `settings` that segmenter `name` does not take.

    The keys are checked against the factory's signature (`grabcut`: ``colour``, ``gamma``, ``dilate``,
    ...), ``sam``/``medsam`` included (before any weights are read); a factory taking ``**kwargs`` is not checked.

    Raises:
        UnknownNameError: (a `ConfigError`) unknown name.
        ConfigError: A key the segmenter does not take.
    """
    params = inspect.signature(BOX_SEGMENTERS.get(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in settings:
        if key not in params:
            takes = f"it takes: {', '.join(params)}" if params else "it takes none"
            raise ConfigError(f"box segmenter '{name}' has no setting '{key}' ({takes})")


def create_box_segmenter(name: str, **kwargs: object) -> object:
    """A promptable segmenter by name: ``box``, ``ellipse``, ``random_walker``, ``chan_vese``, ``otsu``,
    ``grabcut``, ``sam``, ``medsam``; `kwargs` are its settings (``create_box_segmenter("grabcut", dilate=2)``).

    ``sam``/``medsam`` need ``checkpoint=`` (a local file) and the optional `segment_anything` package.

    Raises:
        UnknownNameError: (a `ConfigError`) unknown name.
        ConfigError: A setting the segmenter does not take (`check_box_settings`), named in one line.
    """
    check_box_settings(name, kwargs)
    return BOX_SEGMENTERS.get(name)(**kwargs)
