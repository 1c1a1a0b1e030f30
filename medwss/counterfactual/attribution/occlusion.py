"""Occlusion sensitivity (Zeiler and Fergus, 2014): how much the score drops when a patch is hidden."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.base import register_attribution, scale01, target_prob


@torch.no_grad()
@register_attribution("occlusion")
def occlusion(
    model: nn.Module, x: torch.Tensor, target: int = 1, patch: int = 8, stride: int = 4, baseline: float | None = None
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1]: mean drop in ``p(target)`` over the occluding windows covering each pixel.

    Occluded patches take `baseline` (default: the slice's mean).
    """
    h, w = x.shape[-2:]
    tops = list(range(0, max(h - patch, 0) + 1, stride))
    lefts = list(range(0, max(w - patch, 0) + 1, stride))
    out = []
    for b in range(len(x)):
        xb = x[b : b + 1]
        fill = float(xb.mean()) if baseline is None else baseline
        p0 = target_prob(model, xb, target)[0]
        batch = xb.repeat(len(tops) * len(lefts), 1, 1, 1)
        k = 0
        for t in tops:
            for left in lefts:
                batch[k, :, t : t + patch, left : left + patch] = fill
                k += 1
        drops = p0 - target_prob(model, batch, target)  # (n_windows,)
        acc, cnt = torch.zeros(h, w), torch.zeros(h, w)
        k = 0
        for t in tops:
            for left in lefts:
                acc[t : t + patch, left : left + patch] += drops[k]
                cnt[t : t + patch, left : left + patch] += 1
                k += 1
        out.append(acc / cnt.clamp(min=1))
    return scale01(torch.stack(out))
