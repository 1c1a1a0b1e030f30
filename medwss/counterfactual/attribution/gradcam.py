"""Grad-CAM (Selvaraju et al., 2017) through `monai.visualize.GradCAM`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.base import register_attribution, scale01


@register_attribution("gradcam")
def gradcam(model: nn.Module, x: torch.Tensor, target: int = 1, layer: str = "layer4") -> np.ndarray:
    """Grad-CAM maps (B, H, W) in [0, 1] for class `target` at `layer` (channel weights = mean gradients)."""
    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=model, target_layers=layer, postprocessing=lambda m: m)  # MONAI's default inverts
    with torch.enable_grad():
        maps = cam(x.detach().clone().requires_grad_(True), class_idx=target)  # (B, 1, H, W)
    return scale01(maps[:, 0])
