"""Weak-label losses against hand-computed values and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medwss.data.labels import IGNORE
from medwss.seg.bounds import bounds_from_boxes, bounds_from_mask, bounds_from_tags, upper_only
from medwss.seg.losses import dice_loss, negative_ce, partial_ce, size_penalty, soft_size


def test_partial_ce_uses_labelled_pixels_only():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 1, 0, 0] = math.log(3.0)  # p(fg) = 3/4 at pixel 0
    target = torch.tensor([[[1, IGNORE, IGNORE]]])
    assert partial_ce(logits, target).item() == pytest.approx(-math.log(0.75))
    target2 = torch.tensor([[[1, IGNORE, 0]]])  # pixel 2: p(bg) = 1/2
    assert partial_ce(logits, target2).item() == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2)


def test_partial_ce_without_labels_is_zero_with_a_gradient_path():
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    loss = partial_ce(logits, torch.full((2, 4, 4), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None and torch.all(logits.grad == 0)


def test_negative_ce_only_on_empty_images():
    logits = torch.zeros(2, 2, 2, 2)
    loss = negative_ce(logits, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(math.log(2))
    assert negative_ce(logits, torch.tensor([False, False])).item() == 0.0


def test_soft_size_per_image_and_per_slice():
    probs = torch.zeros(1, 2, 2, 2, 3)
    probs[0, 1, :, :, 0] = 1.0
    probs[0, 0] = 1 - probs[0, 1]
    assert soft_size(probs)[0, 1].item() == 4.0
    assert soft_size(probs, slice_axis=2)[0, 1].tolist() == [4.0, 0.0, 0.0]


def test_size_penalty_value_and_gradient():
    # 10 pixels, foreground probability 0.5 everywhere: s = 5.
    p_fg = torch.full((1, 1, 10), 0.5, requires_grad=True)
    probs = torch.cat([1 - p_fg, p_fg], 1)
    inside = torch.tensor([[[np.nan, np.nan], [4.0, 6.0]]])
    assert size_penalty(probs, inside).item() == 0.0
    over = torch.tensor([[[np.nan, np.nan], [0.0, 3.0]]])  # s − b = 2 → 4 / 10
    loss = size_penalty(probs, over)
    assert loss.item() == pytest.approx(0.4)
    loss.backward()
    # d/dp_i of (Σp − 3)² / 10 = 2·2 / 10 for every pixel.
    assert torch.allclose(p_fg.grad, torch.full_like(p_fg, 0.4))
    under = torch.tensor([[[np.nan, np.nan], [8.0, np.nan]]])  # a − s = 3 → 9 / 10
    assert size_penalty(probs.detach(), under).item() == pytest.approx(0.9)


def test_size_penalty_per_slice_divides_by_slice_size():
    probs = torch.zeros(1, 2, 2, 2, 2)
    probs[:, 1] = 1.0  # every slice fully foreground: s = 4 per slice of 4 pixels
    bounds = torch.tensor([[[[np.nan, np.nan]] * 2, [[0.0, 2.0], [0.0, 4.0]]]])  # (1, 2, 2, 2)
    # slice 0: (4 − 2)² / 4 = 1; slice 1: 0 → mean 0.5
    assert size_penalty(probs, bounds, slice_axis=2).item() == pytest.approx(0.5)


def test_size_penalty_rejects_mismatched_bounds():
    with pytest.raises(ValueError, match="bounds shape"):
        size_penalty(torch.rand(1, 2, 4, 4), torch.zeros(1, 3, 2))


def test_dice_loss_perfect_and_ignored():
    target = torch.tensor([[[0, 1], [1, IGNORE]]])
    logits = torch.stack([(target == 0).float(), (target == 1).float()], 1) * 50
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-4)
    assert dice_loss(-logits, target).item() == pytest.approx(1.0, abs=1e-3)


def test_bounds_helpers():
    mask = np.zeros((4, 4, 2), np.int64)
    mask[:2, :2, 0] = 1
    b = bounds_from_mask(mask, 2, margin=0.1)
    assert np.isnan(b[0]).all() and np.allclose(b[1], [3.6, 4.4])
    per_slice = bounds_from_mask(mask, 2, margin=0.0, slice_axis=2)
    assert per_slice.shape == (2, 2, 2) and per_slice[1, :, 1].tolist() == [4.0, 0.0]
    tags = bounds_from_tags([True, False], (10.0, 50.0))
    assert tags[1].tolist() == [10.0, 50.0] and tags[2].tolist() == [0.0, 0.0]
    boxes = np.zeros((6, 6), np.int64)
    boxes[1:5, 1:3] = 1
    assert bounds_from_boxes(boxes, 2, fill=0.5)[1].tolist() == [4.0, 8.0]
    assert upper_only(b)[1].tolist() == [0.0, pytest.approx(4.4)]
