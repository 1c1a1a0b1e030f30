"""WSSS-BED fusion: foreground priors, the ignore band, and a sweep that picks the known best threshold."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.errors import InvalidDataError
from medwss.pseudo.fusion import foreground_prior, fuse, threshold_sweep


def _ct(rng):
    yy, xx = np.mgrid[:40, :40]
    body = ((yy - 20) ** 2 + (xx - 20) ** 2) < 15**2
    img = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, body.shape)
    img[18:22, 18:22] = -900.0  # air inside the body (bowel gas): hole filled in the body mask
    img[10:13, 20:23] = 700.0  # bone: outside the soft-tissue window
    return body, img


def test_foreground_priors(rng):
    body, img = _ct(rng)
    m = foreground_prior(img, "body")
    assert (m.astype(bool) == body).all()
    hu = foreground_prior(img, "hu", window=(-100, 300)).astype(bool)
    assert not hu[18:22, 18:22].any() and not hu[10:13, 20:23].any() and hu[25, 25]
    assert foreground_prior(img, "otsu")[20, 8] == 1 and foreground_prior(img, "otsu")[0, 0] == 0
    soft = foreground_prior(img, "body", smooth=2.0)
    assert 0 < soft[20, 6] < 1 and soft[20, 20] == 1
    with pytest.raises(InvalidDataError):
        foreground_prior(img, "saliency")


def test_fuse_band_and_prior():
    cams = np.array([[[0.9, 0.52, 0.3, 0.9]], [[0.1, 0.1, 0.1, 0.95]]])  # (2 classes, 1, 4)
    prior = np.array([[1.0, 1.0, 1.0, 0.0]])
    out = fuse(cams, prior, tau=0.5, band=0.05)
    assert out.tolist() == [[1, -1, 0, 0]]  # above band, in band, below, outside prior
    assert fuse(cams, None, tau=0.5).tolist() == [[1, 1, 0, 2]]


def test_threshold_sweep_picks_known_tau(rng):
    gts, cams = [], []
    for _ in range(3):
        gt = np.zeros((20, 20), int)
        gt[5:12, 5:12] = 1
        cam = np.where(gt == 1, 0.62, 0.0) + rng.uniform(0, 0.2, gt.shape)  # object scores 0.62-0.82
        cam[gt == 0] += np.where(rng.random(int((gt == 0).sum())) < 0.3, 0.35, 0.0)  # clutter up to 0.55
        gts.append(gt)
        cams.append(cam[None])
    res = threshold_sweep(cams, gts, taus=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert res["best_tau"] == 0.6 and res["best_dice"] == pytest.approx(1.0)
    assert len(res["dice"]) == 6 and res["dice"][-1] < res["best_dice"]
