"""Pooling modules: reduce instance (or position) values along one dimension, optionally masked.

One module per pooling rule (timm's house style: no ``mode`` string switch inside a model):

- `SmoothMaxPool`: ``Σ h·e^{αh} / Σ e^{αh}``, INSIGHT's case-level pooling; between the mean
  (α = 0) and the maximum (α → ∞).
- `MeanPool`: the (masked) mean.
- `MaxPool`: the (masked) maximum.

All three share the call ``pool(x, mask=None, dim=0)``: ``mask`` is a boolean tensor, True where a
value takes part, broadcastable to ``x`` once trailing singleton dimensions are added (so a
``(M,)`` mask serves an ``(M, K)`` input). A slice with no valid value pools to 0.

Example:
    >>> pool = SmoothMaxPool(alpha=8.0)
    >>> pool(torch.tensor([[0.1], [0.9]])).shape
    torch.Size([1])
"""

from __future__ import annotations

import torch
from torch import nn

from medwss.registry import Registry


def _align_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """`mask` as a boolean tensor broadcastable to `x` (trailing singleton dimensions added)."""
    if mask is None:
        return None
    mask = mask.to(device=x.device, dtype=torch.bool)
    return mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))


class SmoothMaxPool(nn.Module):
    """Smooth maximum ``Σ h·e^{αh} / Σ e^{αh}``, computed as ``Σ h·softmax(αh)`` (stable for any α).

    Args:
        alpha: Sharpness; 0 gives the mean, large values approach the maximum.
    """

    def __init__(self, alpha: float = 8.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, dim: int = 0) -> torch.Tensor:
        """Pool `x` along `dim`.

        Args:
            x: Values, e.g. (M, K).
            mask: True where a value takes part, e.g. (M,); None: all.
            dim: Dimension reduced.

        Returns:
            `x` without `dim`, e.g. (K,).
        """
        xf = x.float()  # (M, K)
        logits = self.alpha * xf  # (M, K)
        m = _align_mask(mask, xf)
        if m is not None:
            logits = logits.masked_fill(~m, float("-inf"))
        w = torch.softmax(logits, dim=dim)  # (M, K); NaN where a whole slice is masked
        if m is not None:
            w = torch.nan_to_num(w, nan=0.0)
            xf = xf.masked_fill(~m, 0.0)
        return (w * xf).sum(dim=dim).to(x.dtype)  # (K,)


class MeanPool(nn.Module):
    """Mean over the valid values."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, dim: int = 0) -> torch.Tensor:
        """Pool `x` (e.g. (M, K)) along `dim`; returns e.g. (K,)."""
        m = _align_mask(mask, x)
        if m is None:
            return x.mean(dim=dim)  # (K,)
        mf = m.to(x.dtype).expand_as(x)  # (M, K)
        return (x * mf).sum(dim=dim) / mf.sum(dim=dim).clamp_min(1.0)  # (K,)


class MaxPool(nn.Module):
    """Maximum over the valid values."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, dim: int = 0) -> torch.Tensor:
        """Pool `x` (e.g. (M, K)) along `dim`; returns e.g. (K,)."""
        m = _align_mask(mask, x)
        if m is None:
            return x.amax(dim=dim)  # (K,)
        out = x.masked_fill(~m, float("-inf")).amax(dim=dim)  # (K,)
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)


POOLS: Registry[type[nn.Module]] = Registry("pooling", package="medwss.mil", marker="POOLS.register")
"""Pooling modules by name; a module of `medwss.mil` that calls ``POOLS.register`` is found on first lookup."""
POOLS.register("smoothmax", SmoothMaxPool)
POOLS.register("mean", MeanPool)
POOLS.register("max", MaxPool)


def create_pool(name: str, **kwargs: float) -> nn.Module:
    """A pooling module by name (``smoothmax``, ``mean``, ``max``: see `POOLS`), for configs that choose one.

    Raises:
        UnknownNameError: (a `ConfigError`) no pooling is registered as `name`.
    """
    return POOLS.get(name)(**kwargs)
