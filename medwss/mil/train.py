"""Training an aggregator on bags: BCE on case probabilities plus the aggregator's auxiliary loss.

Runs on the one engine (`medwss.train.fit`): seeded; class weighting; model selection on
validation loss (or AUC, `monitor`); plateau-aware early stopping (patience counts only once the
training loss has left its starting plateau, after `min_epochs`); a checkpoint after every epoch
from which an interrupted run resumes with the same final weights; mixed precision on CUDA; DDP
under torchrun; optional gradient checkpointing of the aggregator's forward. Models are saved as
the one model file (kind ``mil``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.errors import ConfigError
from medwss.mil.base import Aggregator, Bag, MILOutput
from medwss.mil.config import MILTrainConfig
from medwss.mil.data import LabelledBag
from medwss.train import EngineConfig, fit, register_model_kind
from medwss.train import load_model as load_any_model
from medwss.train import save_model as save_any_model
from medwss.train.distributed import RankInfo, rank_info

RUN_ONLY = ("epochs",)
"""MILTrainConfig keys a resumed run may change (besides `medwss.train.RUN_ONLY`): more epochs continue the run."""
MODEL_CONFIG_KEYS = ("aggregator", "aggregator_kwargs", "in_dim", "n_classes")
"""What the ``mil`` model kind is built from."""


def _bce(probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted BCE on probabilities, clamped to [1e-6, 1 − 1e-6] in value only.

    The clamp passes the gradient straight through: a model whose output has saturated (every
    tile's heatmap at 0, say) still gets a gradient out of it instead of a zero one that would
    keep it there for good.
    """
    raw = probs.float()
    p = raw + (raw.clamp(1e-6, 1 - 1e-6) - raw).detach()
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
    return _keep(bag, np.sort(rng.choice(n, max_instances, replace=False)))


def _keep(bag: Bag, index: np.ndarray) -> Bag:
    keep = torch.as_tensor(index, dtype=torch.long)
    pick = lambda t: None if t is None else t[keep]  # noqa: E731
    return Bag(bag.features[keep], pick(bag.grid_index), bag.grid_shape, pick(bag.tokens), pick(bag.coords))


def turn_grid(bag: Bag, k: int, flip: bool) -> Bag:
    """The bag with its tile grid rotated by `k` × 90° and (then) flipped along the last axis, in-plane.

    Acts on the last two grid axes (rows, columns; a 3-D grid keeps its first axis); token maps turn
    with it, so a tile's content and its place on the grid stay consistent. Coordinates are kept.
    """
    if bag.grid_index is None or bag.grid_shape is None or (k % 4 == 0 and not flip):
        return bag
    idx, shape = bag.grid_index.clone(), list(bag.grid_shape)
    r, c = idx[:, -2].clone(), idx[:, -1].clone()
    for _ in range(k % 4):  # (r, c) on (H, W) -> (W - 1 - c, r) on (W, H): a counter-clockwise turn
        r, c = shape[-1] - 1 - c, r
        shape[-2], shape[-1] = shape[-1], shape[-2]
    if flip:
        c = shape[-1] - 1 - c
    idx[:, -2], idx[:, -1] = r, c
    tokens = bag.tokens
    if tokens is not None:
        tokens = torch.rot90(tokens, k % 4, dims=(-2, -1))
        tokens = tokens.flip(-1) if flip else tokens
    return Bag(bag.features, idx, tuple(shape), tokens, bag.coords)


def augment_bag(bag: Bag, config: MILTrainConfig, rng: np.random.Generator) -> Bag:
    """Training-time bag augmentation from `config` (grid turns and flips, tile dropout, feature noise).

    Every draw comes from `rng` (seeded by seed, epoch and case), so a resumed run sees the same bags.
    """
    if config.grid_flips:
        bag = turn_grid(bag, int(rng.integers(4)), bool(rng.integers(2)))
    if config.tile_dropout > 0 and len(bag) > 1:
        keep = rng.random(len(bag)) >= config.tile_dropout
        if keep.any():
            bag = _keep(bag, np.flatnonzero(keep))
    if config.feature_noise > 0:
        noise = torch.as_tensor(rng.standard_normal(tuple(bag.features.shape)), dtype=bag.features.dtype)
        bag = Bag(bag.features + config.feature_noise * noise, bag.grid_index, bag.grid_shape, bag.tokens, bag.coords)
    return bag


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


def input_norm(bags: list[LabelledBag]) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise mean and standard deviation (C,) of every instance of `bags` (float64 sums).

    Bags with token maps contribute their tokens (what the token layout convolves), not the
    tile features. Channels that are (nearly) constant in training get scale 1, so a tiny deviation at test time
    is not amplified.
    """
    total = n = sq = None
    for lb in bags:
        tok = lb.bag.tokens
        if tok is not None and tok.shape[1] == lb.bag.features.shape[1]:  # token maps: statistics of the tokens
            x = tok.double().movedim(1, -1).reshape(-1, tok.shape[1])
        else:
            x = lb.bag.features.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n = len(x) if n is None else n + len(x)
    assert total is not None and sq is not None and n
    mean = total / n
    std = (sq / n - mean * mean).clamp_min(0).sqrt()
    flat = std <= 1e-6 * float(std.max())  # constant channels: centred, not blown up
    return mean.float(), torch.where(flat, torch.ones_like(std), std).float()


def _class_weight(bags: list[LabelledBag], enabled: bool) -> torch.Tensor:
    k = bags[0].target.numel()
    if not enabled:
        return torch.ones(k)
    y = torch.stack([b.target for b in bags])  # (B, K)
    pos = y.mean(0).clamp(0.05, 0.95)
    return (0.5 / pos) if k > 1 else torch.tensor([1.0])  # binary: per-case weights below


def _engine_config(config: MILTrainConfig, device: torch.device, progress: bool, has_val: bool) -> EngineConfig:
    monitor = config.monitor if has_val else "train_loss"
    mode = config.mode if config.mode != "auto" else ("max" if monitor == "val_auc" else "min")
    return EngineConfig(
        epochs=config.epochs, monitor=monitor, mode=mode, min_delta=1e-4, patience=config.patience,
        min_rounds=config.min_epochs, plateau_tol=config.plateau_tol, seed=config.seed, device=str(device),
        amp=config.amp, amp_dtype=config.amp_dtype, progress=progress, desc=f"train {config.aggregator}",
        clip_grad_norm=config.clip_grad_norm, scheduler_interval="step" if config.warmup_steps else "epoch",
    )  # fmt: skip


def _scheduler(opt: torch.optim.Optimizer, config: MILTrainConfig, n_train: int, world_size: int) -> Any:
    """Cosine decay over the run: per epoch without warm-up; per step after a linear warm-up otherwise."""
    if not config.warmup_steps:
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    warm, total = config.warmup_steps, max(1, config.epochs * math.ceil(n_train / world_size))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --- issue 21 (hostile-input helper): what identifies the training data, part of the resume signature ---
def _data_identity(train_bags: list[LabelledBag], val_bags: list[LabelledBag]) -> str:
    """sha256 of every case's id, split role, target, and feature bag (path, size, mtime, shape)."""
    import hashlib
    import json

    def one(lb: LabelledBag, role: str) -> list[Any]:
        if lb.case is None:  # an in-memory bag: its content identifies it
            digest = hashlib.sha256(lb.bag.features.detach().cpu().numpy().tobytes()).hexdigest()
            return [role, None, lb.target.tolist(), digest, list(lb.bag.features.shape)]
        f = lb.case.features
        st = f.stat() if f is not None and f.exists() else None
        return [role, lb.case.case_id, lb.target.tolist(), str(f), st.st_size if st else None,
                st.st_mtime_ns if st else None, list(lb.bag.features.shape)]  # fmt: skip

    rows = [one(b, "train") for b in train_bags] + [one(b, "val") for b in val_bags]
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


# --- end of issue 21 helper ---


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

    The best epoch is the one with the best `config.monitor` (validation loss by default);
    training stops after `patience` epochs without improvement, counted once the training loss
    has left its starting plateau and not before `min_epochs` (`medwss.train.EngineConfig`).

    Writes ``out_dir/history.json`` and ``out_dir/checkpoint.pt`` after each epoch; the checkpoint
    is resumed from when present (a `ConfigError` names the settings that changed, `epochs` may grow).
    """
    info = info or rank_info()
    if not train_bags:
        raise ConfigError("no training cases with labels and bags")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.standardize:
        model.set_input_norm(*input_norm(train_bags))
    model.to(device)
    k_weight = _class_weight(train_bags, config.class_weighting).to(device)
    labels = np.array([float(b.target[0]) for b in train_bags])
    pos_rate = float(np.clip(labels.mean(), 0.05, 0.95))

    def data(epoch: int) -> list[int]:
        """This rank's cases for `epoch`: a seeded permutation, split across ranks (padded to equal length)."""
        order = np.random.default_rng(config.seed + epoch).permutation(len(train_bags))
        per_rank = math.ceil(len(order) / info.world_size)
        return [int(i) for i in np.resize(order, per_rank * info.world_size)[info.rank :: info.world_size]]

    def step(i: int, ctx: Any) -> torch.Tensor:
        lb = train_bags[i]
        rng = np.random.default_rng([config.seed, ctx.epoch, i])  # the subsample: a function of seed, epoch, case
        bag = augment_bag(_subsample(lb.bag, config.max_instances, rng), config, rng).to(ctx.device)
        target = lb.target.to(ctx.device)
        w = k_weight if target.numel() > 1 else k_weight * (0.5 / pos_rate if target[0] > 0.5 else 0.5 / (1 - pos_rate))
        out = forward(ctx.model, bag, target, config.grad_checkpointing)
        return _bce(out.probs, target, w) + (out.aux_loss.float() if out.aux_loss is not None else 0.0)

    def validate(ctx: Any) -> dict[str, float]:
        outs = predict(ctx.modules["model"], val_bags, ctx.device)
        losses = [
            float(_bce(o.probs, b.target, torch.ones_like(b.target))) for o, b in zip(outs, val_bags, strict=True)
        ]
        return {"val_loss": float(np.mean(losses)), "val_auc": _auc(val_bags, outs)}

    engine = _engine_config(config, device, progress, bool(val_bags))
    run_config = {**config.model_dump(mode="json"), "n_train": len(train_bags),
                  "train_data": _data_identity(train_bags, val_bags)}  # issue 21: resume only on the same data  # fmt: skip

    def run(epochs: int, folder: Path) -> Any:
        """`fit` for `epochs` epochs from the model's current weights, checkpointed in `folder` (resumed from)."""
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return fit(
            model, opt, step, data, engine.model_copy(update={"epochs": epochs}),
            validate=validate if val_bags else None, schedulers=_scheduler(opt, config, len(train_bags), info.world_size),
            out_dir=folder, checkpoint=folder / "checkpoint.pt", run_config=run_config,
            run_only=RUN_ONLY, find_unused_parameters=True, info=info,
        )  # fmt: skip

    trials = _restarts(model, config, engine, out_dir, run, info, device) if config.restarts > 1 else None
    result = run(config.epochs, out_dir)
    best = result.best_row
    out = {"history": result.history, "best_epoch": result.best_epoch,
           "best_val_auc": float(best.get("val_auc", float("nan"))), "stopped_early": result.stopped_early}  # fmt: skip
    if trials is not None:
        out.update(trials)
    return out


def reinitialize(model: torch.nn.Module, seed: int, device: torch.device | None = None) -> None:
    """Redraw `model`'s weights from `seed`: every submodule's ``reset_parameters``, seeded.

    Parameters that are constant at the call (biases or scales the aggregator set to one value on
    purpose, e.g. INSIGHT's head biases) keep their value; the global RNG state is left as it was.
    """
    const = {
        n: p.detach().clone() for n, p in model.named_parameters() if p.numel() and bool((p == p.flatten()[0]).all())
    }
    cuda = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if m is not model and callable(reset):
                reset()
        for n, p in model.named_parameters():
            if n in const:
                p.copy_(const[n])


def _restarts(
    model: Aggregator,
    config: MILTrainConfig,
    engine: EngineConfig,
    out_dir: Path,
    run: Any,
    info: RankInfo,
    device: torch.device,
) -> dict[str, Any]:
    """Train `config.restarts` initialisations for `restart_epochs` each (``out_dir/restart_<r>/``) and
    put the one with the best `monitor` in ``out_dir/checkpoint.pt``, from which `train` continues.

    Resumable: a finished restart is read back from its checkpoint, not trained again, and once the
    continuation's checkpoint exists the restarts are not looked at again (``restarts.json`` records them).
    """
    import json
    import shutil

    from medwss.io.atomic import write_json

    record = out_dir / "restarts.json"
    if (out_dir / "checkpoint.pt").exists() and record.exists():  # chosen before: the continuation resumes
        return json.loads(record.read_text())
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    for r in range(config.restarts):
        model.load_state_dict(initial)
        if r:
            reinitialize(model, int(np.random.SeedSequence([config.seed, r]).generate_state(1)[0]), device)
        res = run(config.restart_epochs, out_dir / f"restart_{r}")
        value = float("nan") if res.best_value is None else float(res.best_value)
        rows.append({"restart": r, engine.monitor: value, "best_epoch": res.best_epoch})
    sign = -1.0 if engine.mode == "max" else 1.0
    values = [sign * row[engine.monitor] for row in rows]
    chosen = int(np.nanargmin(values)) if not np.isnan(values).all() else 0
    out = {"restarts": rows, "restart_chosen": chosen}
    if info.is_main:
        tmp = out_dir / "checkpoint.pt.restart"
        shutil.copyfile(out_dir / f"restart_{chosen}" / "checkpoint.pt", tmp)
        if (out_dir / f"restart_{chosen}" / "history.json").exists():
            shutil.copyfile(out_dir / f"restart_{chosen}" / "history.json", out_dir / "history.json")
        tmp.replace(out_dir / "checkpoint.pt")
        write_json(record, out)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return out


def _build(config: dict[str, Any]) -> Aggregator:
    from medwss.mil.registry import create_aggregator

    return create_aggregator(
        config["aggregator"], int(config["in_dim"]), int(config["n_classes"]), **(config.get("aggregator_kwargs") or {})
    )


register_model_kind("mil", _build)


def save_model(path: str | Path, model: Aggregator, meta: dict[str, Any]) -> Path:
    """Save `model` as the one model file (kind ``mil``), atomically.

    Args:
        path: The file to write.
        model: The trained aggregator.
        meta: ``aggregator``, ``aggregator_kwargs``, ``in_dim``, ``n_classes`` (the build config)
            and anything else to keep (``encoder``, ``config``: the training config).
    """
    config = {k: meta.get(k, {} if k == "aggregator_kwargs" else None) for k in MODEL_CONFIG_KEYS}
    rest = {k: v for k, v in meta.items() if k not in MODEL_CONFIG_KEYS}
    if "config" in rest:
        rest["train_config"] = rest.pop("config")
    return save_any_model(path, "mil", model, config, rest)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[Aggregator, dict[str, Any]]:
    """Rebuild a MIL model (a model file, or the older MIL format); returns it and its build config plus meta.

    Raises:
        UnsupportedFormatError: The file holds another kind of model, or no model (one line, naming the file).
        CorruptFileError: The file cannot be read or its weights do not fit.
    """
    model, record = load_any_model(path, device, kind="mil")
    return model, {**record.meta, **record.config}  # type: ignore[return-value]
