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

Aggregators are registered by name (`register_aggregator`, into the `AGGREGATORS` registry) and
built with `create_aggregator(name, in_dim, n_classes, **kwargs)`. A new module in `medwss.mil`
that registers one is found on the first lookup; nothing else needs to import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from medwss.registry import Registry


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


def _standardize_input(module: Aggregator, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: the bag with standardised features (and token maps with matching channels)."""
    bag = args[0] if args else kwargs.get("bag")
    if not isinstance(bag, Bag):
        return args, kwargs
    mean: torch.Tensor = module.input_mean
    scale: torch.Tensor = module.input_scale
    feats = (bag.features.to(mean.dtype) - mean) / scale
    tokens = bag.tokens
    if tokens is not None and tokens.shape[1] == mean.numel():
        shape = (1, -1) + (1,) * (tokens.dim() - 2)
        tokens = (tokens.to(mean.dtype) - mean.view(shape)) / scale.view(shape)
    out = Bag(feats, bag.grid_index, bag.grid_shape, tokens, bag.coords)
    if args:
        return (out, *args[1:]), kwargs
    return args, {**kwargs, "bag": out}


class Aggregator(nn.Module):
    """Base class: subclasses set `name` and implement `forward(bag) -> MILOutput`.

    Every aggregator standardises its input channel-wise, ``(x − input_mean) / input_scale``, before
    its own forward (features and, when their channels match, token maps). The two buffers are
    identity by default; `set_input_norm` sets them from the training instances (`medwss mil train`
    does, ``standardize: true``), so features of any scale — a stats encoder's 1e-3, a foundation
    model's 1e2 — reach the first layer at unit scale. They are saved with the weights; model files
    written before they existed load with identity.
    """

    name = "aggregator"
    input_mean: torch.Tensor
    input_scale: torch.Tensor

    def __init__(self, in_dim: int, n_classes: int = 1) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_scale", torch.ones(in_dim))
        self.register_forward_pre_hook(_standardize_input, with_kwargs=True)

    @torch.no_grad()
    def set_input_norm(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Set the channel-wise input standardisation (`mean`, `scale`: (C,)); scales are floored at 1e-8."""
        self.input_mean.copy_(mean.to(self.input_mean))
        self.input_scale.copy_(scale.to(self.input_scale).clamp_min(1e-8))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        for key in ("input_mean", "input_scale"):  # files from before the buffers: identity
            state_dict.setdefault(prefix + key, getattr(self, key).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, bag: Bag, label: torch.Tensor | None = None) -> MILOutput:  # pragma: no cover - abstract
        raise NotImplementedError


AGGREGATORS: Registry[Callable[..., Aggregator]] = Registry(
    "aggregator", package="medwss.mil", marker="register_aggregator"
)
"""Every aggregator; a module of `medwss.mil` that calls `register_aggregator` is found on first lookup."""


def register_aggregator(name: str) -> Callable[[Callable[..., Aggregator]], Callable[..., Aggregator]]:
    """Register an aggregator class or factory under `name` (a decorator)."""
    return AGGREGATORS.register(name)


def list_aggregators() -> list[str]:
    """Names of the registered aggregators, sorted."""
    return sorted(AGGREGATORS)


def create_aggregator(name: str, in_dim: int, n_classes: int = 1, **kwargs) -> Aggregator:  # noqa: ANN003
    """Build the aggregator registered as `name`.

    Raises:
        UnknownNameError: (a `ConfigError`) no aggregator is registered as `name`.
        ConfigError: `kwargs` (``aggregator_kwargs``) holds an option the aggregator does not take.
    """
    from medwss.errors import ConfigError

    cls = AGGREGATORS.get(name)
    problem = unknown_options(name, kwargs)
    if problem:
        raise ConfigError(f"aggregator_kwargs: {problem}")
    return cls(in_dim=in_dim, n_classes=n_classes, **kwargs)


def unknown_options(name: str, kwargs: Mapping[str, object]) -> str | None:
    """What is wrong with `kwargs` for the aggregator `name` (None: nothing, or no such aggregator)."""
    import inspect

    if name not in AGGREGATORS:
        return None
    params = inspect.signature(AGGREGATORS.get(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    unknown = sorted(set(kwargs) - set(params))
    if not unknown:
        return None
    takes = ", ".join(p for p in params if p not in ("in_dim", "n_classes")) or "none"
    return f"{name} takes no option {', '.join(unknown)} (it takes: {takes})"
