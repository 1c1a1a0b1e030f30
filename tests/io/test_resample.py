"""Resampling onto another grid keeps world positions."""

from __future__ import annotations

import numpy as np

from medwss.io import Volume
from medwss.io.resample import resample_to


def test_coarse_to_fine_keeps_world_positions():
    # a value that is a linear function of the world x coordinate survives linear resampling exactly
    coarse_aff = np.diag([2.0, 2.0, 3.0, 1.0])
    coarse_aff[:3, 3] = [-10.0, 5.0, 0.0]
    ii = np.arange(16, dtype=np.float32)[:, None, None] * np.ones((16, 16, 8), np.float32)
    coarse = Volume(coarse_aff[0, 0] * ii + coarse_aff[0, 3], coarse_aff)  # value = world x
    fine_aff = np.diag([0.5, 0.5, 3.0, 1.0])
    fine_aff[:3, 3] = [-6.0, 8.0, 0.0]
    fine = Volume(np.zeros((40, 40, 8), np.float32), fine_aff)
    out = resample_to(coarse, fine)
    assert out.shape == fine.shape and np.allclose(out.affine, fine.affine)
    world_x = fine_aff[0, 0] * np.arange(40) + fine_aff[0, 3]
    np.testing.assert_allclose(out.array[:, 10, 4], world_x, atol=1e-4)


def test_nearest_keeps_labels_and_dtype():
    labels = np.zeros((8, 8, 4), np.uint8)
    labels[2:6, 2:6, 1:3] = 3
    src = Volume(labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    ref = Volume(np.zeros((16, 16, 8), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    out = resample_to(src, ref, order=0)
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 3}
    assert int((out.array == 3).sum()) == int((labels == 3).sum()) * 8
