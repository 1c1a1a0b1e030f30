"""Pseudo-label metrics on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.pseudo.metrics import PseudoLabelMeter, pseudo_label_metrics


def test_hand_computed():
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 1, 1, -1], [0, 2, 0, 1]])
    r = pseudo_label_metrics(pred, gt, 3, names=["bg", "a", "b"], minor=[2])
    a, b = r["per_class"]["a"], r["per_class"]["b"]
    # a: labelled pixels: tp 2 (0,2),(1,3); fp 1 (0,1); fn 0 (the ignored (0,3) is not counted) -> Dice 4/5
    assert a["dice"] == pytest.approx(0.8) and a["iou"] == pytest.approx(2 / 3)
    assert a["recall"] == pytest.approx(2 / 3)  # ignored gt pixel counts as missed
    assert b["dice"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(0.5)
    assert r["coverage"] == pytest.approx(7 / 8)
    assert r["minor_recall"] == pytest.approx(0.5)
    assert r["mean_dice"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert a["gt_pixels"] == 3


def test_pooling_and_absent_class():
    m = PseudoLabelMeter(3)
    m.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    m.update(np.ones((2, 2), int), np.ones((2, 2), int))
    r = m.report()
    assert r["mean_dice"] == 1.0 and np.isnan(r["per_class"]["class_2"]["dice"]) and np.isnan(r["minor_recall"])
    with pytest.raises(ValueError):
        m.update(np.zeros((2, 3), int), np.zeros((2, 2), int))
