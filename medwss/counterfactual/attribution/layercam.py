"""LayerCAM (Jiang et al., 2021): positive gradients weight each activation element-wise."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.base import activations_and_grads, register_attribution, scale01, upsample


@register_attribution("layercam")
def layercam(model: nn.Module, x: torch.Tensor, target: int = 1, layer: str = "layer4") -> np.ndarray:
    """``relu(Σ_k relu(∂y/∂A_k) ⊙ A_k)`` at `layer`, up-sampled to the input; maps (B, H, W) in [0, 1]."""
    a, g, _ = activations_and_grads(model, x, layer, target)  # (B, K, h, w) twice
    cam = torch.relu((torch.relu(g) * a).sum(1))  # (B, h, w)
    return scale01(upsample(cam, (int(x.shape[-2]), int(x.shape[-1]))))
