"""Generator, discriminator and classifier: shapes, identity at start and for "normal", gradients."""

from __future__ import annotations

import torch

from medwss.counterfactual.classifier import create_classifier
from medwss.counterfactual.discriminator import PatchDiscriminator
from medwss.counterfactual.generator import CounterfactualGenerator


def _x(b: int = 2, s: int = 32) -> torch.Tensor:
    return torch.rand(b, 1, s, s, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8


def test_generator_starts_as_identity_and_is_identity_for_normal():
    torch.manual_seed(0)
    g = CounterfactualGenerator((4, 8, 16), (2, 2), 0)
    x = _x()
    torch.testing.assert_close(g(x, torch.ones(2)), x, atol=1e-5, rtol=0)
    torch.nn.init.normal_(g.head.weight, std=0.5)  # a trained-looking head
    out = g(x, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)  # normal -> unchanged
    assert (out[1] - x[1]).abs().max() > 1e-3  # abnormal -> changed
    assert out.abs().max() <= 1


def test_generator_backward_reaches_every_parameter():
    g = CounterfactualGenerator((4, 8, 16), (2, 2), 1)
    torch.nn.init.normal_(g.head.weight, std=0.1)
    g(_x(), torch.ones(2)).sum().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_discriminator_and_classifier_shapes():
    d = PatchDiscriminator((8, 16))
    out = d(_x(3, 32), torch.tensor([0, 1, 0]))
    assert out.shape == (3, 1, 8, 8) and torch.isfinite(out).all()
    c = create_classifier((4, 8, 8, 16))
    logits = c(_x(3, 32))
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert all(p.grad is not None for p in c.parameters())
