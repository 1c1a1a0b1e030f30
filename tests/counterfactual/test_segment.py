"""Difference maps, thresholds and morphology on planted maps."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.counterfactual.segment import MaskSettings, clean_mask, coin_masks, difference_maps, threshold_maps


def test_difference_map_scaled_by_max_and_identity_is_zero():
    x = np.zeros((2, 1, 4, 4), np.float32)
    cf = x.copy()
    cf[0, 0, 1, 1] = -0.5
    cf[0, 0, 2, 2] = 0.25
    d = difference_maps(x, cf)
    assert d.shape == (2, 4, 4)
    assert d[0, 1, 1] == pytest.approx(1.0) and d[0, 2, 2] == pytest.approx(0.5)
    assert not d[1].any()
    assert difference_maps(x, cf, "range")[0, 1, 1] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        difference_maps(x, cf, "bogus")


def test_threshold_and_morphology():
    m = np.zeros((1, 20, 20), np.float32)
    m[0, 5:12, 5:12] = 0.9  # a blob
    m[0, 16, 16] = 0.5  # a speck
    m[0, 2, 2:4] = 0.3  # a tiny bar
    base = threshold_maps(m, MaskSettings(threshold=0.25))
    assert base.sum() == 49 + 1 + 2
    assert threshold_maps(m, MaskSettings(threshold=0.6)).sum() == 49
    assert threshold_maps(m, MaskSettings(threshold=0.25, largest=True)).sum() == 49
    opened = threshold_maps(m, MaskSettings(threshold=0.25, opening=1))
    assert not opened[0, 16, 16] and opened[0, 8, 8]
    hole = np.zeros((9, 9), bool)
    hole[2:7, 2:7] = True
    hole[4, 4] = False
    assert clean_mask(hole, MaskSettings(closing=1))[4, 4]


def test_coin_masks_empty_for_normal_decisions():
    x = np.zeros((2, 1, 8, 8), np.float32)
    cf = x.copy()
    cf[:, 0, 2:4, 2:4] = 0.5
    _, masks = coin_masks(x, cf, np.array([1, 0]), MaskSettings())
    assert masks[0].sum() == 4 and masks[1].sum() == 0
