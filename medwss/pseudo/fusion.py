"""WSSS-BED-style fusion: a foreground prior (body/organ mask or saliency) with activation maps and a threshold.

`fuse` keeps class evidence only where the prior says foreground, labels pixels whose best score
clears ``tau + band``, calls background those below ``tau - band``, and ignores the band between.
`threshold_sweep` measures Dice against τ on a labelled dev split and returns the τ to record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError
from medwss.eval.overlap import dice_from_counts, overlap_counts


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
    keep = lab == (int(np.argmax(sizes)) + 1)
    if keep.ndim == 3:  # fill holes slice by slice (a body is closed in-plane, open along z)
        return np.stack([ndimage.binary_fill_holes(keep[..., k]) for k in range(keep.shape[2])], axis=-1)
    return ndimage.binary_fill_holes(keep)


def foreground_prior(
    image: np.ndarray, method: str = "body", window: tuple[float, float] = (-100.0, 300.0), smooth: float = 0.0
) -> np.ndarray:
    """A foreground mask from intensities.

    Args:
        image: 2D/3D image (HU for CT methods).
        method: ``body`` (HU > -500, largest component, holes filled), ``hu`` (inside the body and
            within `window`, e.g. soft-tissue organs) or ``otsu`` (above Otsu's threshold, largest component).
        window: HU range kept by ``hu``.
        smooth: Gaussian sigma (pixels) making the mask a soft prior in [0, 1]; 0 keeps it binary.

    Returns:
        float32 prior in [0, 1].
    """
    x = np.asarray(image, dtype=np.float64)
    if method == "body":
        m = _largest_filled(x > -500.0)
    elif method == "hu":
        m = _largest_filled(x > -500.0) & (x >= window[0]) & (x <= window[1])
    elif method == "otsu":
        from skimage.filters import threshold_otsu

        m = _largest_filled(x > threshold_otsu(x)) if np.ptp(x) > 0 else np.ones(x.shape, dtype=bool)
    else:
        raise InvalidDataError(f"unknown foreground method '{method}': choose body, hu or otsu")
    prior = m.astype(np.float32)
    return ndimage.gaussian_filter(prior, smooth) if smooth > 0 else prior


def fuse(cams: np.ndarray, prior: np.ndarray | None, tau: float, band: float = 0.0) -> np.ndarray:
    """Pseudo-labels from foreground-class activation maps, a foreground prior and a threshold.

    Args:
        cams: (K-1, *S) activation maps in [0, 1], one per foreground class (class ``c`` is map ``c-1``).
        prior: (*S) foreground prior in [0, 1] (mask or saliency); None = everywhere foreground.
        tau: Threshold on the prior-weighted score.
        band: Half-width of the ignore band around `tau`.

    Returns:
        (*S) int64 labels: class of the best map where its score ≥ tau + band, 0 where < tau - band
        or outside the prior, `IGNORE` between.
    """
    score = cams if prior is None else cams * np.asarray(prior)[None]
    best = score.max(axis=0)
    out = (score.argmax(axis=0) + 1).astype(np.int64)
    out[best < tau + band] = IGNORE
    out[best < tau - band] = 0
    if band == 0:
        out[best < tau] = 0
    if prior is not None:
        out[np.asarray(prior) < 1e-3] = 0  # outside the foreground prior: certain background, never ignored
    return out


def threshold_sweep(
    cams: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    priors: Sequence[np.ndarray | None] | None = None,
    taus: Sequence[float] | None = None,
    band: float = 0.0,
) -> dict[str, object]:
    """Mean foreground Dice of `fuse` against τ on a labelled dev split.

    Args:
        cams: Per image (K-1, *S) activation maps.
        gts: Per image (*S) ground-truth labels (0..K-1).
        priors: Per image foreground prior (None entries: no prior).
        taus: Thresholds to try (0.05 .. 0.95 by 0.05 if None).
        band: Ignore band used by `fuse`.

    Returns:
        ``{"taus": [...], "dice": [...], "best_tau": τ*, "best_dice": Dice at τ*}``; Dice pools
        pixels over images per class and averages the classes present in the ground truth,
        background included (so labelling everything foreground is not rewarded).
    """
    taus = [round(t, 4) for t in np.arange(0.05, 0.951, 0.05)] if taus is None else [float(t) for t in taus]
    priors = [None] * len(cams) if priors is None else list(priors)
    n_classes = cams[0].shape[0] + 1
    scores = []
    for tau in taus:
        sums = np.zeros((n_classes, 3))
        for cam, gt, pr in zip(cams, gts, priors, strict=True):
            sums += overlap_counts(fuse(cam, pr, tau, band), gt, n_classes)  # ignored pixels left out
        present = sums[:, 2] > 0
        d = dice_from_counts(sums[:, 0], sums[:, 1], sums[:, 2])
        scores.append(float(d[present].mean()) if present.any() else 0.0)
    best = int(np.argmax(scores))
    return {"taus": taus, "dice": scores, "best_tau": taus[best], "best_dice": scores[best]}
