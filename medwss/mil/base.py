"""The aggregator contract: one bag in, case probabilities and per-instance scores out.

Every aggregator maps a `Bag` to a `MILOutput`:

- ``probs``: (K,) case-level probabilities in [0, 1], one per class (K = 1 for a binary task:
  the probability of the positive class; K = number of classes otherwise, one-vs-rest).
- ``scores``: (N, K) per-instance scores in [0, 1] in the bag's instance order; these are the
  heatmap (INSIGHT's heatmap values, a baseline's attention normalised to [0, 1] or its instance
  probabilities).
- ``aux_loss``: a scalar added to the BCE loss on ``probs`` (CLAM's instance loss, INSIGHT's
  spectral-decoupling penalty), or None.
- ``dense``: optionally, the dense heatmap (K, H, W) or (K, D, H, W) on the case's tile grid.

Aggregators are registered by name (`register_aggregator`) and built with
`create_aggregator(name, in_dim, n_classes, **kwargs)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from medwss.errors import ConfigError


@dataclass
class Bag:
    """One case's instances, as tensors on one device.

    Attributes:
        features: (N, C) instance embeddings.
        grid_index: (N, 2) or (N, 3) position of each instance on the tile grid, or None.
        grid_shape: Size of that grid, or None.
        tokens: (N, C, h, w) per-instance spatial token maps, or None.
        coords: (N, 2|3) level-0 pixel or voxel coordinates (kept for exports), or None.
    """

    features: torch.Tensor
    grid_index: torch.Tensor | None = None
    grid_shape: tuple[int, ...] | None = None
    tokens: torch.Tensor | None = None
    coords: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def to(self, device: torch.device | str) -> Bag:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Bag(
            self.features.to(device), move(self.grid_index), self.grid_shape, move(self.tokens), move(self.coords)
        )


@dataclass
class MILOutput:
    """What an aggregator returns for one bag (see the module docstring)."""

    probs: torch.Tensor
    scores: torch.Tensor
    aux_loss: torch.Tensor | None = None
    dense: torch.Tensor | None = None


class Aggregator(nn.Module):
    """Base class: subclasses set `name` and implement `forward(bag) -> MILOutput`."""

    name = "aggregator"

    def __init__(self, in_dim: int, n_classes: int = 1) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_classes = n_classes

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:  # pragma: no cover - abstract
        raise NotImplementedError


_REGISTRY: dict[str, Callable[..., Aggregator]] = {}


def register_aggregator(name: str) -> Callable[[Callable[..., Aggregator]], Callable[..., Aggregator]]:
    """Register an aggregator class or factory under `name`."""

    def wrap(factory: Callable[..., Aggregator]) -> Callable[..., Aggregator]:
        if name in _REGISTRY:
            raise ValueError(f"aggregator {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_aggregators() -> list[str]:
    return sorted(_REGISTRY)


def create_aggregator(name: str, in_dim: int, n_classes: int = 1, **kwargs) -> Aggregator:  # noqa: ANN003
    """Build the aggregator registered as `name`."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown aggregator {name!r}; known: {', '.join(list_aggregators())}")
    return _REGISTRY[name](in_dim=in_dim, n_classes=n_classes, **kwargs)
