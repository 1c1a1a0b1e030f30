"""The frozen normal/abnormal slice classifier: a small MONAI ResNet with two logits.

Class 0 is "normal", class 1 "abnormal". Training runs on the one engine (`medwss.train.fit`):
seeded, on the configured device (bfloat16 autocast on CUDA with ``amp``), with a checkpoint after
every epoch from which an interrupted run resumes with the same final weights. The model is saved
as the one model file (kind ``coin_classifier``) holding the network settings, the training
settings and the `SliceSpec`, so later commands slice volumes the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medwss.counterfactual.config import ClassifierConfig
from medwss.counterfactual.slices import SliceSpec
from medwss.errors import InvalidDataError
from medwss.train import Context, EngineConfig, fit, register_model_kind, resolve_device
from medwss.train import load_model as load_any_model
from medwss.train import save_model as save_any_model
from medwss.train.device import seed_everything
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline

KIND = "coin_classifier"
"""Model-file kind of the slice classifier."""


def create_classifier(channels: tuple[int, ...] = (16, 32, 64, 128), stem_stride: int = 2) -> nn.Module:
    """A 2D ResNet: 3×3 stem (stride `stem_stride`), no max-pool, one basic block per stage (64 px in → 4×4 at stride 2)."""
    from monai.networks.nets import ResNet

    return ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=list(channels),
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_size=3,
        conv1_t_stride=stem_stride,
        no_max_pool=True,
        num_classes=2,
    )


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: ClassifierConfig,
    progress: bool = True,
    checkpoint: str | Path | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train on slices (N, 1, S, S) with labels (N,) in {0, 1}; classes weigh the same. Returns model and epoch losses.

    The batches of an epoch are a permutation seeded by (seed, epoch) and their augmentations are
    seeded by (seed, epoch, batch), so with a `checkpoint` (written every epoch, resumed from when
    present) an interrupted run ends with the same weights as an uninterrupted one. A checkpoint
    from other settings or other slices raises a `ConfigError` naming the keys.
    """
    if len(np.unique(labels)) < 2:
        raise InvalidDataError("classifier training needs normal and abnormal slices")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = create_classifier(cfg.channels, cfg.stem_stride)
    pipeline = augment_pipeline(PRESETS["classifier"], label_keys=(), mask_keys=())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x, y = torch.from_numpy(images).float(), torch.from_numpy(labels).long()
    counts = torch.bincount(y, minlength=2).float()
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / (2 * counts)).to(device))
    per_epoch = int(np.ceil(len(y) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * per_epoch)

    def data(epoch: int) -> list[torch.Tensor]:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
        return [order[i : i + cfg.batch_size] for i in range(0, len(y), cfg.batch_size)]

    def step(idx: torch.Tensor, ctx: Context) -> torch.Tensor:
        xb, yb = x[idx].to(ctx.device), y[idx].to(ctx.device)  # (B, 1, S, S), (B,)
        if cfg.augment:
            rng = np.random.default_rng([cfg.seed, ctx.epoch, ctx.batch_index])
            xb = augment_batch(pipeline, {"image": xb}, seed=rng)["image"]
        return loss_fn(ctx.model(xb).float(), yb)  # (B, 2) logits

    engine = EngineConfig(
        epochs=cfg.epochs, restore_best=False, seed=cfg.seed, device=str(device), amp=cfg.amp,
        scheduler_interval="step", progress=progress, desc="classifier",
    )  # fmt: skip
    result = fit(
        model, opt, step, data, engine, schedulers=sched, checkpoint=checkpoint,
        run_config={**cfg.model_dump(mode="json"), "n_slices": len(y), "n_abnormal": int(y.sum())},
    )  # fmt: skip
    return model.cpu().eval(), [float(r["train_loss"]) for r in result.history]


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Probability of "abnormal" for slices (N, 1, S, S)."""
    model.eval()
    x = torch.as_tensor(images).float()
    out = [torch.softmax(model(x[i : i + batch_size]), 1)[:, 1] for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def penultimate_features(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Pooled last-stage features (N, C) of the classifier (for the realism measure); (0, 0) for no slices."""
    if len(images) == 0:
        return np.zeros((0, 0), np.float32)
    store: list[torch.Tensor] = []
    pool: nn.Module = model.avgpool  # type: ignore[assignment]
    handle = pool.register_forward_hook(lambda m, i, o: store.append(o.flatten(1).detach()))
    try:
        predict_proba(model, images, batch_size)
    finally:
        handle.remove()
    return torch.cat(store).numpy()


def _build(config: dict[str, Any]) -> nn.Module:
    return create_classifier(tuple(config["channels"]), int(config["stem_stride"]))


register_model_kind(KIND, _build)


def save_classifier(model: nn.Module, cfg: ClassifierConfig, spec: SliceSpec, path: str | Path) -> Path:
    """Save the classifier as the one model file (kind ``coin_classifier``; settings and slicing spec in meta)."""
    config = {"channels": list(cfg.channels), "stem_stride": cfg.stem_stride}
    return save_any_model(
        path, KIND, model, config, {"train_config": cfg.model_dump(mode="json"), "spec": spec.as_dict()}
    )


def load_classifier(path: str | Path) -> tuple[nn.Module, ClassifierConfig, SliceSpec]:
    """Load a classifier (a model file, or the older COIN classifier format): eval mode, gradients off.

    Raises:
        UnsupportedFormatError: The file holds another kind of model (or no model).
        CorruptFileError: The file cannot be read or its weights do not fit.
    """
    model, record = load_any_model(path, kind=KIND)
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = ClassifierConfig.model_validate(record.meta.get("train_config") or {})
    return model, cfg, SliceSpec.from_dict(record.meta["spec"])
