"""A tiny full-resolution fully convolutional network (dilated convolutions + coordinate channels).

Used where a pseudo-label method needs a trainable network and CPU cost must stay small: the tag
classifier that produces activation maps, the AGMM encoder, the DuPL students. Coordinate
channels give the network the left/right and cranio-caudal position organs are told apart by.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def coord_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) row and column coordinates in [-1, 1]."""
    b, _, h, w = x.shape
    r = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
    c = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([r, c], dim=1)


class TinyFCN(nn.Module):
    """Dilated 3×3 convolutions at full resolution, then a 1×1 head.

    Args:
        in_channels: Image channels.
        out_channels: Head outputs (classes, or foreground classes for a tag classifier).
        width: Feature channels.
        dilations: Dilation of each 3×3 layer (receptive field grows with their sum).
        coords: Append coordinate channels to the input.
        downsample: Work at 1/`downsample` resolution (average-pooled input), features upsampled back
            bilinearly: cheaper, with a receptive field `downsample` times larger.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 24,
        dilations: Sequence[int] = (1, 2, 4, 8, 1),
        coords: bool = True,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        self.coords = coords
        self.downsample = downsample
        layers: list[nn.Module] = []
        c = in_channels + (2 if coords else 0)
        for d in dilations:
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, out_channels, 1)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        if self.coords:
            x = torch.cat([x, coord_channels(x)], dim=1)  # (B, C+2, H, W)
        if self.downsample == 1:
            return self.body(x)  # (B, F, H, W)
        size = x.shape[-2:]
        f = self.body(F.avg_pool2d(x, self.downsample, ceil_mode=True))  # (B, F, H/d, W/d)
        return F.interpolate(f, size=size, mode="bilinear", align_corners=False)  # (B, F, H, W)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, K, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))  # (B, K, H, W)


def class_weights(target: torch.Tensor, n_classes: int, ignore: int = -1) -> torch.Tensor:
    """(K,) inverse-square-root frequency weights of the labelled pixels of `target` (mean 1 over present classes).

    Organs are a few percent of a slice; without weighting a small network first learns "all background".
    """
    t = target[target != ignore]
    counts = torch.bincount(t, minlength=n_classes).float()
    w = torch.where(counts > 0, counts.clamp_min(1.0).rsqrt(), torch.zeros_like(counts))
    return w / w[counts > 0].mean().clamp_min(1e-12) if (counts > 0).any() else torch.ones(n_classes)
