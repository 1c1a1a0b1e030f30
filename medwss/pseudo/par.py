"""PAR-style pixel-adaptive refinement of activation maps (pure torch).

Each pixel's activation is replaced, a few times over, by an affinity-weighted average of its
neighbours at several dilations; affinities come from intensity similarity (relative to the local
spread) plus a weak position term, so activations spread inside homogeneous regions and stop at
edges. 3D volumes are refined slice by slice along the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _neighbours(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """(B, C, N, H, W) values of the 8 neighbours at each dilation (edge-replicated)."""
    pad = max(dilations)
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    h, w = x.shape[-2:]
    out = [
        xp[..., pad + dy * d : pad + dy * d + h, pad + dx * d : pad + dx * d + w]
        for d in dilations
        for dy, dx in _OFFSETS
    ]
    return torch.stack(out, dim=2)


class PAR(torch.nn.Module):
    """Pixel-adaptive refinement.

    Args:
        dilations: Neighbourhood dilations.
        n_iter: Refinement iterations.
        w_intensity: Temperature of the intensity kernel (relative to the local standard deviation).
        w_position: Weight of the position kernel.
    """

    def __init__(
        self,
        dilations: Sequence[int] = (1, 2, 4, 8),
        n_iter: int = 10,
        w_intensity: float = 0.3,
        w_position: float = 0.01,
    ) -> None:
        super().__init__()
        self.dilations = tuple(dilations)
        self.n_iter = n_iter
        self.w_intensity = w_intensity
        self.w_position = w_position

    def affinity(self, image: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) neighbour weights summing to 1 over N."""
        nb = _neighbours(image, self.dilations)  # (B, C, N, H, W)
        std = nb.std(dim=2, keepdim=True) + 1e-6  # (B, C, 1, H, W)
        diff = ((nb - image.unsqueeze(2)).abs() / (std * self.w_intensity)) ** 2
        aff = torch.softmax(-diff.mean(dim=1), dim=1)  # (B, N, H, W)
        dist = torch.tensor(
            [float(np.hypot(dy * d, dx * d)) for d in self.dilations for dy, dx in _OFFSETS], dtype=image.dtype
        )
        pos = torch.softmax(-((dist / dist.std()) ** 2), dim=0).view(1, -1, 1, 1)
        return aff + self.w_position * pos

    def forward(self, image: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
        """Refine `cams` (B, K, H, W) with the affinities of `image` (B, C, H, W)."""
        aff = self.affinity(image).unsqueeze(1)  # (B, 1, N, H, W)
        aff = aff / aff.sum(dim=2, keepdim=True)
        for _ in range(self.n_iter):
            cams = (_neighbours(cams, self.dilations) * aff).sum(dim=2)  # (B, K, H, W)
        return cams


def refine_cams(image: np.ndarray, cams: np.ndarray, par: PAR | None = None) -> np.ndarray:
    """Refine (K, *S) activation maps of a 2D image or 3D volume (slice-wise along the last axis)."""
    par = par or PAR()
    img = np.asarray(image, dtype=np.float32)
    img = (img - img.mean()) / (img.std() + 1e-6)
    with torch.no_grad():
        if img.ndim == 2:
            out = par(torch.from_numpy(img)[None, None], torch.from_numpy(np.asarray(cams, np.float32))[None])
            return out[0].numpy()
        x = torch.from_numpy(np.moveaxis(img, -1, 0))[:, None]  # (D, 1, H, W)
        c = torch.from_numpy(np.moveaxis(np.asarray(cams, np.float32), -1, 0))  # (D, K, H, W)
        return np.moveaxis(par(x, c).numpy(), 0, -1)
