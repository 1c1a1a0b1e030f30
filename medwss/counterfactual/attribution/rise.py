"""RISE (Petsiuk, Das and Saenko, BMVC 2018): average of random smooth masks weighted by the score each keeps.

As in the paper and its reference code: `n_masks` binary grids of `cells` × `cells` cells, each cell
kept with probability `p_keep`, bilinearly up-sampled to ``(cells + 1) · ⌈H / cells⌉`` pixels and
cropped at a random shift of up to one cell; the saliency is ``Σ_i p(x ⊙ M_i) · M_i / (N · p_keep)``
(the expected score given that the pixel is kept). Paper defaults: N = 4000, s = 7, p = 0.5.

Masked-out pixels blend toward `baseline`: ``baseline + (x − baseline) · M``. The reference code
multiplies the *normalised* input by the mask, so its masked pixels are 0 of the model's input (the
dataset mean there): ``baseline=0.0`` is that; ``-1.0`` is "intensity zero" (black) for inputs in
[-1, 1]; ``"mean"`` the slice's mean. The choice matters when dark (or mid-grey) blobs are what the
classifier calls abnormal: a fill that looks like a lesion makes every mask score high and the map flat
(kidney benchmark, dark synthetic tumours: validation IoU 0.02–0.03 with -1, 0.33–0.39 with 0).

Score (`score`): ``"prob"``, the class probability, is the paper's. ``"logit"`` (a deviation from the
paper) weighs each mask by the class's log-odds ``z_t − log Σ_{c≠t} exp z_c`` (the logit difference
for two classes) minus their mean over the N masks. When the classifier saturates (p ≈ 1 on nearly
every masked copy) ``Σ p·M`` is ≈ ``Σ M``, the masks' own coverage noise, while the log-odds still
rank the copies; the centring matters as much, since a constant added to the score adds that
constant times the coverage noise (with it the map is ``Σ (s_i − s̄) M_i / (N p)``, the covariance of
score and mask, free of the coverage term).

Output scaling (ours, monotone per slice, so the map's ranking is the paper's): the map minus its
minimum, divided by its maximum, so a fixed threshold selects the top of each map's range.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.counterfactual.attribution.base import register_attribution, scale01


def rise_masks(n: int, size: tuple[int, int], cells: int = 7, p_keep: float = 0.5, seed: int = 0) -> torch.Tensor:
    """`n` masks (n, 1, H, W) in [0, 1]: a random binary `cells`×`cells` grid, up-sampled bilinearly, randomly shifted."""
    if n < 1 or cells < 1 or not 0 < p_keep <= 1:
        raise ValueError(f"RISE needs n ≥ 1, cells ≥ 1 and 0 < p_keep ≤ 1 (got {n}, {cells}, {p_keep})")
    gen = torch.Generator().manual_seed(seed)
    grid = (torch.rand(n, 1, cells, cells, generator=gen) < p_keep).float()
    ch, cw = int(np.ceil(size[0] / cells)), int(np.ceil(size[1] / cells))
    up = F.interpolate(grid, size=((cells + 1) * ch, (cells + 1) * cw), mode="bilinear", align_corners=False)
    dy = torch.randint(0, ch, (n,), generator=gen)
    dx = torch.randint(0, cw, (n,), generator=gen)
    return torch.stack([up[i, :, dy[i] : dy[i] + size[0], dx[i] : dx[i] + size[1]] for i in range(n)])


SCORES = ("prob", "logit")
"""What weighs a mask: the class probability (the paper) or the class log-odds (a deviation, for saturated scores)."""


@torch.no_grad()
def rise_logits(
    model: nn.Module, x: torch.Tensor, masks: torch.Tensor, baseline: float | str = 0.0, batch_size: int = 256
) -> torch.Tensor:
    """The model's logits (N, classes) on the N masked copies ``fill + (x − fill) · M_i`` of one slice `x` (1, C, H, W)."""
    if isinstance(baseline, str) and baseline != "mean":
        raise ValueError(f"RISE baseline must be a number or 'mean', got {baseline!r}")
    fill = float(x.mean()) if baseline == "mean" else float(baseline)
    model.eval()
    out = [model(fill + (x - fill) * masks[i : i + batch_size]) for i in range(0, len(masks), batch_size)]
    return torch.cat(out).float()


def mask_scores(logits: torch.Tensor, target: int = 1, score: str = "prob") -> torch.Tensor:
    """Per-mask weights (N,) from logits (N, classes): softmax probability of `target`, or its centred log-odds."""
    if score == "prob":
        return torch.softmax(logits, 1)[:, target]
    if score == "logit":
        others = torch.cat([logits[:, :target], logits[:, target + 1 :]], 1)
        log_odds = logits[:, target] - torch.logsumexp(others, 1)
        return log_odds - log_odds.mean()
    raise ValueError(f"RISE score must be one of {SCORES}, got {score!r}")


def saliency_from_scores(scores: torch.Tensor, masks: torch.Tensor, p_keep: float = 0.5) -> torch.Tensor:
    """``Σ_i s_i M_i / (N p_keep)`` (H, W) for per-mask scores (N,) and masks (N, 1, H, W)."""
    return torch.einsum("n,nhw->hw", scores.float(), masks[:, 0].float()) / (len(masks) * p_keep)


def rise_saliency(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    target: int = 1,
    p_keep: float = 0.5,
    baseline: float | str = 0.0,
    batch_size: int = 256,
    score: str = "prob",
) -> torch.Tensor:
    """The raw RISE saliency (H, W) of one slice `x` (1, C, H, W): ``Σ_i p(x ⊙ M_i) M_i / (N p_keep)``.

    With ``score="logit"`` the class log-odds, centred over the masks, replace ``p`` (see the module notes).
    """
    if score not in SCORES:
        raise ValueError(f"RISE score must be one of {SCORES}, got {score!r}")
    logits = rise_logits(model, x, masks, baseline, batch_size)
    return saliency_from_scores(mask_scores(logits, target, score), masks, p_keep)


def scaled(sal: torch.Tensor) -> np.ndarray:
    """RISE saliencies (B, H, W) as maps in [0, 1]: each minus its minimum, over its maximum."""
    return scale01(sal - sal.flatten(1).min(1).values[:, None, None])


@register_attribution("rise")
@torch.no_grad()
def rise(
    model: nn.Module,
    x: torch.Tensor,
    target: int = 1,
    n_masks: int = 4000,
    cells: int = 7,
    p_keep: float = 0.5,
    baseline: float | str = 0.0,
    seed: int = 0,
    batch_size: int = 256,
    score: str = "prob",
) -> np.ndarray:
    """Maps (B, H, W) in [0, 1]: RISE saliency of class `target` (see the module notes), the same masks for every slice.

    `score` is ``"prob"`` (the paper's) or ``"logit"`` (centred class log-odds; a deviation for saturated classifiers).
    """
    if isinstance(baseline, str) and baseline != "mean":
        raise ValueError(f"RISE baseline must be a number or 'mean', got {baseline!r}")
    if score not in SCORES:
        raise ValueError(f"RISE score must be one of {SCORES}, got {score!r}")
    masks = rise_masks(n_masks, (int(x.shape[-2]), int(x.shape[-1])), cells, p_keep, seed)  # (n, 1, H, W)
    sal = [
        rise_saliency(model, x[b : b + 1], masks, target, p_keep, baseline, batch_size, score) for b in range(len(x))
    ]
    return scaled(torch.stack(sal))
