"""Class-conditioned patch discriminator (LSGAN): is this a real slice of class ``y``?

The class enters as a constant input channel (0 normal, 1 abnormal). Real normal slices are
"real, normal"; real abnormal slices are "real, abnormal"; counterfactuals claim "normal" and must be
told apart from the real normal ones.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Strided convolutions with leaky ReLUs to a map of real/fake scores.

    Args:
        channels: Output channels of the strided (×2 down-sampling) convolutions.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2
        for i, c in enumerate(channels):
            layers.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores (B, 1, H/2^L, W/2^L) for slices `x` (B, 1, H, W) claimed to be of class `y` (B,)."""
        cond = y.float().view(-1, 1, 1, 1).expand_as(x)  # (B, 1, H, W)
        return self.net(torch.cat([x, cond], 1))
