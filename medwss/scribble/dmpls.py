"""Dual-branch network with dynamically mixed pseudo labels (DMPLS; Luo et al., MICCAI 2022, WSL4MIS).

One encoder, two decoders. Both branches are trained with partial cross-entropy on the scribbled
pixels; on every batch a random ``β ~ U(0, 1)`` mixes the two branches' (detached) softmax,
``p = β·p₁ + (1 − β)·p₂``, and its argmax is a dense pseudo label that supervises each branch by a
soft Dice loss: ``loss = ½ (pCE₁ + pCE₂) + pseudo_weight · ½ (Dice(p₁, ŷ) + Dice(p₂, ŷ))``, as in
the authors' ``train_weakly_supervised_pCE_dmpls`` (the weight 0.5 is theirs). The auxiliary
decoder sees the encoder's features through dropout (p = 0.3, WSL4MIS's ``UNet_CCT``), so the two
branches disagree and the mix is not a copy of either.

Here the network is the project's MONAI UNet (`medwss.seg.networks`); the auxiliary decoder is the
decoder of a second, independently initialised UNet of the same shape, fed the first one's encoder
features. Only the main branch is kept: the result is an ordinary segmenter (model kind
``segmenter``), predicted like any other. The size penalty and the negative cross-entropy of the
standard trainer are added to the main branch when their weights are set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medwss.data.labels import IGNORE
from medwss.errors import ConfigError
from medwss.seg.losses import negative_ce, partial_ce, size_penalty
from medwss.seg.train import SegSample, SegTrainConfig, build, fit_segmentation, size_weight_at

AUX_DROPOUT = 0.3
"""Dropout on the encoder features the auxiliary decoder sees (WSL4MIS ``UNet_CCT``)."""


def _levels(net: nn.Module) -> tuple[list[nn.Module], nn.Module, list[nn.Module]]:
    """A MONAI UNet split into its down blocks (top first), bottom block and up blocks (top first)."""
    from monai.networks.layers.simplelayers import SkipConnection

    downs: list[nn.Module] = []
    ups: list[nn.Module] = []
    block: nn.Module = net.model  # type: ignore[assignment]
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        downs.append(block[0])
        ups.append(block[2])
        block = block[1].submodule
    if not downs:
        raise ConfigError("the dual-branch network needs a MONAI UNet (network: unet)")
    return downs, block, ups


class DualBranch(nn.Module):
    """A MONAI UNet (the main branch, kept after training) plus an auxiliary decoder on its encoder.

    ``forward`` returns the main branch's logits (so the module predicts like the UNet);
    `both` returns ``(main, aux)``.
    """

    def __init__(self, cfg: SegTrainConfig, aux_dropout: float = AUX_DROPOUT) -> None:
        super().__init__()
        if cfg.network != "unet":
            raise ConfigError(f"method dmpls needs network: unet, got {cfg.network}")
        self.main = build(cfg)
        other = build(cfg)  # independently initialised: its decoder is the auxiliary one
        self.aux_ups = nn.ModuleList(_levels(other)[2])
        self.aux_dropout = aux_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the main and the auxiliary branch, the encoder run once."""
        downs, bottom, ups = _levels(self.main)
        feats = []
        h = x
        for d in downs:
            h = d(h)
            feats.append(h)
        b = bottom(h)
        drop = self.aux_dropout
        ym, ya = b, F.dropout(b, drop, self.training)
        for f, up_m, up_a in zip(reversed(feats), reversed(ups), reversed(list(self.aux_ups)), strict=True):
            ym = up_m(torch.cat([f, ym], 1))
            ya = up_a(torch.cat([F.dropout(f, drop, self.training), ya], 1))
        return ym, ya


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """WSL4MIS's Dice loss: ``1 − mean over classes (background included) of 2·Σpy / (Σp² + Σy²)``.

    Args:
        probs: (B, K, *S) softmax.
        target: (B, *S) dense class indices.
        valid: (B, 1, *S) 1 inside the image, 0 on padding (None: everywhere).
    """
    k = probs.shape[1]
    onehot = F.one_hot(target.clamp_min(0).long(), k).movedim(-1, 1).to(probs)
    if valid is not None:
        probs, onehot = probs * valid, onehot * valid
    dims = (0, *range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    return 1 - ((2 * inter + 1e-5) / (denom + 1e-5)).mean()


def dmpls_loss(
    model: DualBranch,
    batch: dict[str, torch.Tensor],
    cfg: SegTrainConfig,
    beta: float,
    pseudo_weight: float = 0.5,
    size_weight: float | None = None,
) -> torch.Tensor:
    """The DMPLS loss of one batch for a mixing weight `beta` (see the module docstring)."""
    main, aux = model.both(batch["image"])
    target = batch["target"]
    loss = 0.5 * (partial_ce(main, target, IGNORE) + partial_ce(aux, target, IGNORE))
    p1, p2 = torch.softmax(main, 1), torch.softmax(aux, 1)
    pseudo = torch.argmax(beta * p1.detach() + (1.0 - beta) * p2.detach(), dim=1)
    valid = batch.get("valid")
    loss = loss + pseudo_weight * 0.5 * (soft_dice_loss(p1, pseudo, valid) + soft_dice_loss(p2, pseudo, valid))
    size_weight = cfg.size_weight if size_weight is None else size_weight
    if size_weight > 0:
        axis = cfg.spatial_dims - 1 if cfg.size_per_slice else None
        loss = loss + size_weight * size_penalty(p1 * batch["valid"], batch["bounds"], slice_axis=axis)
    if cfg.negative_weight > 0:
        loss = loss + cfg.negative_weight * negative_ce(main, batch["empty"])
    return loss


def train_dual_branch(
    samples: Sequence[SegSample],
    cfg: SegTrainConfig,
    val: Sequence[SegSample] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
    run_only: Sequence[str] = (),
    pseudo_weight: float = 0.5,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train DMPLS on the one engine; returns the main branch (a plain segmenter) and the history.

    Same contract as `medwss.seg.train.train_segmenter` (seeding, resumable checkpoint, epoch of
    best validation Dice of the main branch, history rows); ``β`` of each batch is a function of
    (seed, epoch, batch), so a resumed run ends with the same weights.
    """

    def loss(net: nn.Module, batch: dict[str, torch.Tensor], rng: np.random.Generator, epoch: int) -> torch.Tensor:
        assert isinstance(net, DualBranch)
        beta = float(rng.uniform()) + 1e-10
        return dmpls_loss(net, batch, cfg, beta, pseudo_weight, size_weight_at(cfg, epoch))

    def main_branch(net: nn.Module) -> nn.Module:
        assert isinstance(net, DualBranch)
        return net.main

    model, history = fit_segmentation(
        lambda: DualBranch(cfg), loss, samples, cfg, val, checkpoint, progress,
        {**(run_config or {}), "method": "dmpls"}, run_only, evaluated=main_branch, desc="train dual-branch",
    )  # fmt: skip
    assert isinstance(model, DualBranch)
    return model.main.cpu().eval(), history
