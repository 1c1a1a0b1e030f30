"""Simulated active learning with an oracle annotator: learning curves for every strategy.

The oracle answers a selection with the ground-truth slice (``full``) or with a simulated scribble
of it (``scribble``: `medwss.data.weak.make_weak_label`, with oracle size bounds, the true
size ±10%, as in Kervadec et al.). After each round a fresh segmenter is trained on every slice
annotated so far and scored by 3D Dice on held-out test volumes (never on pool slices). Each
(mode, strategy, seed) run is saved as it finishes, so an interrupted simulation resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from medwss.active.features import feature_provider
from medwss.active.pool import SlicePool, SliceReader, SliceRef, build_pool
from medwss.active.state import ALConfig, parse_budget
from medwss.active.strategies import STRATEGIES, SelectionContext, get_strategy
from medwss.active.training import make_predictor, seg_config, train_on
from medwss.config import StrictConfig
from medwss.errors import ConfigError
from medwss.io.atomic import write_json


class SimulateConfig(StrictConfig):
    """A simulation (configs/al_simulate.yaml)."""

    al: ALConfig = ALConfig()
    """The project settings each simulated run uses (a section of the YAML)."""
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES))
    """Selection strategies compared."""
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    """Evaluation seeds: each strategy's curve is repeated per seed."""
    modes: list[Literal["full", "scribble"]] = Field(default_factory=lambda: ["full"])  # type: ignore[arg-type]
    """Annotation modes: full masks, or scribbles from the oracle."""
    rounds: int = Field(default=5, ge=1)
    """Selection rounds per curve."""
    budget: str = "1%"
    """Slices per round: a percentage of the pool (1%) or a count (12)."""
    pool_splits: list[str] = Field(default_factory=lambda: ["train", "val"])
    """Manifest splits whose volumes form the pool."""
    test_splits: list[str] = Field(default_factory=lambda: ["test"])
    """Manifest splits the curves are scored on (3D Dice)."""
    budgets: list[str] | None = None
    """Cumulative annotated totals, one per round (``[1%, 2%, 5%, 10%]``); replaces `rounds` × `budget` when set."""
    weak_kind: str = "circle"
    """Scribble simulator of the oracle (`medwss.data.weak.make_weak_label` kind), or ``manifest``: the
    real scribble of the slice, read from the manifest's ``scribble`` column (-1 = not scribbled)."""
    weak_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the scribble simulator."""
    size_margin: float = Field(default=0.1, ge=0)
    """Oracle size bounds on scribbles: the true size ± this fraction."""


def oracle(
    gt: np.ndarray, mode: str, seed: int, cfg: SimulateConfig, scribble: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The annotation of a slice: its full mask, or a scribble (`scribble` when given, else simulated)
    with the true size ±margin as bounds."""
    if mode == "full":
        return gt, None
    from medwss.data.weak import make_weak_label
    from medwss.seg.bounds import bounds_from_mask

    weak = (
        scribble
        if scribble is not None
        else make_weak_label(gt, cfg.weak_kind, seed, background=True, **cfg.weak_options)
    )
    return weak, bounds_from_mask(gt, cfg.al.num_classes, cfg.size_margin)


def round_targets(cfg: SimulateConfig, n: int) -> list[int]:
    """Slices annotated after each round: `budgets` (cumulative) or `rounds` × `budget`."""
    if cfg.budgets:
        targets = [min(parse_budget(b, n), n) for b in cfg.budgets]
        if any(b <= a for a, b in zip(targets, targets[1:], strict=False)):
            raise ConfigError(f"budgets must grow from round to round, got {cfg.budgets} = {targets} of {n} slices")
        return targets
    k = parse_budget(cfg.budget, n)
    return [min(k * r, n) for r in range(1, cfg.rounds + 1)]


def evaluate(model: Any, seg_cfg: Any, test: Sequence[list[SliceRef]], reader: SliceReader, k: int) -> dict[str, Any]:
    """Mean 3D Dice over test volumes (and per class) of a segmenter applied slice by slice."""
    from medwss.eval.overlap import dice_per_class
    from medwss.seg.train import predict_probs

    per_volume = []
    for refs in test:
        probs = predict_probs(model, [reader.image(r) for r in refs], seg_cfg, batch_size=32)
        pred = np.stack([p.argmax(0) for p in probs], axis=-1)
        gt = np.stack([reader.label(r) for r in refs], axis=-1)
        per_volume.append(dice_per_class(pred, gt, k))
    arr = np.array(per_volume)  # (V, K-1)
    return {"dice": float(arr.mean()), "dice_per_class": arr.mean(0).tolist(), "dice_per_volume": arr.mean(1).tolist()}


def run_one(
    pool: SlicePool,
    test: Sequence[list[SliceRef]],
    reader: SliceReader,
    cfg: SimulateConfig,
    mode: str,
    strategy: str,
    seed: int,
    features: Any,
    progress: bool = False,
    scribbles: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One learning curve: rounds of selection, oracle annotation, training and testing (`round_targets`).

    `scribbles` (case id → scribble file) makes the ``scribble`` oracle answer with the real scribbles."""
    from dataclasses import replace

    al = cfg.al
    fn = get_strategy(strategy)
    labelled: list[int] = []
    labels: list[np.ndarray] = []
    bounds: list[np.ndarray | None] = []
    predict = None
    rows = []
    base = al.seg.model_copy(update={"num_classes": al.num_classes, "seed": seed, "device": al.device})
    for r, target in enumerate(round_targets(cfg, len(pool)), start=1):
        t0 = time.perf_counter()
        ctx = SelectionContext(
            len(pool), list(labelled), features, predict, seed * 1000 + r, al.mc_samples, dict(al.fuse), al.device
        )
        chosen = fn(ctx, target - len(labelled))
        t_select = time.perf_counter() - t0
        for i in chosen:
            ref = pool.refs[i]
            real = None
            if mode == "scribble" and scribbles is not None:
                real = reader.label(replace(ref, label=scribbles[ref.case_id]))
            lab, b = oracle(reader.label(ref), mode, seed * 100_003 + i, cfg, real)
            labelled.append(i)
            labels.append(lab)
            bounds.append(b)
        seg_cfg = seg_config(base, [mode] * len(labelled), len(labelled), al.size_weight, al.min_steps)
        model = train_on([pool.refs[i] for i in labelled], labels, bounds, reader, seg_cfg, progress=False)
        predict = make_predictor(model, seg_cfg, pool.refs, reader)
        score = evaluate(model, seg_cfg, test, reader, al.num_classes)
        rows.append(
            {
                "mode": mode,
                "strategy": strategy,
                "seed": seed,
                "round": r,
                "annotated": len(labelled),
                "percent": 100.0 * len(labelled) / len(pool),
                "select_seconds": t_select,
                "seconds": time.perf_counter() - t0,
                "selected": [pool.refs[i].slice_id for i in chosen],
                **score,
            }
        )
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode and strategy: mean Dice per round over seeds with a 95% t-interval."""
    from scipy import stats

    out = []
    keys = sorted({(r["mode"], r["strategy"]) for r in rows})
    for mode, strategy in keys:
        sel = [r for r in rows if r["mode"] == mode and r["strategy"] == strategy]
        rounds = sorted({r["round"] for r in sel})
        mean, lo, hi, pct = [], [], [], []
        for rd in rounds:
            d = np.array([r["dice"] for r in sel if r["round"] == rd])
            m = float(d.mean())
            half = (
                float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            )
            mean.append(m)
            lo.append(m - half)
            hi.append(m + half)
            pct.append(float(np.mean([r["percent"] for r in sel if r["round"] == rd])))
        seeds = sorted({r["seed"] for r in sel})
        out.append(
            {
                "mode": mode,
                "strategy": strategy,
                "seeds": seeds,
                "percent": pct,
                "dice_mean": mean,
                "dice_lo": lo,
                "dice_hi": hi,
            }
        )
    return out


def simulate(
    pool: SlicePool,
    test: Sequence[list[SliceRef]],
    cfg: SimulateConfig,
    out: str | Path,
    progress: bool = True,
    scribbles: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every (mode, seed, strategy) curve; finished runs in ``out/runs`` are reused (resume).

    `scribbles`: case id → real scribble file, for ``weak_kind: manifest``."""
    from medwss.active.plot import plot_curves

    for s in cfg.strategies:
        get_strategy(s)
    if any(r.label == "" for r in pool.refs):
        raise ConfigError("simulation needs a ground-truth mask for every pool volume (the manifest's mask column)")
    out = Path(out)
    reader = SliceReader(cfg.al.window, cfg.al.label_spec)
    rows: list[dict[str, Any]] = []
    jobs = [(m, s, st) for m in cfg.modes for s in cfg.seeds for st in cfg.strategies]
    providers: dict[int, Any] = {}
    for mode, seed, strategy in tqdm(jobs, desc="simulate", disable=not progress):
        path = out / "runs" / f"{mode}_{strategy}_seed{seed}.json"
        if path.exists():
            rows += json.loads(path.read_text())
            continue
        if seed not in providers:
            metric = cfg.al.metric.model_copy(update={"seed": seed, "device": cfg.al.device})
            providers[seed] = feature_provider(pool, metric, out / "features" / f"seed{seed}", progress=False)
        run = run_one(pool, test, reader, cfg, mode, strategy, seed, providers[seed], scribbles=scribbles)
        write_json(path, run)
        rows += run
    summary = summarise(rows)
    plot = plot_curves(summary, out / "al_curves.png", pool_size=len(pool))
    result = {
        "pool_slices": len(pool),
        "test_volumes": len(test),
        "budget_per_round": parse_budget(cfg.budget, len(pool)),
        "annotated_per_round": round_targets(cfg, len(pool)),
        "summary": summary,
        "rows": rows,
        "plot": str(plot),
    }
    write_json(out / "curves.json", result)
    return result


def pools_from_manifest(
    manifest: str | Path, cfg: SimulateConfig, progress: bool = True
) -> tuple[SlicePool, list[list[SliceRef]]]:
    """The pool (``pool_splits``) and the test volumes' slices (``test_splits``) of a manifest."""
    from medwss.data.manifest import load_manifest

    cases = list(load_manifest(manifest))
    pool_cases = [c for c in cases if c.split in cfg.pool_splits]
    test_cases = [c for c in cases if c.split in cfg.test_splits]
    if not pool_cases or not test_cases:
        raise ConfigError(f"need pool ({cfg.pool_splits}) and test ({cfg.test_splits}) cases", manifest)
    pool, _ = build_pool(pool_cases, cfg.al.window, cfg.al.thumb_size, progress=progress)
    test_pool, _ = build_pool(test_cases, cfg.al.window, 8, progress=False)
    by_volume: dict[int, list[SliceRef]] = {}
    for r in test_pool.refs:
        by_volume.setdefault(r.volume, []).append(r)
    return pool, list(by_volume.values())


def simulate_from_manifest(
    manifest: str | Path, cfg: SimulateConfig, out: str | Path, progress: bool = True
) -> dict[str, Any]:
    """`simulate` on a manifest's pool and test splits; writes ``curves.json``, ``al_curves.png`` and ``run.json``."""
    from medwss.runinfo import write_run_record

    pool, test = pools_from_manifest(manifest, cfg, progress)
    scribbles = None
    if cfg.weak_kind == "manifest" and "scribble" in cfg.modes:
        from medwss.data.manifest import load_manifest

        scribbles = {c.case_id: str(c.scribble) for c in load_manifest(manifest) if c.scribble is not None}
        missing = sorted({r.case_id for r in pool.refs} - set(scribbles))
        if missing:
            raise ConfigError(
                f"weak_kind manifest: {len(missing)} pool cases have no scribble ({missing[0]}, ...)", manifest
            )
    result = simulate(pool, test, cfg, out, progress, scribbles)
    write_run_record(out, "al simulate", cfg.model_dump(mode="json"), cfg.seeds[0], {"summary": result["summary"]})
    return result
