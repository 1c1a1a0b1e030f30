"""H&E stain normalisation (Macenko) of RGB tiles; stain augmentation is `medwss.transforms.stain`.

Macenko et al. (ISBI 2009): pixels are turned into optical density (OD = -log(I / I0)); nearly
transparent pixels (any channel's OD at or below `beta`) are dropped; the OD vectors are projected
onto the plane of their two main eigenvectors, and the directions at the `alpha` and
``100 - alpha`` percentiles of the angle in that plane are the two stain vectors (haematoxylin
first: the one absorbing more red). Each pixel's stain concentrations are then found by least
squares, scaled so their 99th percentiles match the target's, and turned back into RGB with the
target's stain vectors. The default target is the reference H&E matrix and concentrations of
Macenko's paper as most implementations use them (MONAI's `NormalizeHEStains` too), so a tile
can be normalised with no reference tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medwss.errors import InvalidDataError

StainNorm = Literal["none", "macenko"]
REFERENCE_HE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
"""Reference H&E stain vectors (columns: haematoxylin, eosin; rows: OD of R, G, B)."""
REFERENCE_MAX_CONC = np.array([1.9705, 1.0308])
"""Reference 99th-percentile concentrations of haematoxylin and eosin."""


@dataclass(frozen=True)
class Stains:
    """A tile's stain vectors and concentration scale.

    Attributes:
        matrix: (3, 2) unit-norm OD vectors of haematoxylin and eosin (columns).
        max_conc: (2,) 99th percentiles of each stain's concentration.
    """

    matrix: np.ndarray
    max_conc: np.ndarray


REFERENCE = Stains(REFERENCE_HE / np.linalg.norm(REFERENCE_HE, axis=0), REFERENCE_MAX_CONC)


def optical_density(rgb: np.ndarray, io: float = 240.0) -> np.ndarray:
    """(..., 3) uint8 RGB → optical density ``-log((I + 1) / io)``, 0 for pixels at or above `io`."""
    x = np.asarray(rgb, dtype=np.float64)[..., :3] + 1.0
    return -np.log(np.minimum(x, io) / io)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-12)


def macenko_stains(
    rgb: np.ndarray, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15, min_pixels: int = 16
) -> Stains:
    """The H&E stain vectors and concentration scale of an RGB tile (Macenko's method).

    Args:
        rgb: (H, W, 3) uint8.
        io: Transmitted light intensity (the brightness of glass).
        alpha: Percentile of the robust extreme angles.
        beta: OD below which (in every channel) a pixel is transparent and left out.
        min_pixels: Fewest stained pixels needed.

    Raises:
        InvalidDataError: Too few stained pixels (a blank tile).
    """
    return _fit(optical_density(rgb, io).reshape(-1, 3), alpha, beta, min_pixels)[0]


def _fit(od: np.ndarray, alpha: float, beta: float, min_pixels: int = 16) -> tuple[Stains, np.ndarray]:
    """Stains of (N, 3) optical densities, and the (2, N) concentrations of every pixel."""
    stained = od[np.all(od > beta, axis=1)]  # transparent: any channel at or below beta
    if len(stained) < min_pixels:
        raise InvalidDataError(f"only {len(stained)} stained pixels; Macenko needs at least {min_pixels}")
    _, vectors = np.linalg.eigh(np.cov(stained, rowvar=False))
    plane = vectors[:, 1:3]  # the two largest eigenvalues' eigenvectors (eigh sorts ascending)
    plane = plane * np.where(plane[0:1] < 0, -1.0, 1.0)  # sign: positive red OD, a stable orientation
    proj = stained @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = v1 * np.sign(v1.sum() or 1.0), v2 * np.sign(v2.sum() or 1.0)  # OD vectors point into positive OD
    matrix = _unit(np.stack([v1, v2], axis=1) if v1[0] >= v2[0] else np.stack([v2, v1], axis=1))
    conc = np.linalg.pinv(matrix) @ od.T  # least squares, as a (2, 3) matrix product
    max_conc = np.maximum(np.percentile(conc, 99, axis=1), 1e-6)
    return Stains(matrix, max_conc), conc


class MacenkoNormalizer:
    """Normalises tiles to a target's stains (Macenko). `fit` a reference tile, or keep the default target.

    Args:
        target: The target stains; `REFERENCE` (Macenko's H&E) if None.
        io, alpha, beta: As in `macenko_stains`.
    """

    def __init__(self, target: Stains | None = None, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15) -> None:
        self.target = target or REFERENCE
        self.io, self.alpha, self.beta = io, alpha, beta

    def fit(self, reference_rgb: np.ndarray) -> MacenkoNormalizer:
        """Take the stains of a reference tile as the target."""
        self.target = macenko_stains(reference_rgb, self.io, self.alpha, self.beta)
        return self

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """The tile with the target's stains: (H, W, 3) uint8. A tile with too little stain is returned as is."""
        image = np.asarray(rgb)
        try:
            source, conc = _fit(optical_density(image, self.io).reshape(-1, 3), self.alpha, self.beta)
        except InvalidDataError:
            return np.array(image[..., :3], dtype=np.uint8, copy=True)
        conc *= (self.target.max_conc / source.max_conc)[:, None]
        out = self.io * np.exp(-(self.target.matrix @ conc)) - 1.0
        return np.clip(np.round(out.T), 0, 255).astype(np.uint8).reshape(image.shape[:-1] + (3,))


def monai_normalizer(target: Stains | None = None, io: float = 240.0, alpha: float = 1.0, beta: float = 0.15):  # noqa: ANN201
    """MONAI's `NormalizeHEStains` with the same target and settings (for comparison; needs monai)."""
    from monai.apps.pathology.transforms.stain.array import NormalizeHEStains

    t = target or REFERENCE
    return NormalizeHEStains(tli=io, alpha=alpha, beta=beta, target_he=t.matrix, max_cref=t.max_conc)


def normalize_stain(rgb: np.ndarray, method: StainNorm = "macenko", target: Stains | None = None) -> np.ndarray:
    """A tile normalised by `method` (``none`` returns it unchanged)."""
    if method == "none":
        return np.asarray(rgb)
    if method == "macenko":
        return MacenkoNormalizer(target)(rgb)
    raise ValueError(f"unknown stain normalisation {method!r}; choose none or macenko")
