"""`fit`: the one training loop. A step function and an optional validation function in; trained models out.

Per batch the engine calls ``step(batch, ctx)`` under autocast, back-propagates its loss (scaled for
float16), accumulates gradients over `accumulate` batches, clips them and steps the optimisers and
per-step schedulers. At the end of each round (an epoch, or `eval_every` steps) it runs
``validate(ctx)`` without gradients, selects the best round on `monitor`/`mode`, applies the
plateau-aware early stopping, appends a row to ``history.json`` and writes an atomic checkpoint
(models, best models, optimisers, schedulers, scaler, RNG states, engine state).

Resume: an existing checkpoint is resumed from when its signature (the run's config minus its
run-only keys) equals this run's, else a `ConfigError` names the changed keys. With the data a
function of (seed, epoch) — ``data(epoch)`` — a resumed run ends with the same weights, bit for
bit, as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from medwss.errors import ConfigError
from medwss.train.checkpoint import load_checkpoint, save_checkpoint
from medwss.train.config import EngineConfig
from medwss.train.context import Context
from medwss.train.device import resolve_device, seed_everything
from medwss.train.distributed import RankInfo, rank_info
from medwss.train.history import write_history
from medwss.train.rng import capture_rng, restore_rng
from medwss.train.selection import Selection
from medwss.train.signature import check_compatible, signature

log = logging.getLogger(__name__)

StepOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]
StepFn = Callable[[Any, Context], StepOutput]
"""``step(batch, ctx) -> loss`` or ``(loss, logs)``; logs are averaged over the round into the history."""
ValidateFn = Callable[[Context], Mapping[str, float]]
"""``validate(ctx) -> {"val_loss": ..., "val_auc": ...}``, run in eval mode without gradients."""
Data = Callable[[int], Iterable[Any]] | Iterable[Any]
"""``data(epoch)`` (an iterable of batches, a function of seed and epoch) or a re-iterable (DataLoader)."""

T = TypeVar("T")


@dataclass
class FitResult:
    """What `fit` returns.

    Attributes:
        history: One row per round (``round``, ``epoch``, ``step``, ``train_loss``, logs, metrics, ``lr``, ``seconds``).
        best_round: Index of the selected round (-1 when no round ran).
        best_value: Its `monitor` value (None when never finite).
        stopped_early: The plateau-aware patience ran out.
    """

    history: list[dict[str, Any]]
    best_round: int
    best_value: float | None
    stopped_early: bool

    @property
    def best_row(self) -> dict[str, Any]:
        return self.history[self.best_round] if 0 <= self.best_round < len(self.history) else {}

    @property
    def best_epoch(self) -> int:
        return int(self.best_row.get("epoch", -1))


@dataclass
class _State:
    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_rng: dict[str, Any] | None = None


def _as_dict(x: T | Mapping[str, T] | None, name: str) -> dict[str, T]:
    if x is None:
        return {}
    if isinstance(x, Mapping):
        return dict(x)
    return {name: x}


def fit(
    models: nn.Module | Mapping[str, nn.Module],
    optimizers: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
    step: StepFn | Sequence[tuple[str, StepFn]],
    data: Data,
    cfg: EngineConfig,
    *,
    validate: ValidateFn | None = None,
    schedulers: Any = None,
    out_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    run_config: Mapping[str, Any] | None = None,
    run_only: Iterable[str] = (),
    keep_checkpoint: bool = True,
    on_round_end: Callable[[dict[str, Any]], None] | None = None,
    find_unused_parameters: bool = False,
    info: RankInfo | None = None,
) -> FitResult:
    """Train `models` with `step` over `data`; returns the history and the selected round.

    Args:
        models: A model or models by name (a GAN: ``{"generator": G, "discriminator": D}``).
        optimizers: An optimiser or optimisers by name.
        step: ``step(batch, ctx)``: its loss steps every optimiser. Or phases ``[(optimiser name,
            step), ...]``, run in order on each batch, each loss stepping its own optimiser (GANs).
        data: ``data(epoch)`` or a re-iterable of batches (see `Data`).
        cfg: Length, selection, early stopping, device, precision, accumulation, clipping.
        validate: Metrics at the end of each round (keys usable as `cfg.monitor`).
        schedulers: A scheduler or schedulers by name, stepped per `cfg.scheduler_interval`.
        out_dir: Where ``history.json`` goes (nothing written when None).
        checkpoint: Checkpoint file, written every round and resumed from when present.
        run_config: The run's full config, whose `signature` decides whether a checkpoint may be
            resumed; `cfg` when None.
        run_only: Keys of `run_config` that may change between a checkpoint and its resume (added
            to `medwss.train.signature.RUN_ONLY`).
        keep_checkpoint: Leave the checkpoint when done (a later run with more epochs continues it).
        on_round_end: Called with each round's history row after its checkpoint is written.
        find_unused_parameters: Passed to DDP.
        info: Rank information (read from the environment when None).

    Raises:
        ConfigError: A checkpoint from other settings (naming the changed keys), an unreadable
            checkpoint, no batches, or several phases with gradient accumulation.
    """
    info = info or rank_info()
    modules = _as_dict(models, "model")
    opts = _as_dict(optimizers, "optimizer")
    scheds = _as_dict(schedulers, "scheduler")
    phases = list(step) if isinstance(step, Sequence) else None
    if phases is not None and cfg.accumulate > 1:
        raise ConfigError("gradient accumulation needs a single step function (got several phases)")
    for name, _ in phases or []:
        if name not in opts:
            raise ConfigError(f"phase {name!r} names no optimiser (have {', '.join(opts)})")
    device = resolve_device(cfg.device, info.local_rank)
    amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not amp:
        log.info("amp: true is a no-op on %s (mixed precision runs on CUDA only)", device)
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    for m in modules.values():
        m.to(device)
    wrapped = _wrap_ddp(modules, device, info, find_unused_parameters)
    ctx = Context(device, wrapped, modules, info, amp, amp_dtype)
    sig = signature(run_config if run_config is not None else cfg.model_dump(mode="json"), run_only)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    state, sel = _State(), Selection()
    best: dict[str, dict[str, torch.Tensor]] = {k: _cpu_copy(m) for k, m in modules.items()}
    rng_after_skip: dict[str, Any] | None = None
    if ckpt is not None and ckpt.exists():
        blob = load_checkpoint(ckpt)
        check_compatible(blob.get("signature", {}), sig, ckpt)
        try:  # a damaged checkpoint (keys, shapes) is one line naming it, not a traceback
            for k, m in modules.items():
                m.load_state_dict(blob["models"][k])
            best = blob["best"]
            for k, o in opts.items():
                o.load_state_dict(blob["optimizers"][k])
            for k, s in scheds.items():
                s.load_state_dict(blob["schedulers"][k])
            scaler.load_state_dict(blob["scaler"])
            e = blob["engine"]
            state = _State(e["epoch"], e["batch"], e["step"], list(e["history"]), e.get("epoch_rng"))
            sel.load_state_dict(e["selection"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(
                f"this checkpoint does not fit the run ({type(exc).__name__}: {first}); delete it to start again", ckpt
            ) from exc
        if state.batch:  # mid-epoch: rebuild the epoch's data as it began, skip what was done, then restore
            rng_after_skip = blob["rng"]
            if state.epoch_rng is not None:
                restore_rng(state.epoch_rng)
        else:
            restore_rng(blob["rng"])
        log.info("resuming %s at epoch %d, step %d", ckpt, state.epoch, state.step)
    else:
        seed_everything(cfg.seed)

    from tqdm import tqdm

    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=cfg.desc, unit="step",
               disable=not (cfg.progress and info.is_main), leave=False)  # fmt: skip
    acc: dict[str, float] = {}
    n_acc = 0
    t0 = time.perf_counter()
    micro = 0

    def done() -> bool:
        return (
            sel.stopped_early
            or (cfg.max_steps is not None and state.step >= cfg.max_steps)
            or (cfg.epochs is not None and state.epoch >= cfg.epochs)
        )

    def end_round() -> None:
        nonlocal acc, n_acc, t0
        row = _round_row(state, acc, n_acc, opts, t0)
        if validate is not None:
            for m in modules.values():
                m.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in validate(ctx).items()})
            for m in modules.values():
                m.train()
        if cfg.monitor not in row:
            raise ConfigError(f"monitor {cfg.monitor!r} is not among the round's values ({', '.join(row)})")
        index = len(state.history)
        state.history.append(row)
        if sel.update(index, row, cfg):
            best.update({k: _cpu_copy(m) for k, m in modules.items()})
        if info.is_main and out_dir is not None:
            write_history(Path(out_dir) / "history.json", state.history)
        if ckpt is not None:
            if info.is_main:
                save_checkpoint(ckpt, _blob(sig, modules, best, opts, scheds, scaler, state, sel))
            _barrier()
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", **_postfix(row, cfg.monitor))
        acc, n_acc, t0 = {}, 0, time.perf_counter()
        if on_round_end is not None:
            on_round_end(row)

    for m in modules.values():
        m.train()
    while not done():
        ctx.epoch = state.epoch
        if state.batch == 0:
            state.epoch_rng = capture_rng()
        batches: Iterator[Any] = iter(data(state.epoch) if callable(data) else data)
        if state.batch:  # resumed mid-epoch: skip the batches done, then put the checkpoint's RNG back
            for _ in range(state.batch):
                next(batches, None)
        if rng_after_skip is not None:
            restore_rng(rng_after_skip)
            rng_after_skip = None
        seen, stopped = state.batch > 0, False
        for batch in batches:
            seen = True
            ctx.batch_index, ctx.step = state.batch, state.step
            if micro == 0:
                for o in opts.values():
                    o.zero_grad(set_to_none=True)
            logs = _run_batch(batch, ctx, step, phases, opts, scaler, cfg)
            micro += 1
            state.batch += 1
            for k, v in logs.items():
                acc[k] = acc.get(k, 0.0) + v
            n_acc += 1
            if phases is None and micro < cfg.accumulate:
                continue
            if phases is None:
                _optimise(opts, scaler, cfg)
            scaler.update()
            micro = 0
            state.step += 1
            bar.update(1)
            bar.set_postfix(epoch=state.epoch, loss=f"{acc['train_loss'] / n_acc:.4f}")
            if cfg.scheduler_interval == "step":
                for s in scheds.values():
                    s.step()
            if cfg.eval_every is not None and state.step % cfg.eval_every == 0:
                end_round()
            if done():
                stopped = True
                break
        if not seen:
            raise ConfigError(f"no training batches in epoch {state.epoch}")
        if stopped:  # max_steps reached or stopped early mid-epoch: close the round in progress
            if n_acc:
                end_round()
            break
        if micro:  # a partial accumulation at the epoch's end still steps
            _optimise(opts, scaler, cfg)
            scaler.update()
            micro = 0
            state.step += 1
        _finish_epoch(state, scheds, cfg)
        if cfg.eval_every is None or (done() and n_acc):
            end_round()
    bar.close()
    if cfg.restore_best and sel.best_round >= 0:
        for k, m in modules.items():
            m.load_state_dict(best[k])
    if ckpt is not None and not keep_checkpoint and info.is_main:
        ckpt.unlink(missing_ok=True)
    return FitResult(state.history, sel.best_round, sel.best_value, sel.stopped_early)


def _finish_epoch(state: _State, scheds: dict[str, Any], cfg: EngineConfig) -> None:
    if cfg.scheduler_interval == "epoch":
        for s in scheds.values():
            s.step()
    state.epoch += 1
    state.batch = 0


def _run_batch(
    batch: Any,
    ctx: Context,
    step: StepFn | Sequence[tuple[str, StepFn]],
    phases: list[tuple[str, StepFn]] | None,
    opts: dict[str, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    cfg: EngineConfig,
) -> dict[str, float]:
    logs: dict[str, float] = {}
    total = 0.0
    for name, fn in phases or [("", step)]:  # type: ignore[list-item]
        if phases is not None:
            opts[name].zero_grad(set_to_none=True)
        with ctx.autocast():
            out = fn(batch, ctx)  # type: ignore[operator]
        loss, extra = (out[0], dict(out[1])) if isinstance(out, tuple) else (out, {})
        scaler.scale(loss / cfg.accumulate).backward()
        if phases is not None:
            _optimise({name: opts[name]}, scaler, cfg)
            logs[f"loss_{name}"] = float(loss.detach())
        total += float(loss.detach())
        logs.update({k: float(v) for k, v in extra.items()})
    logs["train_loss"] = total
    return logs


def _optimise(opts: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler, cfg: EngineConfig) -> None:
    for o in opts.values():
        if cfg.clip_grad_norm is not None:
            scaler.unscale_(o)
            params = [p for g in o.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        scaler.step(o)


def _round_row(
    state: _State, acc: dict[str, float], n: int, opts: dict[str, torch.optim.Optimizer], t0: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"round": len(state.history), "epoch": state.epoch - 1 if state.batch == 0 else state.epoch,
                           "step": state.step}  # fmt: skip
    sums, count = _all_reduce(acc, n)
    row.update({k: v / max(count, 1) for k, v in sums.items()})
    row.setdefault("train_loss", float("nan"))
    first = next(iter(opts.values()), None)
    if first is not None:
        row["lr"] = float(first.param_groups[0]["lr"])
    row["seconds"] = time.perf_counter() - t0
    return row


def _all_reduce(acc: dict[str, float], n: int) -> tuple[dict[str, float], int]:
    """Sums over ranks under torchrun, so every rank takes the same selection and stopping decisions."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return acc, n
    keys = sorted(acc)
    t = torch.tensor([acc[k] for k in keys] + [float(n)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    vals = t.cpu().tolist()
    return dict(zip(keys, vals[:-1], strict=True)), int(vals[-1])


def _barrier() -> None:
    from medwss.train.distributed import barrier

    barrier()


def _postfix(row: dict[str, Any], monitor: str) -> dict[str, str]:
    v = row.get(monitor)
    return {monitor: f"{v:.4f}"} if monitor != "train_loss" and isinstance(v, float) and math.isfinite(v) else {}


def _cpu_copy(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}


def _wrap_ddp(
    modules: dict[str, nn.Module], device: torch.device, info: RankInfo, find_unused: bool
) -> dict[str, nn.Module]:
    import torch.distributed as dist

    if info.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return dict(modules)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return {
        k: DistributedDataParallel(m, device_ids=ids, find_unused_parameters=find_unused)
        if any(p.requires_grad for p in m.parameters())
        else m
        for k, m in modules.items()
    }


def _blob(
    sig: dict[str, Any],
    modules: dict[str, nn.Module],
    best: dict[str, dict[str, torch.Tensor]],
    opts: dict[str, torch.optim.Optimizer],
    scheds: dict[str, Any],
    scaler: torch.amp.GradScaler,
    state: _State,
    sel: Selection,
) -> dict[str, Any]:
    return {
        "signature": sig,
        "models": {k: m.state_dict() for k, m in modules.items()},
        "best": best,
        "optimizers": {k: o.state_dict() for k, o in opts.items()},
        "schedulers": {k: s.state_dict() for k, s in scheds.items()},
        "scaler": scaler.state_dict(),
        "rng": capture_rng(),
        "engine": {
            "epoch": state.epoch,
            "batch": state.batch,
            "step": state.step,
            "history": state.history,
            "epoch_rng": state.epoch_rng,
            "selection": sel.state_dict(),
        },  # fmt: skip
    }
