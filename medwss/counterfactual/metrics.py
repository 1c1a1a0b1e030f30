"""Counterfactual metrics: validity, realism (Fréchet distance, MMD); IoU and Dice are `medwss.eval.overlap`.

Realism compares counterfactuals with real normal slices in the feature space of the frozen
classifier (its pooled last-stage features): the Fréchet distance between Gaussians fitted to the
two sets (FID computed on the task classifier instead of Inception), and an RBF-kernel MMD² with the
median-distance bandwidth. Lower is more realistic; both are 0 for identical sets.
"""

from __future__ import annotations

import numpy as np


def validity(p_before: np.ndarray, p_after: np.ndarray, confident: float = 0.8, drop: float = 0.8) -> float:
    """Share of confidently abnormal cases (``p > confident``) whose probability falls by more than `drop`.

    Returns NaN when no case is confident.
    """
    p0, p1 = np.asarray(p_before, float), np.asarray(p_after, float)
    sel = p0 > confident
    return float(np.mean((p0[sel] - p1[sel]) > drop)) if sel.any() else float("nan")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½)`` between feature sets (Na, C) and (Nb, C)."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ca, cb = np.atleast_2d(ca), np.atleast_2d(cb)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-singular covariances of small sets
        root = np.real(linalg.sqrtm(ca @ cb))
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * root), 0.0))


def mmd_rbf(a: np.ndarray, b: np.ndarray) -> float:
    """Biased RBF-kernel MMD² between (Na, C) and (Nb, C), bandwidth the median pairwise distance (NaN if a set is empty)."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    z = np.concatenate([a, b]).astype(np.float64)
    d2 = np.maximum(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1), 0)
    med = np.median(d2[np.triu_indices(len(z), 1)]) if len(z) > 1 else 1.0
    k = np.exp(-d2 / max(med, 1e-12))
    n = len(a)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())
