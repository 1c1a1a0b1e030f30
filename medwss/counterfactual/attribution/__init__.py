"""Attribution baselines under one contract: ``fn(model, x, target=1, **kw) -> maps``.

`x` is a batch of slices (B, 1, H, W); the maps are (B, H, W) numpy arrays in [0, 1] (each map
scaled by its own maximum). Choose by name with `attribute(name, ...)`; `ATTRIBUTIONS` lists them.
A new method is one module in this package whose function carries ``@register_attribution("name")``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.base import ATTRIBUTIONS, Attribution, register_attribution


def attribute(
    name: str, model: nn.Module, x: torch.Tensor | np.ndarray, target: int = 1, **kwargs: object
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1] by the method `name` (a key of `ATTRIBUTIONS`)."""
    fn = ATTRIBUTIONS.get(name)
    x = torch.as_tensor(x).float()
    if len(x) == 0:
        return np.zeros((0, *x.shape[-2:]), np.float32)
    return fn(model, x, target, **kwargs)


__all__ = ["ATTRIBUTIONS", "Attribution", "attribute", "register_attribution"]
