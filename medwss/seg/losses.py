"""Losses for full and weak labels (Kervadec et al., "Constrained-CNN losses", 2018/2019).

Targets are integer maps with `IGNORE` (-1) where nothing is known, so one convention serves full
masks, scribbles, points and pseudo-labels. Sizes are in pixels (voxels); the size penalty is
divided by the number of pixels of the image (or slice), so its scale does not grow with the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medwss.data.labels import IGNORE


def partial_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels only (0, with a gradient path, when none are).

    Args:
        logits: (B, K, *S) raw scores.
        target: (B, *S) class indices, `ignore_index` where unlabelled.
    """
    if not bool((target != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target.long(), ignore_index=ignore_index)


def negative_ce(logits: torch.Tensor, empty: torch.Tensor, background: int = 0) -> torch.Tensor:
    """For images tagged empty: cross-entropy of every pixel toward `background`.

    Args:
        logits: (B, K, *S).
        empty: (B,) bool, True for images known to hold no foreground.
    """
    empty = empty.to(logits.device).bool()
    if not bool(empty.any()):
        return logits.sum() * 0.0
    logp = F.log_softmax(logits[empty], dim=1)  # (E, K, *S)
    return -logp[:, background].mean()


def soft_size(probs: torch.Tensor, slice_axis: int | None = None) -> torch.Tensor:
    """Soft size ``s = Σ softmax`` per image and class, or per slice along a spatial axis.

    Args:
        probs: (B, K, *S) class probabilities.
        slice_axis: None for one size per image (2D: per slice; 3D: per volume); a spatial axis
            (0-based among *S) for one size per slice along it.

    Returns:
        (B, K) or (B, K, Z) sizes in pixels.
    """
    if slice_axis is None:
        return probs.flatten(2).sum(-1)
    moved = probs.movedim(2 + slice_axis, 2)  # (B, K, Z, ...)
    return moved.flatten(3).sum(-1)


def size_penalty(
    probs: torch.Tensor, bounds: torch.Tensor, slice_axis: int | None = None, background: int | None = 0
) -> torch.Tensor:
    """``relu(s − b)² + relu(a − s)²`` on the soft size, over the image size, averaged.

    Args:
        probs: (B, K, *S) class probabilities (softmax output).
        bounds: (B, K, 2) lower and upper sizes in pixels (or (B, K, Z, 2) per slice); NaN = no
            bound on that side.
        slice_axis: As in `soft_size`; bounds must then be per slice.
        background: Class left unconstrained (None: constrain every class with bounds).

    Returns:
        Mean over images (and slices) of the penalty summed over constrained classes.
    """
    s = soft_size(probs, slice_axis)  # (B, K[, Z])
    bounds = bounds.to(s)
    if bounds.shape != (*s.shape, 2):
        raise ValueError(f"bounds shape {tuple(bounds.shape)} does not match sizes {tuple(s.shape)} + (2,)")
    n = probs[0, 0].numel() / (1 if slice_axis is None else probs.shape[2 + slice_axis])
    lower, upper = bounds[..., 0], bounds[..., 1]
    over = torch.where(torch.isnan(upper), torch.zeros_like(s), F.relu(s - upper.nan_to_num(0.0)))
    under = torch.where(torch.isnan(lower), torch.zeros_like(s), F.relu(lower.nan_to_num(0.0) - s))
    per_class = (over**2 + under**2) / n
    if background is not None:
        per_class = torch.cat([per_class[:, :background], per_class[:, background + 1 :]], dim=1)
    return per_class.sum(1).mean()


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE, include_background: bool = False
) -> torch.Tensor:
    """Soft Dice loss over labelled pixels, averaged over classes (and the batch).

    Args:
        logits: (B, K, *S).
        target: (B, *S) class indices, `ignore_index` where unlabelled.
    """
    k = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits)  # (B, 1, *S)
    probs = F.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp_min(0).long(), k).movedim(-1, 1).to(logits) * valid  # (B, K, *S)
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)  # (B, K)
    if not include_background:
        dice = dice[:, 1:]
    return 1 - dice.mean()
