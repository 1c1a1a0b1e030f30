"""PAR: refinement pulls activation onto a planted edge-aligned object."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from medwss.pseudo.par import PAR, refine_cams


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_par_aligns_cam_with_object(rng):
    gt = np.zeros((48, 48), bool)
    gt[14:30, 18:34] = True
    img = gt * 1.0 + rng.normal(0, 0.1, gt.shape)
    cam = ndimage.gaussian_filter(np.roll(gt.astype(float), (3, 3), (0, 1)), 4)
    cam /= cam.max()
    refined = refine_cams(img, cam[None])[0]
    before = _iou(cam > 0.5, gt)
    after = _iou(refined > 0.5 * refined.max(), gt)
    assert after > before + 0.2 and after > 0.9


def test_affinity_rows_sum_and_3d_shape(rng):
    par = PAR(dilations=(1, 2), n_iter=2)
    img = torch.from_numpy(rng.normal(size=(2, 1, 10, 12)).astype(np.float32))
    aff = par.affinity(img)
    assert aff.shape == (2, 16, 10, 12)
    assert torch.allclose(aff.sum(1), torch.full((2, 10, 12), 1 + par.w_position), atol=1e-5)
    out = refine_cams(rng.normal(size=(10, 12, 3)), rng.random((2, 10, 12, 3)), par)
    assert out.shape == (2, 10, 12, 3)
    const = refine_cams(rng.normal(size=(10, 12)), np.full((1, 10, 12), 0.7), par)
    np.testing.assert_allclose(const, 0.7, atol=1e-5)  # a constant map stays constant
