"""Score-CAM (Wang et al., 2020): each activation map, used as a mask, is weighted by the score it keeps."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.attribution.base import find_layer, register_attribution, scale01, target_prob, upsample


@torch.no_grad()
@register_attribution("scorecam")
def scorecam(
    model: nn.Module, x: torch.Tensor, target: int = 1, layer: str = "layer4", baseline: float = -1.0
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1]: ``relu(Σ_k w_k A_k)`` with ``w_k = p(x ⊙ M_k) − p(baseline)``.

    ``M_k`` is activation ``A_k`` up-sampled and scaled to [0, 1]; masked-out pixels take `baseline`.
    """
    store: list[torch.Tensor] = []
    handle = find_layer(model, layer).register_forward_hook(lambda m, i, o: store.append(o.detach()))
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    acts = store[0]  # (B, K, h, w)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    out = []
    for b in range(len(x)):
        m = upsample(acts[b], size)  # (K, H, W)
        lo = m.flatten(1).min(1)[0][:, None, None]
        hi = m.flatten(1).max(1)[0][:, None, None]
        m = torch.where(hi - lo > 1e-8, (m - lo) / (hi - lo + 1e-8), torch.zeros_like(m))
        masked = baseline + (x[b : b + 1] - baseline) * m[:, None]  # (K, 1, H, W)
        base = target_prob(model, torch.full_like(x[b : b + 1], baseline), target)
        w = target_prob(model, masked, target) - base  # (K,)
        out.append(torch.relu((w[:, None, None] * m).sum(0)))
    return scale01(torch.stack(out))
