"""RISE (Petsiuk et al., 2018): average of random smooth masks weighted by the score each keeps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.counterfactual.attribution.base import register_attribution, scale01, target_prob


def rise_masks(n: int, size: tuple[int, int], cells: int = 8, p_keep: float = 0.5, seed: int = 0) -> torch.Tensor:
    """`n` masks (n, 1, H, W): a random binary `cells`×`cells` grid, up-sampled bilinearly and randomly shifted."""
    gen = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, 1, cells, cells, generator=gen) < p_keep).float()
    ch, cw = int(np.ceil(size[0] / cells)), int(np.ceil(size[1] / cells))
    up = F.interpolate(grid, size=((cells + 1) * ch, (cells + 1) * cw), mode="bilinear", align_corners=False)
    dy = torch.randint(0, ch, (n,), generator=gen)
    dx = torch.randint(0, cw, (n,), generator=gen)
    return torch.stack([up[i, :, dy[i] : dy[i] + size[0], dx[i] : dx[i] + size[1]] for i in range(n)])


@torch.no_grad()
@register_attribution("rise")
def rise(
    model: nn.Module,
    x: torch.Tensor,
    target: int = 1,
    n_masks: int = 1000,
    cells: int = 8,
    p_keep: float = 0.5,
    baseline: float = -1.0,
    seed: int = 0,
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1]: ``Σ_i p(x ⊙ M_i) M_i / (n p_keep)``, masked-out pixels set to `baseline`."""
    masks = rise_masks(n_masks, (int(x.shape[-2]), int(x.shape[-1])), cells, p_keep, seed)  # (n, 1, H, W)
    out = []
    for b in range(len(x)):
        masked = baseline + (x[b : b + 1] - baseline) * masks  # (n, 1, H, W)
        scores = target_prob(model, masked, target)  # (n,)
        sal = (scores[:, None, None] * masks[:, 0]).sum(0) / (n_masks * p_keep)  # (H, W)
        out.append(sal - sal.min())
    return scale01(torch.stack(out))
