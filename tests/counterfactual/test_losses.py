"""COIN losses on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from medwss.counterfactual import losses


def test_total_variation_hand_value():
    d = torch.tensor([[0.0, 1.0], [0.0, 3.0]])[None, None]  # (1, 1, 2, 2)
    # vertical diffs: |0-0|, |3-1| -> mean 1; horizontal: |1-0|, |3-0| -> mean 2
    assert losses.total_variation(d).item() == pytest.approx(3.0)
    assert losses.total_variation(torch.ones(2, 1, 5, 5)).item() == 0.0


def test_lsgan_values():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # real: ((0)^2 + (1)^2)/2 = 0.5 -> *0.5 = 0.25 ; fake: (0 + 1)/2 = 0.5 -> 0.25
    assert losses.lsgan_discriminator(real, fake).item() == pytest.approx(0.5)
    assert losses.lsgan_discriminator(torch.ones(3), torch.zeros(3)).item() == 0.0
    assert losses.lsgan_generator(torch.ones(4)).item() == 0.0
    assert losses.lsgan_generator(torch.zeros(4)).item() == pytest.approx(0.5)


def test_kl_flip_value_and_direction():
    logits = torch.tensor([[0.0, 0.0]])
    assert losses.kl_flip(logits, 0).item() == pytest.approx(math.log(2))
    # more "normal" (class 0) -> lower loss; gradient pushes the normal logit up
    more_normal = torch.tensor([[2.0, 0.0]])
    assert losses.kl_flip(more_normal, 0).item() < losses.kl_flip(logits, 0).item()
    x = torch.zeros(1, 2, requires_grad=True)
    losses.kl_flip(x, 0).backward()
    assert x.grad is not None and x.grad[0, 0] < 0 < x.grad[0, 1]


def test_l1():
    assert losses.l1(torch.zeros(2, 2), torch.full((2, 2), -0.5)).item() == pytest.approx(0.5)
