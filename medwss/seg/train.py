"""Train and apply a segmenter on full or weak labels: one trainer for every workflow.

A `SegSample` holds an image (C, *S), a target with `IGNORE` where unlabelled, optional size bounds
and an "empty" tag. Batches are padded to a shared size that the network accepts (images with 0,
targets with `IGNORE`, and padded pixels are left out of the soft sizes), so images of different
shapes train together. With a checkpoint path, training saves every epoch and resumes from it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from medwss.config import StrictConfig
from medwss.data.labels import IGNORE
from medwss.embed.engine import resolve_device
from medwss.errors import CorruptFileError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.runinfo import seed_everything
from medwss.seg.losses import dice_loss, negative_ce, partial_ce, size_penalty
from medwss.seg.networks import create_segmenter, size_multiple
from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline


@dataclass
class SegSample:
    """One training image.

    Attributes:
        image: (C, *S) float32, already normalised.
        target: (*S) int64 class indices, `IGNORE` (-1) where unlabelled.
        bounds: (K, 2) size bounds in pixels (or (K, Z, 2) per slice along the last axis), NaN = none.
        empty: True when the image is known to hold no foreground (negative cross-entropy applies).
    """

    image: np.ndarray
    target: np.ndarray
    bounds: np.ndarray | None = None
    empty: bool = False


class SegTrainConfig(StrictConfig):
    """How a segmenter is built and trained (stored unchanged; validated by pydantic)."""

    network: Literal["unet", "dynunet"] = "unet"
    spatial_dims: Literal[2, 3] = 2
    in_channels: int = 1
    num_classes: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.0
    loss: Literal["partial_ce", "ce_dice"] = "partial_ce"
    size_weight: float = 0.0
    size_warmup: int = 0
    """Epochs over which the size weight ramps linearly from 0 (lets the CE term locate objects first)."""
    size_per_slice: bool = False
    negative_weight: float = 0.0
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5
    augment: bool = True
    seed: int = 0
    device: str = "auto"


def build(cfg: SegTrainConfig) -> torch.nn.Module:
    """The untrained network a config describes."""
    return create_segmenter(cfg.network, cfg.spatial_dims, cfg.in_channels, cfg.num_classes, cfg.channels, cfg.dropout)


def _padded_shape(shapes: Sequence[tuple[int, ...]], multiple: int) -> tuple[int, ...]:
    top = np.max(np.array(shapes), axis=0)
    return tuple(int(-(-s // multiple) * multiple) for s in top)


def _pad(a: np.ndarray, shape: tuple[int, ...], value: float) -> np.ndarray:
    widths = [(0, 0)] * (a.ndim - len(shape)) + [(0, t - s) for s, t in zip(a.shape[-len(shape) :], shape, strict=True)]
    return np.pad(a, widths, constant_values=value)


def collate(samples: Sequence[SegSample], cfg: SegTrainConfig) -> dict[str, torch.Tensor]:
    """Pad and stack samples: image (B, C, *S), target (B, *S), valid (B, 1, *S), bounds, empty (B,)."""
    shapes = [tuple(s.target.shape) for s in samples]
    for s in samples:
        if s.image.ndim != cfg.spatial_dims + 1 or tuple(s.image.shape[1:]) != tuple(s.target.shape):
            raise InvalidDataError(
                f"sample image {s.image.shape} and target {s.target.shape} do not match spatial_dims={cfg.spatial_dims}"
            )
    shape = _padded_shape(shapes, size_multiple(cfg.channels))
    z = shape[-1]
    bounds = []
    for s in samples:
        if s.bounds is None:
            b = np.full((cfg.num_classes, z, 2) if cfg.size_per_slice else (cfg.num_classes, 2), np.nan, np.float32)
        else:
            b = np.asarray(s.bounds, dtype=np.float32)
            if cfg.size_per_slice:
                b = np.pad(b, [(0, 0), (0, z - b.shape[1]), (0, 0)], constant_values=np.nan)
        bounds.append(b)
    return {
        "image": torch.from_numpy(np.stack([_pad(s.image.astype(np.float32), shape, 0.0) for s in samples])),
        "target": torch.from_numpy(np.stack([_pad(s.target.astype(np.int64), shape, IGNORE) for s in samples])),
        "valid": torch.from_numpy(np.stack([_pad(np.ones((1, *sh), np.float32), shape, 0.0) for sh in shapes])),
        "bounds": torch.from_numpy(np.stack(bounds)),
        "empty": torch.tensor([s.empty for s in samples], dtype=torch.bool),
    }


def size_weight_at(cfg: SegTrainConfig, epoch: int) -> float:
    """The size-loss weight of an epoch: ramped linearly over `size_warmup` epochs, then constant."""
    if cfg.size_warmup <= 0:
        return cfg.size_weight
    return cfg.size_weight * min(1.0, (epoch + 1) / cfg.size_warmup)


def batch_loss(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: SegTrainConfig, size_weight: float | None = None
) -> torch.Tensor:
    """The configured loss on one (already device-placed) batch; `size_weight` overrides the config's."""
    size_weight = cfg.size_weight if size_weight is None else size_weight
    logits = model(batch["image"])  # (B, K, *S)
    loss = partial_ce(logits, batch["target"])
    if cfg.loss == "ce_dice":
        loss = loss + dice_loss(logits, batch["target"])
    if size_weight > 0:
        probs = torch.softmax(logits, 1) * batch["valid"]
        axis = cfg.spatial_dims - 1 if cfg.size_per_slice else None
        loss = loss + size_weight * size_penalty(probs, batch["bounds"], slice_axis=axis)
    if cfg.negative_weight > 0:
        loss = loss + cfg.negative_weight * negative_ce(logits, batch["empty"])
    return loss


def mean_dice(model: torch.nn.Module, samples: Sequence[SegSample], cfg: SegTrainConfig, device: torch.device) -> float:
    """Mean foreground Dice of the argmax over samples with full targets (classes absent in both count 1)."""
    from medwss.eval.overlap import dice_per_class

    probs = predict_probs(model, [s.image for s in samples], cfg, device=device)
    scores = [dice_per_class(p.argmax(0), s.target, cfg.num_classes) for p, s in zip(probs, samples, strict=True)]
    return float(np.mean(np.concatenate(scores))) if scores else float("nan")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_segmenter(
    samples: Sequence[SegSample],
    cfg: SegTrainConfig,
    val: Sequence[SegSample] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train a segmenter; with `val`, keep the epoch of best validation Dice.

    Args:
        samples: Training images with full or weak targets.
        cfg: Network and training settings.
        val: Validation images with full targets (optional).
        checkpoint: File saved after every epoch; an existing one is resumed from.
        progress: Show a progress bar.

    Returns:
        The model (in eval mode, on the CPU) and one history row per epoch.
    """
    if not samples:
        raise InvalidDataError("no training samples")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = build(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    pipeline = augment_pipeline(
        PRESETS["segmentation"], label_keys=("target",), mask_keys=("valid",), spatial_dims=cfg.spatial_dims
    )
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor] | None] = (-1.0, None)
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        history, best = state["history"], (state["best_score"], state["best_model"])
    order_rng = np.random.default_rng(cfg.seed)
    for _ in range(len(history)):
        order_rng.permutation(len(samples))  # replay the shuffles of the epochs already done
    bar = tqdm(range(len(history), cfg.epochs), desc="train segmenter", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order, losses = order_rng.permutation(len(samples)), []
        for start in range(0, len(order), cfg.batch_size):
            batch = collate([samples[i] for i in order[start : start + cfg.batch_size]], cfg)
            batch = {k: v.to(device) for k, v in batch.items()}
            if cfg.augment:  # on the device; the seeded generator draws each batch's augmentation seed
                batch = augment_batch(pipeline, batch, seed=gen)
            loss = batch_loss(model, batch, cfg, size_weight_at(cfg, epoch))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": float(epoch), "loss": float(np.mean(losses))}
        if val:
            row["val_dice"] = mean_dice(model, val, cfg, device)
            if row["val_dice"] > best[0]:
                best = (row["val_dice"], {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({"dice": f"{row['val_dice']:.3f}"} if val else {}))
        if ckpt is not None:
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "history": history}
            _save_checkpoint(ckpt, {**state, "best_score": best[0], "best_model": best[1]})
    if best[1] is not None:
        model.load_state_dict(best[1])
    return model.cpu().eval(), history


def _enable_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.train()


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    cfg: SegTrainConfig,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    mc_dropout: bool = False,
) -> list[np.ndarray]:
    """Class probabilities (K, *S) for each image (C, *S), cropped back to the image's own size.

    Args:
        mc_dropout: Keep dropout active (one stochastic pass; call repeatedly for MC dropout).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    if mc_dropout:
        _enable_dropout(model)
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        shapes = [tuple(im.shape[1:]) for im in chunk]
        shape = _padded_shape(shapes, size_multiple(cfg.channels))
        x = torch.from_numpy(np.stack([_pad(im.astype(np.float32), shape, 0.0) for im in chunk])).to(device)
        probs = torch.softmax(model(x), 1).cpu().numpy()  # (B, K, *S)
        out += [p[(slice(None), *(slice(0, s) for s in sh))] for p, sh in zip(probs, shapes, strict=True)]
    return out


def save_segmenter(model: torch.nn.Module, cfg: SegTrainConfig, path: str | Path, meta: dict | None = None) -> Path:
    """Save weights, config and metadata to one file, atomically."""
    state = {"config": cfg.model_dump(), "state_dict": model.state_dict(), "meta": meta or {}}
    _save_checkpoint(Path(path), state)
    return Path(path)


def load_segmenter(path: str | Path) -> tuple[torch.nn.Module, SegTrainConfig, dict]:
    """Load a file written by `save_segmenter` (weights only, no pickled code): model, config, metadata."""
    p = require_file(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        cfg = SegTrainConfig.model_validate(state["config"])
        model = build(cfg)
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise CorruptFileError(f"not a medwss segmenter ({str(exc).splitlines()[0]})", p) from exc
    return model.eval(), cfg, state.get("meta", {})
