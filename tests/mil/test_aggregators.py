"""Contract tests over every registered aggregator (timm-style: no exclusion list)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medwss.errors import ConfigError
from medwss.mil.registry import Bag, MILOutput, create_aggregator, list_aggregators

NAMES = list_aggregators()
C = 16


def make_bag(n: int = 37, grid: tuple[int, int] = (6, 8), seed: int = 0, tokens: bool = True) -> Bag:
    """`n` instances at random distinct cells of `grid`, C features and 4×4 token maps."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(grid[0] * grid[1], generator=g)[:n]
    index = torch.stack([cells // grid[1], cells % grid[1]], dim=1)
    toks = torch.randn(n, C, 4, 4, generator=g) if tokens else None
    return Bag(torch.randn(n, C, generator=g), index, grid, toks, index * 256)


def labels(k: int) -> list[torch.Tensor]:
    """A positive and a negative target (K = 1), or two one-hot targets (K > 1)."""
    if k == 1:
        return [torch.ones(1), torch.zeros(1)]
    return [F.one_hot(torch.tensor(c), k).float() for c in (0, 1)]


def check_output(out: MILOutput, n: int, k: int) -> None:
    assert out.probs.shape == (k,)
    assert out.scores.shape == (n, k)
    for t in (out.probs, out.scores):
        assert torch.isfinite(t).all()
        assert float(t.detach().min()) >= 0.0 and float(t.detach().max()) <= 1.0
    if out.aux_loss is not None:
        assert out.aux_loss.dim() == 0 and torch.isfinite(out.aux_loss)
    if out.dense is not None:
        assert out.dense.shape[0] == k and torch.isfinite(out.dense).all()


def test_registry_lists_the_methods() -> None:
    assert {"insight", "mean", "max", "abmil", "clam_sb", "transmil"} <= set(NAMES)
    with pytest.raises(ConfigError, match="unknown aggregator"):
        create_aggregator("no-such-aggregator", in_dim=C)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_forward_contract(name: str, k: int) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, in_dim=C, n_classes=k).eval()
    assert model.in_dim == C and model.n_classes == k
    bag = make_bag()
    with torch.no_grad():
        out = model(bag)
    check_output(out, len(bag), k)
    if out.dense is not None:
        assert out.dense.shape == (k, 6, 8)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_every_parameter_a_gradient(name: str, k: int) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, in_dim=C, n_classes=k).train()
    loss = torch.zeros(())
    for seed, target in enumerate(labels(k)):  # a positive and a negative case, like a small batch
        out = model(make_bag(seed=seed), label=target)
        loss = loss + F.binary_cross_entropy(out.probs, target)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_single_instance_bag(name: str) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, in_dim=C, n_classes=1)
    bag = make_bag(n=1, grid=(1, 1))
    out = model.train()(bag, label=torch.ones(1))
    check_output(out, 1, 1)
    with torch.no_grad():
        check_output(model.eval()(bag), 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name: str) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, in_dim=C, n_classes=3).eval()
    bag = make_bag()
    with torch.no_grad():
        a, b = model(bag), model(bag)
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=0)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_bag_without_grid_or_tokens(name: str) -> None:
    torch.manual_seed(0)
    model = create_aggregator(name, in_dim=C, n_classes=1).eval()
    bag = make_bag()
    with torch.no_grad():
        out = model(Bag(bag.features))
    check_output(out, len(bag), 1)
    assert out.dense is None


@pytest.mark.parametrize("name", NAMES)
def test_stores_its_arguments(name: str) -> None:
    model = create_aggregator(name, in_dim=C, n_classes=1, hidden=32)
    assert model.hidden == 32
