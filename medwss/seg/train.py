"""Train and apply a segmenter on full or weak labels: one trainer for every workflow.

A `SegSample` holds an image (C, *S), a target with `IGNORE` where unlabelled, optional size bounds
and an "empty" tag. Batches are padded to a shared size that the network accepts (images with 0,
targets with `IGNORE`, and padded pixels are left out of the soft sizes), so images of different
shapes train together. Training runs on the one engine (`medwss.train.fit`): seeded, on the
configured device (mixed precision on CUDA), with a checkpoint every epoch from which an interrupted
run resumes with the same final weights. Models are saved as the one model file (kind ``segmenter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.labels import IGNORE
from medwss.errors import InvalidDataError
from medwss.seg.config import SegTrainConfig
from medwss.seg.losses import dice_loss, negative_ce, partial_ce, size_penalty
from medwss.seg.networks import create_segmenter, size_multiple
from medwss.train import Context, EngineConfig, fit, load_model, register_model_kind, save_model
from medwss.train.device import resolve_device, seed_everything
from medwss.transforms.augment import PRESETS, AugmentConfig, augment_batch, augment_pipeline


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


RUN_ONLY = ("epochs",)
"""`SegTrainConfig` keys a resumed run may change (besides `medwss.train.RUN_ONLY`): more epochs continue it."""


def train_segmenter(
    samples: Sequence[SegSample],
    cfg: SegTrainConfig,
    val: Sequence[SegSample] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
    run_only: Sequence[str] = (),
    recipe: Recipe | None = None,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Train a segmenter on the one engine (`medwss.train.fit`); keep the epoch of best validation Dice.

    Seeded; on `cfg.device` (``auto``: CUDA when present), mixed precision on CUDA with `cfg.amp`.
    Each epoch's order and each batch's augmentation are functions of (seed, epoch, batch), so a run
    resumed from `checkpoint` ends with the same weights as an uninterrupted one. The size weight
    ramps over `size_warmup` epochs. Selection: the epoch of best validation Dice with `val`, else
    the epoch of lowest training loss.

    Args:
        samples: Training images with full or weak targets.
        cfg: Network and training settings.
        val: Validation images with full targets (optional).
        checkpoint: Engine checkpoint written after every epoch; an existing one is resumed from
            (`epochs` may grow; other changed settings raise a `ConfigError` naming them).
        progress: Show a progress bar.
        run_config: More settings that must match for a resume (the caller's own config), added to
            `cfg` and the sample counts.
        run_only: Keys of `run_config` that may change between a checkpoint and its resume.
        recipe: Step budget, one-cycle schedule, augmentation and weight selection other than the
            defaults (`Recipe`; None: `cfg.epochs` at a constant rate, the segmentation preset).

    Returns:
        The model (in eval mode, on the CPU) and one history row per epoch
        (``epoch``, ``loss``, ``val_dice`` with `val`, ``lr``, ``seconds``).
    """

    def loss(
        net: torch.nn.Module, batch: dict[str, torch.Tensor], rng: np.random.Generator, epoch: int
    ) -> torch.Tensor:
        return batch_loss(net, batch, cfg, size_weight_at(cfg, epoch))

    model, history = fit_segmentation(
        lambda: build(cfg), loss, samples, cfg, val, checkpoint, progress, run_config, run_only, recipe=recipe
    )
    return model.cpu().eval(), history


@dataclass(frozen=True)
class Recipe:
    """How long and how a segmenter trains, beyond `SegTrainConfig` (defaults: the plain loop)."""

    steps: int | None = None
    """Optimiser steps (the samples are cycled); None: `cfg.epochs` passes."""
    onecycle: bool = False
    """One-cycle learning rate (10 % warm-up to `cfg.lr`, cosine decay), stepped per step."""
    augment: AugmentConfig | None = None
    """Training augmentation; None: the ``segmentation`` preset (when `cfg.augment`)."""
    keep_last: bool = False
    """Keep the last step's weights instead of the selected epoch's."""


BatchLoss = Callable[[torch.nn.Module, dict[str, torch.Tensor], np.random.Generator, int], torch.Tensor]
"""``(network, augmented batch, the batch's generator, epoch) -> loss`` of one training step."""


def fit_segmentation(
    make_model: Callable[[], torch.nn.Module],
    loss: BatchLoss,
    samples: Sequence[SegSample],
    cfg: SegTrainConfig,
    val: Sequence[SegSample] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    run_config: Mapping[str, Any] | None = None,
    run_only: Sequence[str] = (),
    evaluated: Callable[[torch.nn.Module], torch.nn.Module] = lambda net: net,
    desc: str = "train segmenter",
    recipe: Recipe | None = None,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """The training loop every segmenter shares (`train_segmenter`, DMPLS): seeding, batches, resume.

    `make_model` runs after seeding; each batch is collated on the device and augmented (outside
    autocast) with a generator seeded by (seed, epoch, batch), which `loss` may draw from further;
    validation Dice is of `evaluated(model)`. Returns the trained model (on its device) and the
    history rows of `train_segmenter`.
    """
    if not samples:
        raise InvalidDataError("no training samples")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    recipe = recipe or Recipe()
    pipeline = augment_pipeline(
        recipe.augment or PRESETS["segmentation"], label_keys=("target",), mask_keys=("valid",),
        spatial_dims=cfg.spatial_dims,
    )  # fmt: skip
    per_epoch = -(-len(samples) // cfg.batch_size)
    epochs = cfg.epochs if recipe.steps is None else -(-recipe.steps // per_epoch)
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=recipe.steps or epochs * per_epoch,
                                            pct_start=0.1)
        if recipe.onecycle
        else None
    )  # fmt: skip
    val = list(val or [])

    def data(epoch: int) -> Iterator[tuple[np.ndarray, int]]:
        """The epoch's batches as (sample indices, batch number): a permutation seeded by (seed, epoch)."""
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(samples))
        for b, start in enumerate(range(0, len(order), cfg.batch_size)):
            yield order[start : start + cfg.batch_size], b

    def step(item: tuple[np.ndarray, int], ctx: Context) -> torch.Tensor:
        idx, b = item
        batch = {k: v.to(ctx.device) for k, v in collate([samples[int(i)] for i in idx], cfg).items()}
        rng = np.random.default_rng([cfg.seed, ctx.epoch, b])
        if cfg.augment:  # on the device, outside autocast
            with torch.autocast(ctx.device.type, enabled=False):
                batch = augment_batch(pipeline, batch, seed=rng)
        return loss(ctx.model, batch, rng, ctx.epoch)

    def validate(ctx: Context) -> dict[str, float]:
        return {"val_dice": mean_dice(evaluated(ctx.modules["model"]), val, cfg, ctx.device)}

    engine = EngineConfig(
        epochs=epochs, max_steps=recipe.steps, monitor="val_dice" if val else "train_loss",
        mode="max" if val else "min", restore_best=not recipe.keep_last, scheduler_interval="step",
        seed=cfg.seed, device=str(device), amp=cfg.amp, progress=progress, desc=desc,
    )  # fmt: skip
    signature = {**cfg.model_dump(mode="json"), "n_train": len(samples), "n_val": len(val), **(run_config or {})}
    if recipe != Recipe():  # a resume must use the same recipe
        signature["recipe"] = {**asdict(recipe), "augment": recipe.augment and recipe.augment.model_dump(mode="json")}
    result = fit(
        model, opt, step, data, engine, validate=validate if val else None, checkpoint=checkpoint,
        run_config=signature, run_only=(*RUN_ONLY, *run_only), schedulers=sched,
    )  # fmt: skip
    history = [
        {"epoch": float(r["epoch"]), "loss": float(r["train_loss"]),
         **({"val_dice": float(r["val_dice"])} if "val_dice" in r else {}),
         "lr": float(r.get("lr", cfg.lr)), "seconds": float(r["seconds"])}
        for r in result.history
    ]  # fmt: skip
    return model, history


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


def _build_from(config: dict[str, Any]) -> torch.nn.Module:
    return build(SegTrainConfig.model_validate(config))


register_model_kind("segmenter", _build_from)


def save_segmenter(model: torch.nn.Module, cfg: SegTrainConfig, path: str | Path, meta: dict | None = None) -> Path:
    """Save the model as the one model file (kind ``segmenter``: `cfg` is its config), atomically."""
    return save_model(path, "segmenter", model, cfg.model_dump(mode="json"), meta or {})


def load_segmenter(path: str | Path) -> tuple[torch.nn.Module, SegTrainConfig, dict]:
    """Load a segmenter (a model file, or the older `save_segmenter` format): model, config, metadata.

    Read with ``weights_only=True`` (no pickled code). The model is in eval mode, on the CPU.

    Raises:
        CorruptFileError: The file cannot be read, or its weights do not fit its config.
        UnsupportedFormatError: The file holds another kind of model, or no model.
    """
    model, record = load_model(path, kind="segmenter")
    return model, SegTrainConfig.model_validate(record.config), dict(record.meta)
