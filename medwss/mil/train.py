"""Training an aggregator on bags: BCE on case probabilities plus the aggregator's auxiliary loss.

Seeded; class weighting; early stopping on validation loss (after a minimum of epochs); a checkpoint after
every epoch from which an interrupted run resumes; mixed precision and DDP (torchrun) when
available; optional gradient checkpointing of the aggregator's forward.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from medwss.config import StrictConfig
from medwss.embed.distributed import RankInfo, rank_info
from medwss.errors import ConfigError
from medwss.io.atomic import atomic_path
from medwss.mil.base import Aggregator, Bag, MILOutput
from medwss.mil.data import LabelledBag
from medwss.runinfo import seed_everything


class MILTrainConfig(StrictConfig):
    """How `medwss mil train` trains (configs/mil_*.yaml)."""

    aggregator: str = "insight"
    aggregator_kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(40, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    class_weighting: bool = True
    patience: int = Field(10, ge=1)
    min_epochs: int = Field(10, ge=1)
    seed: int = 0
    val_fraction: float = Field(0.25, ge=0, lt=1)
    folds: int | None = Field(None, ge=2)
    max_instances: int | None = Field(None, ge=1)
    tokens: bool = False
    amp: bool = True
    grad_checkpointing: bool = False
    device: str = "auto"


def _bce(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    p = probs.float().clamp(1e-6, 1 - 1e-6)
    loss = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))  # (K,)
    return (loss * weight).mean()


def forward(model: torch.nn.Module, bag: Bag, label: torch.Tensor | None = None, checkpoint: bool = False) -> MILOutput:
    """Run an aggregator (or its DDP wrapper), optionally recomputing activations in the backward."""
    if not checkpoint:
        return model(bag, label=label)
    from torch.utils.checkpoint import checkpoint as ckpt

    def run(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = model(Bag(features, bag.grid_index, bag.grid_shape, bag.tokens, bag.coords), label=label)
        aux = out.aux_loss if out.aux_loss is not None else features.new_zeros(())
        return out.probs, out.scores, aux

    probs, scores, aux = ckpt(run, bag.features, use_reentrant=False)
    return MILOutput(probs, scores, aux)


def _subsample(bag: Bag, max_instances: int | None, rng: np.random.Generator) -> Bag:
    n = len(bag)
    if max_instances is None or n <= max_instances:
        return bag
    keep = torch.as_tensor(np.sort(rng.choice(n, max_instances, replace=False)))
    pick = lambda t: None if t is None else t[keep]  # noqa: E731
    return Bag(bag.features[keep], pick(bag.grid_index), bag.grid_shape, pick(bag.tokens), pick(bag.coords))


@torch.no_grad()
def predict(model: torch.nn.Module, bags: list[LabelledBag], device: torch.device) -> list[MILOutput]:
    """Outputs of `model` for every bag, in eval mode, on the CPU."""
    model.eval()
    outs = []
    for lb in bags:
        o = model(lb.bag.to(device))
        outs.append(
            MILOutput(
                o.probs.float().cpu(), o.scores.float().cpu(), None, None if o.dense is None else o.dense.float().cpu()
            )
        )
    return outs


def _auc(bags: list[LabelledBag], outs: list[MILOutput]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.stack([b.target.numpy() for b in bags])
    p = np.stack([o.probs.numpy() for o in outs])
    classes = np.unique(y[:, 0] if y.shape[1] == 1 else y.argmax(1))
    if len(classes) < 2:  # one class only: no AUC
        return float("nan")
    if y.shape[1] == 1:
        return float(roc_auc_score(y[:, 0], p[:, 0]))
    return float(roc_auc_score(y.argmax(1), p, multi_class="ovr"))


def _class_weight(bags: list[LabelledBag], enabled: bool) -> torch.Tensor:
    k = bags[0].target.numel()
    if not enabled:
        return torch.ones(k)
    y = torch.stack([b.target for b in bags])  # (B, K)
    pos = y.mean(0).clamp(0.05, 0.95)
    return (0.5 / pos) if k > 1 else torch.tensor([1.0])  # binary: per-case weights below


def train(
    model: Aggregator,
    train_bags: list[LabelledBag],
    val_bags: list[LabelledBag],
    config: MILTrainConfig,
    out_dir: str | Path,
    device: torch.device,
    progress: bool = True,
    info: RankInfo | None = None,
) -> dict[str, Any]:
    """Train `model`; returns the history and the best epoch. The best weights end in `model`.

    The best epoch is the one with the lowest validation loss; training stops after `patience`
    epochs without improvement once `min_epochs` have run.

    Writes ``out_dir/checkpoint.pt`` after each epoch (resumed from when present and compatible).
    """
    info = info or rank_info()
    if not train_bags:
        raise ConfigError("no training cases with labels and bags")
    seed_everything(config.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    net: torch.nn.Module = model
    if info.world_size > 1 and torch.distributed.is_initialized():
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    k_weight = _class_weight(train_bags, config.class_weighting).to(device)
    labels = np.array([float(b.target[0]) for b in train_bags])
    pos_rate = float(np.clip(labels.mean(), 0.05, 0.95))
    amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict[str, float]] = []
    state: dict[str, Any] = {"best_auc": -1.0, "best_loss": math.inf, "best_epoch": -1, "bad": 0, "epoch": 0}
    best_weights = copy.deepcopy(model.state_dict())
    ckpt_path = out_dir / "checkpoint.pt"
    signature = {"aggregator": config.aggregator, "seed": config.seed, "n_train": len(train_bags)}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck.get("signature") == signature:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            history, state, best_weights = ck["history"], ck["state"], ck["best"]
    rng = np.random.default_rng(config.seed)
    bar = tqdm(
        range(state["epoch"], config.epochs), desc=f"train {config.aggregator}", disable=not (progress and info.is_main)
    )
    for epoch in bar:
        if state["bad"] >= config.patience and epoch >= config.min_epochs:  # resumed after an early stop
            break
        net.train()
        t0 = time.perf_counter()
        order = np.random.default_rng(config.seed + epoch).permutation(len(train_bags))
        per_rank = math.ceil(len(order) / info.world_size)
        mine = np.resize(order, per_rank * info.world_size)[info.rank :: info.world_size]
        total = 0.0
        for i in mine:
            lb = train_bags[int(i)]
            bag = _subsample(lb.bag, config.max_instances, rng).to(device)
            target = lb.target.to(device)
            w = (
                k_weight
                if target.numel() > 1
                else k_weight * (0.5 / pos_rate if target[0] > 0.5 else 0.5 / (1 - pos_rate))
            )
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                out = forward(net, bag, target, config.grad_checkpointing)
            loss = _bce(out.probs, target, w) + (out.aux_loss.float() if out.aux_loss is not None else 0.0)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach())
        sched.step()
        val_outs = predict(model, val_bags, device) if val_bags else []
        val_loss = (
            float(
                np.mean(
                    [
                        float(_bce(o.probs, b.target, torch.ones_like(b.target)))
                        for o, b in zip(val_outs, val_bags, strict=True)
                    ]
                )
            )
            if val_bags
            else total / max(len(mine), 1)
        )
        val_auc = _auc(val_bags, val_outs) if val_bags else float("nan")
        row = {"epoch": epoch, "train_loss": total / max(len(mine), 1), "val_loss": val_loss, "val_auc": val_auc,
               "seconds": time.perf_counter() - t0}  # fmt: skip
        history.append(row)
        # select on validation loss (AUC saturates on small validation sets), as CLAM does
        improved = val_loss < state["best_loss"] - 1e-4
        if improved:
            state.update(best_auc=val_auc, best_loss=val_loss, best_epoch=epoch, bad=0)
            best_weights = copy.deepcopy(model.state_dict())
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_auc=f"{val_auc:.3f}")
        if info.is_main:
            with atomic_path(ckpt_path) as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "history": history, "state": state, "best": best_weights, "signature": signature}, tmp)  # fmt: skip
        if state["bad"] >= config.patience and epoch + 1 >= config.min_epochs:
            break
    model.load_state_dict(best_weights)
    return {"history": history, "best_epoch": state["best_epoch"], "best_val_auc": state["best_auc"]}


def save_model(path: str | Path, model: Aggregator, meta: dict[str, Any]) -> Path:
    """Save weights and what is needed to rebuild the model (aggregator name, kwargs, dims), atomically."""
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": json.loads(json.dumps(meta, default=str))}, tmp)
    return Path(path)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[Aggregator, dict[str, Any]]:
    """Rebuild a model saved by `save_model` (weights loaded with weights_only=True)."""
    from medwss.errors import CorruptFileError, require_file
    from medwss.mil.registry import create_aggregator

    p = require_file(path)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
        meta = blob["meta"]
        model = create_aggregator(
            meta["aggregator"], meta["in_dim"], meta["n_classes"], **meta.get("aggregator_kwargs", {})
        )
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, OSError) as exc:
        raise CorruptFileError(f"not a medwss MIL model ({exc})", p) from exc
    return model.to(device).eval(), meta
