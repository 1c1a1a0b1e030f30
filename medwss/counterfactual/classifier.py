"""The frozen normal/abnormal slice classifier: a small MONAI ResNet with two logits.

Class 0 is "normal", class 1 "abnormal". The checkpoint holds the state dict, the network
settings and the `SliceSpec`, so later commands slice volumes the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from medwss.config import StrictConfig
from medwss.counterfactual.slices import SliceSpec
from medwss.embed.engine import resolve_device
from medwss.errors import InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


class ClassifierConfig(StrictConfig):
    """Classifier training settings (configs/coin_classifier.yaml)."""

    channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    stem_stride: int = 2
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True
    """Left–right flips, gain and Gaussian noise (`PRESETS["classifier"]`), on the device. The noise makes the
    classifier less sensitive to faint, image-wide perturbations, the cheapest (and wrong) way for a
    counterfactual generator to flip its decision."""
    seed: int = 0
    device: str = "auto"
    """Where training runs (``auto``: the GPU when there is one); the model is returned on the CPU."""


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
    images: np.ndarray, labels: np.ndarray, cfg: ClassifierConfig, progress: bool = True
) -> tuple[nn.Module, list[float]]:
    """Train on slices (N, 1, S, S) with labels (N,) in {0, 1}; classes weigh the same. Returns model and epoch losses."""
    from tqdm import tqdm

    if len(np.unique(labels)) < 2:
        raise InvalidDataError("classifier training needs normal and abnormal slices")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model = create_classifier(cfg.channels, cfg.stem_stride).to(device)
    pipeline = augment_pipeline(PRESETS["classifier"], label_keys=(), mask_keys=())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x, y = torch.from_numpy(images).float(), torch.from_numpy(labels).long()
    counts = torch.bincount(y, minlength=2).float()
    loss_fn = nn.CrossEntropyLoss(weight=(counts.sum() / (2 * counts)).to(device))
    steps = cfg.epochs * int(np.ceil(len(y) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    history = []
    for _ in tqdm(range(cfg.epochs), desc="classifier", disable=not progress, leave=False):
        model.train()
        order, total = torch.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)  # (B, 1, S, S), (B,)
            if cfg.augment:
                xb = augment_batch(pipeline, {"image": xb}, seed=gen)["image"]
            loss = loss_fn(model(xb), yb)  # (B, 2) logits
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(total / len(y))
    return model.cpu().eval(), history


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


def save_classifier(model: nn.Module, cfg: ClassifierConfig, spec: SliceSpec, path: str | Path) -> Path:
    """Save state dict, settings and slicing spec (plain types: loads with ``weights_only=True``)."""
    with atomic_path(path) as tmp:
        torch.save(
            {"state_dict": model.state_dict(), "config": cfg.model_dump(mode="json"), "spec": spec.as_dict()}, tmp
        )
    return Path(path)


def load_classifier(path: str | Path) -> tuple[nn.Module, ClassifierConfig, SliceSpec]:
    """Load a classifier written by `save_classifier` (eval mode, gradients off)."""
    blob = torch.load(require_file(path), map_location="cpu", weights_only=True)
    cfg = ClassifierConfig.model_validate(blob["config"])
    model = create_classifier(cfg.channels, cfg.stem_stride)
    model.load_state_dict(blob["state_dict"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), cfg, SliceSpec.from_dict(blob["spec"])
