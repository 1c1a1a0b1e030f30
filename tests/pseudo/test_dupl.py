"""DuPL: dynamic threshold schedule, loss-GMM noise filter, safe strong view, dual-student training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.pseudo.dupl import (
    DuPLConfig,
    discrepancy_loss,
    dupl_labels,
    dynamic_threshold,
    gmm_clean_mask,
    train_dupl,
)
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


def test_dynamic_threshold_schedule():
    assert dynamic_threshold(0, 100, 0.95, 0.7) == pytest.approx(0.95)
    assert dynamic_threshold(50, 100, 0.95, 0.7) == pytest.approx(0.825)
    assert dynamic_threshold(100, 100, 0.95, 0.7) == pytest.approx(0.7)
    assert dynamic_threshold(25, 100, 1.0, 0.0) == pytest.approx((1 + np.cos(np.pi / 4)) / 2)
    values = [dynamic_threshold(t, 100) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_gmm_filter_separates_noisy_pixels(rng):
    losses = rng.gamma(2.0, 0.05, 1000)
    noisy = rng.choice(1000, 100, replace=False)
    losses[noisy] = rng.normal(2.5, 0.3, 100)
    clean = gmm_clean_mask(losses)
    assert not clean[noisy].any() and clean.sum() >= 880
    assert gmm_clean_mask(np.ones(10)).all()


def test_strong_view_is_intensity_only():
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, 4:8, 2:6] = 1.0
    y = augment_batch(augment_pipeline(PRESETS["strong_intensity"]), {"image": x}, seed=0)["image"]
    assert y.shape == x.shape
    inside, outside = y[:, :, 5:7, 3:5].mean(), y[:, :, 10:, 10:].mean()
    assert inside > outside + 0.5  # no flip, no warp: the object stays where it was


def test_discrepancy_loss_range():
    a = torch.randn(1, 4, 3, 3)
    assert float(discrepancy_loss(a, a)) == pytest.approx(1.0)
    assert float(discrepancy_loss(a, -a)) == pytest.approx(0.0, abs=1e-6)


def _noisy_squares(rng):
    images, initial, gts = [], [], []
    for i in range(4):
        gt = np.zeros((20, 20), int)
        gt[4 + i : 12 + i, 4:12] = 1
        img = (gt + rng.normal(0, 0.2, gt.shape))[None].astype(np.float32)
        noisy = gt.copy()
        flip = rng.random(gt.shape) < 0.1
        noisy[flip] = 1 - noisy[flip]
        noisy[:2] = -1
        images.append(img)
        initial.append(noisy)
        gts.append(gt)
    return images, initial, gts


def test_dual_student_schedule_and_outputs(rng):
    images, initial, _ = _noisy_squares(rng)
    cfg = DuPLConfig(iterations=8, warmup=4, width=4, batch_size=2)
    students, history = train_dupl(images, initial, 2, cfg)
    assert [round(h["tau"], 4) for h in history] == [round(dynamic_threshold(t, 8), 4) for t in range(8)]
    assert all(h["discarded"] == 0 for h in history[:4])  # no filtering during warm-up
    labels = dupl_labels(students, images, confidence=0.99)
    assert labels[0].shape == (20, 20) and set(np.unique(labels[0])) <= {-1, 0, 1}
    assert not np.allclose(students[0].head.weight.detach().numpy(), students[1].head.weight.detach().numpy())


@pytest.mark.slow
def test_dual_students_learn_from_noisy_labels(rng):
    images, initial, gts = _noisy_squares(rng)
    cfg = DuPLConfig(iterations=60, warmup=15, width=8, batch_size=2, lr=1e-2)
    students, history = train_dupl(images, initial, 2, cfg)
    assert history[-1]["tau"] < 0.71
    labels = dupl_labels(students, images, confidence=0.0)
    acc = np.mean([(p == g).mean() for p, g in zip(labels, gts, strict=True)])
    assert acc > 0.85
