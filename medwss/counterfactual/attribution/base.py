"""Shared pieces of the attribution methods: the `ATTRIBUTIONS` registry, layer lookup, hooks, up-sampling, scaling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.registry import Registry


class Attribution(Protocol):
    """An attribution method: ``fn(model, x, target=1, **options) -> maps``.

    Contract: x (B, 1, H, W) → (B, H, W) float numpy maps in [0, 1], finite, for class `target` of a
    model returning (B, classes) (options such as ``layer=`` have defaults); `tests/test_contracts.py`
    runs every entry on a toy model and checks shape, range and finiteness.
    """

    def __call__(
        self, model: nn.Module, x: torch.Tensor, target: int = ..., /, *args: Any, **kwargs: Any
    ) -> np.ndarray: ...


ATTRIBUTIONS: Registry[Attribution] = Registry(
    "attribution method", package="medwss.counterfactual.attribution", marker="register_attribution"
)
"""Every attribution method; a module of this package that calls `register_attribution` is found on first lookup."""


def register_attribution(name: str) -> Callable[[Attribution], Attribution]:
    """Register an attribution function under `name` (a decorator)."""
    return ATTRIBUTIONS.register(name)


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name` (dotted path, e.g. ``layer4``)."""
    from medwss.errors import ConfigError

    modules = dict(model.named_modules())
    if name not in modules:
        raise ConfigError(f"model has no layer {name!r}")
    return modules[name]


def activations_and_grads(
    model: nn.Module, x: torch.Tensor, layer: str, target: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations A (B, K, h, w) of `layer`, gradients of the target logit w.r.t. A, and the logits (B, C)."""
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        store["a"] = out

    handle = find_layer(model, layer).register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x.detach().clone().requires_grad_(True))  # (B, C)
            logits[:, target].sum().backward()
    finally:
        handle.remove()
    a = store["a"]
    assert a.grad is not None
    return a.detach(), a.grad.detach(), logits.detach()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear up-sampling of (B, h, w) maps to (B, H, W)."""
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def scale01(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Clip negatives and divide each map (B, H, W) by its maximum; an all-zero map stays zero."""
    m = np.clip(np.asarray(torch.as_tensor(maps).detach().cpu().numpy(), dtype=np.float32), 0, None)
    peak = m.reshape(len(m), -1).max(1)[:, None, None] if len(m) else np.zeros((0, 1, 1), np.float32)
    return np.where(peak > 1e-12, m / np.maximum(peak, 1e-12), 0.0).astype(np.float32)


@torch.no_grad()
def target_prob(model: nn.Module, x: torch.Tensor, target: int, batch_size: int = 256) -> torch.Tensor:
    """Softmax probability of `target` for a batch (N, 1, H, W), evaluated in chunks."""
    model.eval()
    return torch.cat([torch.softmax(model(x[i : i + batch_size]), 1)[:, target] for i in range(0, len(x), batch_size)])
