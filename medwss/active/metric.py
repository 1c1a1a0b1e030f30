"""The contrastive slice metric: an encoder trained with NT-Xent plus volume, patient and adjacent-slice positives.

Two augmented views of every slice attract (weight 1.0); so do other slices of the same volume
(0.35) and of the same patient (0.05), and optionally the slices just above and below (±1) in the
same volume; related slices are kept out of each other's negatives (Vepa et al., NeurIPS 2024,
temperature 0.5). The loss is `weighted_group_nt_xent`; views come from the pretraining `Augment`,
the projection head is the pretraining `ProjectionHead`. Selection uses the encoder's pooled
embedding (L2-normalised), as the paper does. Training runs on the one engine (`medwss.train.fit`):
seeded, on the configured device, resumable from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from pydantic import Field

from medwss.config import StrictConfig
from medwss.embed.encoders import Encoder, create_encoder
from medwss.embed.pretrain.augment import Augment, AugmentConfig
from medwss.embed.pretrain.ntxent import weighted_group_nt_xent
from medwss.embed.pretrain.probe import embed
from medwss.embed.pretrain.trainer import ProjectionHead
from medwss.errors import ConfigError
from medwss.train import Context, EngineConfig, fit, save_model
from medwss.train.device import resolve_device, seed_everything


class MetricConfig(StrictConfig):
    """How the slice metric is learned (configs/al.yaml, key ``metric``)."""

    encoder: str = "resnet18"
    encoder_kwargs: dict[str, Any] = Field(default_factory=lambda: {"widen_factor": 0.125})
    epochs: int = Field(default=30, ge=0)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    temperature: float = Field(default=0.5, gt=0)
    instance_weight: float = Field(default=1.0, ge=0)
    volume_weight: float = Field(default=0.35, ge=0)
    patient_weight: float = Field(default=0.05, ge=0)
    adjacent_weight: float = Field(default=0.0, ge=0)
    """Weight of the ±1 neighbours in the same volume (0: off)."""
    exclude_groups_from_negatives: bool = True
    slices_per_volume: int = Field(default=0, ge=0)
    """Group batches (the paper's batch sampler): each batch is made of runs of up to this many slices
    of one volume, so volume and adjacent-slice pairs occur in every batch; 0: uniformly shuffled batches."""
    projection_dim: int = Field(default=128, ge=1)
    projection_hidden: int = Field(default=256, ge=1)
    select_features: Literal["encoder", "projection"] = "encoder"
    """Which embedding selection uses: the encoder's pooled one (the paper's) or the projection head's
    output (an ablation; only the encoder is saved, so a reloaded metric gives the encoder's)."""
    augment: AugmentConfig = AugmentConfig(rot90=False, blur_p=0.2)
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on CUDA; no effect on the CPU."""


def make_encoder(cfg: MetricConfig, weights: str | Path | None = None) -> Encoder:
    """The slice encoder (1 channel, 2D) of a config, random or with saved weights."""
    return create_encoder(cfg.encoder, spatial_dims=2, in_channels=1, weights=weights, **cfg.encoder_kwargs)


def batch_groups(volume: torch.Tensor, patient: torch.Tensor, index: torch.Tensor, cfg: MetricConfig) -> dict:
    """The positives relations of one batch, by name, for `weighted_group_nt_xent`."""
    groups: dict[str, torch.Tensor] = {"volume": volume, "patient": patient}
    if cfg.adjacent_weight > 0:
        same = volume[:, None] == volume[None, :]
        groups["adjacent"] = same & ((index[:, None] - index[None, :]).abs() == 1)  # (B, B)
    return groups


def group_order(volume: torch.Tensor, run: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of the slices made of runs of up to `run` slices of one volume, in random order.

    Each volume's slices are shuffled and cut into runs of `run` (its last run shorter); the runs are
    then shuffled, so every slice appears once per epoch and a batch holds about ``batch / run`` volumes.
    """
    runs: list[torch.Tensor] = []
    for v in torch.unique(volume).tolist():
        members = torch.nonzero(volume == v).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        runs += list(torch.split(members, run))
    return torch.cat([runs[i] for i in torch.randperm(len(runs), generator=generator).tolist()])


RUN_ONLY = ("device",)
"""`MetricConfig` keys a resumed run may change (besides `medwss.train.RUN_ONLY`)."""


def train_metric(
    thumbs: np.ndarray,
    volume: np.ndarray,
    patient: np.ndarray,
    index: np.ndarray,
    cfg: MetricConfig,
    out: str | Path | None = None,
    progress: bool = True,
) -> tuple[Encoder, list[dict[str, float]]]:
    """Train the slice encoder on a pool's thumbnails, on the one engine (`medwss.train.fit`).

    Seeded; on `cfg.device` (``auto``: CUDA when present), bfloat16 autocast on CUDA with `cfg.amp`.
    With `out`, the engine checkpoints every epoch to ``out + ".ckpt"`` and an interrupted run
    resumes from it with the same final weights (other settings: a `ConfigError` naming them); the
    encoder is then written to `out` as the one model file (kind ``encoder``, the metric config in
    its meta; loadable with `make_encoder(cfg, out)`) and the checkpoint removed.

    Args:
        thumbs: ``(N, 1, T, T)`` slices in [0, 1].
        volume: ``(N,)`` volume id of each slice.
        patient: ``(N,)`` patient id of each slice.
        index: ``(N,)`` slice index in its volume.
        cfg: Settings.
        out: Where the encoder's weights go (atomically); nothing saved when None.
        progress: Show a progress bar.

    Returns:
        The encoder (eval mode, CPU) and one history row per epoch (``epoch``, ``loss``, ``seconds``).
    """
    n = len(thumbs)
    if n < 2:
        raise ConfigError(f"the slice metric needs at least 2 slices, got {n}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    encoder = make_encoder(cfg)
    if cfg.epochs == 0:  # the untrained metric (an ablation)
        encoder = encoder.cpu().eval()
        if out is not None:
            _save(encoder, cfg, out)
        return encoder, []
    head = ProjectionHead(encoder.embed_dim, cfg.projection_hidden, cfg.projection_dim)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, n)
    total = max(1, cfg.epochs * (n // batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    augment = Augment(cfg.augment, spatial_dims=2)
    x_all = torch.from_numpy(np.asarray(thumbs, dtype=np.float32))
    ids = {
        k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in (("v", volume), ("p", patient), ("i", index))
    }
    weights = {
        "instance": cfg.instance_weight,
        "volume": cfg.volume_weight,
        "patient": cfg.patient_weight,
        "adjacent": cfg.adjacent_weight,
    }

    def data(epoch: int) -> Iterator[tuple[torch.Tensor, int]]:
        """Full batches of a permutation seeded by (seed, epoch), each with its augmentation seed."""
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = (
            group_order(ids["v"], cfg.slices_per_volume, g) if cfg.slices_per_volume else torch.randperm(n, generator=g)
        )
        for b, s in enumerate(range(0, n - batch + 1, batch)):
            yield order[s : s + batch], (cfg.seed * 100_003 + epoch) * 10_007 + b

    def step(item: tuple[torch.Tensor, int], ctx: Context) -> torch.Tensor:
        idx, seed = item
        g = torch.Generator().manual_seed(seed)  # the batch's views: a function of (seed, epoch, batch)
        x = x_all[idx].to(ctx.device)  # (B, 1, T, T)
        views = torch.cat([augment(x, g), augment(x, g)])  # (2B, 1, T, T)
        z = ctx.models["head"](ctx.models["encoder"](views))  # (2B, P)
        groups = batch_groups(ids["v"][idx].to(ctx.device), ids["p"][idx].to(ctx.device),
                              ids["i"][idx].to(ctx.device), cfg)  # fmt: skip
        return weighted_group_nt_xent(z.float(), groups, weights, cfg.temperature, cfg.exclude_groups_from_negatives)

    engine = EngineConfig(
        epochs=cfg.epochs, monitor="train_loss", restore_best=False, seed=cfg.seed, device=str(device),
        amp=cfg.amp, scheduler_interval="step", progress=progress, desc="contrastive metric",
    )  # fmt: skip
    ckpt = Path(str(out) + ".ckpt") if out is not None else None
    res = fit(
        {"encoder": encoder, "head": head}, opt, step, data, engine, schedulers=sched, checkpoint=ckpt,
        run_config={**cfg.model_dump(mode="json"), "n": n}, run_only=RUN_ONLY,
    )  # fmt: skip
    history = [{"epoch": r["epoch"] + 1, "loss": r["train_loss"], "seconds": r["seconds"]} for r in res.history]
    encoder = encoder.cpu().eval()
    if out is not None:
        _save(encoder, cfg, out)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    if cfg.select_features == "projection":
        return cast(Encoder, _Projected(encoder, head.cpu().eval())), history
    return encoder, history


class _Projected(torch.nn.Module):
    """Encoder followed by its projection head, as an encoder (``embed_dim`` = projection size)."""

    def __init__(self, encoder: Encoder, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.embed_dim = int(cast(torch.nn.Linear, head.net[-1]).out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _save(encoder: Encoder, cfg: MetricConfig, out: str | Path) -> Path:
    """The metric encoder as the one model file (kind ``encoder``), its training config in the meta."""
    meta = {"trained_by": "medwss active metric", "metric": cfg.model_dump(mode="json")}
    return save_model(out, "encoder", encoder, dict(getattr(encoder, "config", {}) or {}), meta)


def slice_features(encoder: Encoder, thumbs: np.ndarray, device: str = "auto") -> np.ndarray:
    """``(N, D)`` L2-normalised embeddings of ``(N, 1, T, T)`` thumbnails."""
    feats = embed(encoder, torch.from_numpy(np.asarray(thumbs, dtype=np.float32)), device=resolve_device(device))
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-8)
