"""The COIN generator: a MONAI UNet (skip connections) whose output is a perturbation of the input.

``x_cf = tanh(c · dec(x, c) + atanh(x))``: the paper's ``tanh(dec(x) + x)`` with the input taken in
the tanh pre-activation space, so that a zero perturbation gives back the input exactly (for images
in [-1, 1]). ``c`` is the frozen classifier's binarised decision: 1 (abnormal) lets the generator
inpaint, 0 (normal) zeroes the perturbation, so a slice judged normal is returned unchanged. The
decision also enters the network as a constant input channel. The last layer starts at zero, so
training starts from the identity. With ``smooth_sigma > 0`` the perturbation passes a fixed
Gaussian low-pass (our addition, off at 0): lesions are smooth, while the cheapest way to fool a
classifier is high-frequency adversarial noise, which the low-pass takes away from the generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-3


class CounterfactualGenerator(nn.Module):
    """UNet generator with a residual tanh output.

    Args:
        channels: UNet channels per level.
        strides: UNet down-sampling strides (one fewer than `channels`).
        num_res_units: Residual units per UNet block.
        smooth_sigma: Standard deviation (pixels) of the Gaussian low-pass on the perturbation; 0 = none.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        strides: tuple[int, ...] = (2, 2, 2),
        num_res_units: int = 1,
        smooth_sigma: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        self.channels = tuple(channels)
        self.strides = tuple(strides)
        self.num_res_units = num_res_units
        self.smooth_sigma = float(smooth_sigma)
        self.kernel: torch.Tensor
        self.register_buffer("kernel", _gaussian_kernel(self.smooth_sigma), persistent=False)
        self.unet = UNet(2, 2, channels[0], channels=channels, strides=strides, num_res_units=num_res_units)
        self.head = nn.Conv2d(channels[0], 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        assert self.head.bias is not None
        nn.init.zeros_(self.head.bias)

    def perturbation(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The (gated) perturbation ``c · dec(x, c)``, (B, 1, H, W)."""
        cond = c.float().view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        inp = torch.cat([x, cond.expand_as(x)], 1)  # (B, 2, H, W)
        d = self.head(self.unet(inp))  # (B, 1, H, W)
        if self.smooth_sigma > 0:
            d = F.conv2d(d, self.kernel, padding=int(self.kernel.shape[-1]) // 2)
        return d * cond  # (B, 1, H, W)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Counterfactual of `x` (B, 1, H, W) in [-1, 1] under decisions `c` (B,) in {0, 1}."""
        base = torch.atanh(x.clamp(-1 + _EPS, 1 - _EPS))  # (B, 1, H, W)
        out = torch.tanh(self.perturbation(x, c) + base)  # (B, 1, H, W)
        return torch.where(c.view(-1, 1, 1, 1) > 0, out, x)  # "normal": exactly x (no clamp round trip)

    def settings(self) -> dict[str, object]:
        return {
            "channels": list(self.channels),
            "strides": list(self.strides),
            "num_res_units": self.num_res_units,
            "smooth_sigma": self.smooth_sigma,
        }


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 2D Gaussian (1, 1, k, k) with k = 2⌈2σ⌉ + 1 (a 1×1 identity for σ = 0)."""
    if sigma <= 0:
        return torch.ones(1, 1, 1, 1)
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum())[None, None]
