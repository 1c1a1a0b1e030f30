"""COIN losses: LSGAN, KL flip toward "normal", L1 reconstruction and cycle, total variation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``½ E[(D(real) − 1)²] + ½ E[D(fake)²]``."""
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()


def lsgan_generator(fake: torch.Tensor) -> torch.Tensor:
    """``½ E[(D(fake) − 1)²]``: the generator wants its output scored real."""
    return 0.5 * ((fake - 1) ** 2).mean()


def kl_flip(logits: torch.Tensor, target_class: int = 0) -> torch.Tensor:
    """``KL(onehot(target) ‖ softmax(logits))`` = ``−log p_target``, averaged over the batch (B, K)."""
    return -F.log_softmax(logits, dim=1)[:, target_class].mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference."""
    return (a - b).abs().mean()


def total_variation(diff: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of a map (B, 1, H, W): mean |vertical| + mean |horizontal| neighbour differences."""
    dv = (diff[:, :, 1:, :] - diff[:, :, :-1, :]).abs().mean()
    dh = (diff[:, :, :, 1:] - diff[:, :, :, :-1]).abs().mean()
    return dv + dh
