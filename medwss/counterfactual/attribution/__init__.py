"""Attribution baselines under one contract: ``fn(model, x, target=1, **kw) -> maps``.

`x` is a batch of slices (B, 1, H, W); the maps are (B, H, W) numpy arrays in [0, 1] (each map
scaled by its own maximum). Choose by name with `attribute(name, ...)`; `ATTRIBUTIONS` lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.gradcam import gradcam
from medwss.counterfactual.attribution.layercam import layercam
from medwss.counterfactual.attribution.occlusion import occlusion
from medwss.counterfactual.attribution.rise import rise
from medwss.counterfactual.attribution.scorecam import scorecam

Attribution = Callable[..., np.ndarray]

ATTRIBUTIONS: dict[str, Attribution] = {
    "gradcam": gradcam,
    "layercam": layercam,
    "scorecam": scorecam,
    "rise": rise,
    "occlusion": occlusion,
}


def attribute(
    name: str, model: nn.Module, x: torch.Tensor | np.ndarray, target: int = 1, **kwargs: object
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1] by the method `name` (a key of `ATTRIBUTIONS`)."""
    from medwss.errors import ConfigError

    if name not in ATTRIBUTIONS:
        raise ConfigError(f"unknown attribution method {name!r}; choose from {', '.join(ATTRIBUTIONS)}")
    x = torch.as_tensor(x).float()
    if len(x) == 0:
        return np.zeros((0, *x.shape[-2:]), np.float32)
    return ATTRIBUTIONS[name](model, x, target, **kwargs)


__all__ = ["ATTRIBUTIONS", "attribute"]
