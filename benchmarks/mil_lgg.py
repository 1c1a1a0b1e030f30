"""MIL on real brain MRI (LGG): slice bags, slice AUC and heatmap Dice, trained on two sites, tested on the third.

Usage:
    python benchmarks/mil_lgg.py [--data DIR] [--quick] [--holdout CS DU HT] [--seeds 0 1 2]
        [--encoders stats cnn ssl] [--aggregators insight abmil ...] [--insight-kwargs JSON] [--lr LR]

Data: ``DIR/mri/lgg/manifest.csv`` (default DIR ../shared/data/real): 95 patients from three TCGA
institutions (CS 16, DU 45, HT 34), FLAIR / T1 pre / T1 post at 128×128×S, tumour masks.

Bags (`medwss.mil.slice_bags`): each axial slice is a bag, label 1 when the tumour mask touches it.
Slices with under 10 % brain (FLAIR > 20/255) are skipped; every case keeps all its tumour slices
and as many tumour-free slices, sampled with a fixed seed (so every encoder, aggregator and seed
sees the same slices). Instances are the 16×16-pixel tiles of the slice (an 8×8 grid) with at least
25 % brain, with ``grid_index``/``grid_shape`` so INSIGHT's context convolutions see neighbours;
3 channels (FLAIR, T1 pre, T1 post). Encoders: ``stats`` (weight-free histogram and texture
statistics, 78-D), ``cnn`` (MONAI ResNet-18 at width 0.25, random initialisation, 128-D) and
``ssl`` (the same network after in-domain SimCLR, `medwss.embed.pretrain.pretrain`, on tiles of the
training sites' train patients only, per rotation).

Protocol, for each held-out site H (leave one site out): train on the train-split patients of the
other two sites, select the epoch (validation loss) and choose thresholds on their val-split
patients, test on their test-split patients (``in-site``, also per site) and on every patient of H
(``held-out site``). Metrics: slice AUC with a bootstrap 95 % CI (`classification_report`; slices
of one patient are resampled as if independent, so the CIs are optimistic), balanced accuracy at
the val-chosen (Youden) threshold, and heatmap Dice on tumour slices: the instance scores painted
on their tiles' pixels, thresholded at the value that maximises mean Dice on the val tumour
slices, against the pixel mask (mean over slices, bootstrap CI). A training-free reference row,
``flair_tile``, scores each tile by its mean FLAIR intensity (slice score: the brightest tile).
Training: every aggregator at the learning rate of the shipped configs/mil_insight.yaml (``--lr``
overrides), INSIGHT with that file's ``aggregator_kwargs`` (``--insight-kwargs`` JSON overrides single options),
both read with `medwss.config.load_config`; the other `MILTrainConfig` fields at their defaults.
Cost: training seconds, seconds per epoch, inference ms per bag, parameters; embedding ms per tile.
TransMIL runs with exact attention (bags hold at most 64 tiles; Nyström would pad them to 64 landmarks).

What is cut to fit ~15 CPU minutes (2 shared cores): tiles of 16 px, so a heatmap cell is 16×16
pixels and Dice is bounded by that resolution; a small CNN; training bags capped
(``--max-train-bags``, default 240 of ~1,100, a fixed seeded subset) and val bags (120); 8 epochs;
one rotation (CS held out) unless ``--holdout`` names more; SSL only when ``ssl`` is among
``--encoders`` (3 epochs on 6,000 tiles). ``--quick`` is the smoke test's setting: a few cases
per site and split, the stats encoder, three aggregators, 2 epochs, one seed.
Every run also scores the val patients (``val`` group; thresholds are chosen on them, so its Dice is optimistic)
and keeps its per-epoch curve (train loss, val loss, val AUC); ``--val-only`` scores nothing else, to choose
settings (results mil_lgg[_quick]_val[TAG]). Paired differences INSIGHT − ABMIL and INSIGHT − ``flair_tile`` on the
same slices (``paired``): slice AUC with a stratified slice bootstrap, heatmap Dice with per-patient means and
patients resampled (`medwss.eval.metrics.paired_mean_ci`), per seed. The val-chosen length (session 9: 8 / 20 / 40
epochs, CS held out, stats) is 20 epochs (``--epochs 20``; results mil_lgg_s9).
Results: benchmarks/results/mil_lgg[_quick][TAG].json and .md (``--tag TAG``); ``--merge A.json B.json ...``
pools runs made in parallel (e.g. one process per ``--holdout`` site) into one table.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATORS = ["insight", "abmil", "clam_sb", "transmil", "mean", "max"]
SITES = ("CS", "DU", "HT")
CHANNELS = ("flair", "t1pre", "t1post")
REFERENCE = "flair_tile"
EXTRA_KWARGS: dict[str, dict[str, Any]] = {"transmil": {"attention": "exact"}}
"""Bags hold at most 64 tiles: exact attention is cheaper than Nyström (which pads to its 64 landmarks)."""
SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "mil_insight.yaml"
PAIRS = [("insight", "abmil"), ("insight", REFERENCE)]
"""Paired differences a − b on the same slices (per seed; the reference has one run, paired with every seed)."""


def shipped_insight() -> tuple[dict[str, Any], float]:
    """INSIGHT's constructor arguments and the learning rate of the shipped ``configs/mil_insight.yaml``."""
    from medwss.config import load_config
    from medwss.mil.config import MILTrainConfig

    cfg = load_config(SHIPPED, MILTrainConfig)
    return dict(cfg.aggregator_kwargs), float(cfg.lr)


def _subset(bags: list, cap: int | None, seed: int) -> list:
    if cap is None or len(bags) <= cap:
        return bags
    keep = np.sort(np.random.default_rng(seed).choice(len(bags), cap, replace=False))
    return [bags[i] for i in keep]


def _pick(bags: list, sites: list[str], split: str) -> list:
    return [b for b in bags if b.item.case.site in sites and b.item.case.split == split]


def make_encoder(name: str, seed: int = 0) -> Any:
    import torch

    from medwss.embed.encoders import create_encoder

    if name == "stats":
        return create_encoder("stats", 2, len(CHANNELS))
    torch.manual_seed(seed)
    return create_encoder("resnet18", 2, len(CHANNELS), widen_factor=0.25)


def pretrain_ssl(cases: list, epochs: int, n_tiles: int, tile: int, seed: int = 0) -> tuple[Any, dict]:
    """SimCLR on tiles of `cases` (slices with brain), a fresh ResNet-18 ×0.25; returns it and a record."""
    import torch

    from medwss.embed.pretrain.augment import AugmentConfig
    from medwss.embed.pretrain.trainer import PretrainConfig, pretrain
    from medwss.mil.slice_bags import foreground, load_case_slices, slice_tiles

    parts = []
    for c in cases:
        d = load_case_slices(c, CHANNELS)
        fg = foreground(d.image)
        for k in np.flatnonzero(fg.reshape(-1, fg.shape[-1]).mean(0) >= 0.1):
            parts.append(slice_tiles(d.image[..., k], fg[..., k], tile).tiles)
    tiles = np.concatenate(parts)
    tiles = tiles[np.sort(np.random.default_rng(seed).choice(len(tiles), min(n_tiles, len(tiles)), replace=False))]
    enc = make_encoder("cnn", seed)
    cfg = PretrainConfig(
        encoder="resnet18", encoder_kwargs={"widen_factor": 0.25}, epochs=epochs, batch_size=128,
        augment=AugmentConfig(stain=False), seed=seed, device="cpu",
    )  # fmt: skip
    t0 = time.perf_counter()
    res = pretrain(enc, torch.from_numpy(tiles), cfg, progress=False)
    return enc.eval(), {"tiles": len(tiles), "epochs": epochs, "seconds": time.perf_counter() - t0,
                        "loss": [h["loss"] for h in res["history"]]}  # fmt: skip


def youden(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity − 1 (0.5 without both classes)."""
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    return float(np.clip(thr[int(np.argmax(tpr - fpr))], 0.0, 1.0))


def slice_dices(bags: list, scores: list[np.ndarray], thresholds: np.ndarray | float) -> np.ndarray:
    """Dice of the thresholded pixel heatmap against the mask on each tumour slice: (slices, thresholds)
    for an array of thresholds, (slices,) for one."""
    from medwss.eval.overlap import dice_from_counts
    from medwss.mil.slice_bags import pixel_heatmap

    t = np.atleast_1d(np.asarray(thresholds, float))
    rows = []
    for b, s in zip(bags, scores, strict=True):
        if b.item.target[0] < 0.5 or b.mask is None:
            continue
        hm = pixel_heatmap(s, b.item.bag.grid_index.numpy(), b.tile, b.shape).ravel()
        gt = b.mask.ravel()
        pred = hm[None] >= t[:, None]  # (T, H·W)
        rows.append(dice_from_counts((pred & gt).sum(1), pred.sum(1), gt.sum()))
    out = np.array(rows, float).reshape(len(rows), len(t))
    return out if np.ndim(thresholds) else out[:, 0]


def best_heat_threshold(bags: list, scores: list[np.ndarray]) -> float:
    """The heatmap threshold (0.02, 0.04, ..., 0.98) with the highest mean Dice on `bags`' tumour slices."""
    grid = np.linspace(0.02, 0.98, 49)
    d = slice_dices(bags, scores, grid)
    return float(grid[int(np.argmax(d.mean(0)))]) if len(d) else 0.5


def score_group(
    bags: list, probs: np.ndarray, scores: list[np.ndarray], thr: float, heat_thr: float, seed: int, n_boot: int = 1000
) -> dict:
    from medwss.eval.metrics import classification_report, mean_ci

    y = np.array([int(b.item.target[0]) for b in bags])
    rep = classification_report(y, probs, threshold=thr, n_boot=n_boot, seed=seed)
    d = slice_dices(bags, scores, heat_thr)
    lo_hi = mean_ci(d, n_boot=n_boot, seed=seed)
    return {"n": int(len(y)), "n_pos": int(y.sum()), "n_patients": len({b.item.case.patient_id for b in bags}),
            "auc": rep["auc"], "auc_lo": rep["auc_lo"], "auc_hi": rep["auc_hi"],
            "balanced_accuracy": rep["balanced_accuracy"], "dice": float(lo_hi[0]), "dice_lo": float(lo_hi[1]),
            "dice_hi": float(lo_hi[2])}  # fmt: skip


def groups_of(bags: list, holdout: str) -> dict[str, list]:
    train_sites = [s for s in SITES if s != holdout]
    g: dict[str, list] = {}
    g["in-site"] = [b for b in bags if b.item.case.split == "test" and b.item.case.site in train_sites]
    for s in train_sites:
        g[f"test:{s}"] = [b for b in g["in-site"] if b.item.case.site == s]
    g[f"held-out:{holdout}"] = [b for b in bags if b.item.case.site == holdout]
    return {k: v for k, v in g.items() if v}


def run_reference(data: dict[str, list], groups: dict[str, list], seed: int, n_boot: int = 1000) -> dict:
    """The training-free FLAIR-intensity heatmap: tile score = mean FLAIR, slice score = max tile."""

    def out(bags: list) -> tuple[np.ndarray, list[np.ndarray]]:
        s = [np.asarray(b.tile_means[:, 0], float) for b in bags]
        return np.array([float(v.max()) for v in s]), s

    pv, sv = out(data["val"])
    yv = np.array([int(b.item.target[0]) for b in data["val"]])
    thr, heat = youden(yv, pv), best_heat_threshold(data["val"], sv)
    res, preds = {"val": score_group(data["val"], pv, sv, thr, heat, seed, n_boot)}, {}
    for name, bags in groups.items():
        p, s = out(bags)
        res[name] = score_group(bags, p, s, thr, heat, seed, n_boot)
        preds[name] = (p, slice_dices(bags, s, heat))
    return {"threshold": thr, "heat_threshold": heat, "groups": res, "_preds": preds}


def minmax(s: np.ndarray) -> np.ndarray:
    """Scores rescaled to [0, 1] within one bag (all 0 when they are equal)."""
    span = float(s.max() - s.min()) if len(s) else 0.0
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def run_one(agg: str, kwargs: dict, seed: int, data: dict[str, list], groups: dict[str, list], epochs: int,
            work: Path, n_boot: int = 1000, lr: float = 3e-4, heat_norm: str = "none") -> dict:  # fmt: skip
    import torch

    from medwss.mil.registry import create_aggregator
    from medwss.mil.train import MILTrainConfig, predict, train
    from medwss.train.device import seed_everything

    device = torch.device("cpu")
    tr, va = [b.item for b in data["train"]], [b.item for b in data["val"]]
    seed_everything(seed)
    model = create_aggregator(agg, int(tr[0].bag.features.shape[1]), 1, **kwargs)
    cfg = MILTrainConfig(aggregator=agg, aggregator_kwargs=kwargs, epochs=epochs, lr=lr, min_epochs=min(epochs, 10),
                         seed=seed, device="cpu")  # fmt: skip
    t0 = time.perf_counter()
    fit = train(model, tr, va, cfg, work, device, progress=False)
    seconds = time.perf_counter() - t0

    def out(bags: list) -> tuple[np.ndarray, list[np.ndarray]]:
        outs = predict(model, [b.item for b in bags], device)
        s = [o.scores[:, -1].numpy() for o in outs]
        return np.array([float(o.probs[-1]) for o in outs]), [minmax(v) for v in s] if heat_norm == "minmax" else s

    pv, sv = out(data["val"])
    yv = np.array([int(b.item.target[0]) for b in data["val"]])
    thr, heat = youden(yv, pv), best_heat_threshold(data["val"], sv)
    res, preds, n_inf, t_inf = {"val": score_group(data["val"], pv, sv, thr, heat, seed, n_boot)}, {}, 0, 0.0
    for name, bags in groups.items():
        if name.startswith("test:"):  # subsets of in-site: same predictions, rescored below
            continue
        t1 = time.perf_counter()
        p, s = out(bags)
        t_inf, n_inf = t_inf + time.perf_counter() - t1, n_inf + len(bags)
        res[name] = score_group(bags, p, s, thr, heat, seed, n_boot)
        preds[name] = (p, slice_dices(bags, s, heat))
        if name == "in-site":
            for sub, sb in groups.items():
                if sub.startswith("test:"):
                    idx = [i for i, b in enumerate(bags) if b in sb]
                    res[sub] = score_group(sb, p[idx], [s[i] for i in idx], thr, heat, seed, n_boot)
    epochs_run = len(fit["history"])
    return {"train_seconds": seconds, "epochs_run": epochs_run, "seconds_per_epoch": seconds / max(1, epochs_run),
            "best_epoch": fit["best_epoch"], "infer_ms_per_bag": 1000 * t_inf / max(1, n_inf),
            "parameters": int(sum(p.numel() for p in model.parameters())), "threshold": thr,
            "heat_threshold": heat, "groups": res, "stopped_early": bool(fit.get("stopped_early", False)),
            "curve": [{k: h.get(k) for k in ("epoch", "train_loss", "val_loss", "val_auc")} for h in fit["history"]],
            "_preds": preds}  # fmt: skip


def paired(a: tuple, b: tuple, bags: list, seed: int, n_boot: int = 1000) -> dict:
    """a − b on the same slices: slice AUC (slices resampled, stratified) and heatmap Dice (patients resampled)."""
    from medwss.eval.metrics import bootstrap_ci, paired_mean_ci, roc_auc

    y = np.array([int(bg.item.target[0]) for bg in bags])
    auc = bootstrap_ci(lambda yy, pp: roc_auc(yy, pp[:, 0]) - roc_auc(yy, pp[:, 1]), y, np.stack([a[0], b[0]], 1),
                       n_boot=n_boot, seed=seed)  # fmt: skip
    pid = [bg.item.case.patient_id for bg in bags if bg.item.target[0] >= 0.5 and bg.mask is not None]
    dice = paired_mean_ci(dict(enumerate(a[1])), dict(enumerate(b[1])), dict(enumerate(pid)), n_boot, seed=seed)
    return {"auc_diff": auc[0], "auc_diff_lo": auc[1], "auc_diff_hi": auc[2],
            "dice_diff": dice[0], "dice_diff_lo": dice[1], "dice_diff_hi": dice[2]}  # fmt: skip


def paired_rows(runs: list[dict], preds: dict, groups: dict[str, list], n_boot: int = 1000) -> list[dict]:
    """`PAIRS` differences for every (held-out site, encoder, seed) whose runs `preds` holds."""
    rows = []
    for r in runs:
        for a, b in PAIRS:
            if r["aggregator"] != a:
                continue
            key_a = (r["holdout"], r["encoder"], a, r["seed"])
            key_b = (r["holdout"], r["encoder"], b, 0 if b == REFERENCE else r["seed"])
            if key_a not in preds or key_b not in preds:
                continue
            for g in preds[key_a]:
                d = paired(preds[key_a][g], preds[key_b][g], groups[g], r["seed"], n_boot)
                rows.append({"holdout": r["holdout"], "encoder": r["encoder"], "a": a, "b": b, "group": g,
                             "seed": r["seed"], **d})  # fmt: skip
    return rows


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["holdout"], r["encoder"], r["aggregator"]) for r in runs}, key=str)
    for h, enc, agg in keys:
        rs = [r for r in runs if (r["holdout"], r["encoder"], r["aggregator"]) == (h, enc, agg)]
        for g in rs[0]["groups"]:
            vals = [r["groups"][g] for r in rs]
            row = {"holdout": h, "encoder": enc, "aggregator": agg, "group": g, "seeds": len(rs),
                   "n": vals[0]["n"], "n_pos": vals[0]["n_pos"], "n_patients": vals[0]["n_patients"],
                   "train_seconds_mean": float(np.mean([r.get("train_seconds", 0.0) for r in rs]))}  # fmt: skip
            for m in ("auc", "auc_lo", "auc_hi", "balanced_accuracy", "dice", "dice_lo", "dice_hi"):
                v = np.array([x[m] for x in vals], float)
                row[f"{m}_mean"], row[f"{m}_sd"] = float(np.nanmean(v)), float(np.nanstd(v))
            rows.append(row)
    return rows


def _cell(r: dict | None, m: str) -> str:
    if r is None:
        return "—"
    return f"{r[m + '_mean']:.3f} ± {r[m + '_sd']:.3f} [{r[m + '_lo_mean']:.2f}, {r[m + '_hi_mean']:.2f}]"


def to_markdown(res: dict) -> str:
    s = res["summary"]
    find = lambda h, e, a, g: next(  # noqa: E731
        (r for r in s if (r["holdout"], r["encoder"], r["aggregator"], r["group"]) == (h, e, a, g)), None
    )
    lines = [
        f"MIL on real brain MRI (LGG), slice bags of {res['tile']}-px tiles; seeds {res['seeds']}, {res['epochs']} "
        "epochs; mean ± sd over seeds [mean of the per-seed bootstrap 95% CIs]. Slice AUC; heatmap Dice on tumour "
        "slices (threshold chosen on val). `flair_tile`: training-free reference (tile mean FLAIR).",
        "",
    ]
    for h in [] if res.get("val_only") else res["holdout"]:
        ins = next((r for r in s if r["holdout"] == h and r["group"] == "in-site"), None)
        out = next((r for r in s if r["holdout"] == h and r["group"].startswith("held-out")), None)
        lines += [
            f"Held-out site {h}: in-site test {ins['n'] if ins else 0} slices ({ins['n_pos'] if ins else 0} tumour, "
            f"{ins['n_patients'] if ins else 0} patients); held-out site {out['n'] if out else 0} slices "
            f"({out['n_pos'] if out else 0} tumour, {out['n_patients'] if out else 0} patients)",
            "",
            "| encoder | aggregator | in-site AUC | in-site Dice | held-out-site AUC | held-out-site Dice | train s |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for enc in res["encoders"]:
            for agg in [*res["aggregators"], REFERENCE]:
                a, b = find(h, enc, agg, "in-site"), find(h, enc, agg, f"held-out:{h}")
                if a is None:
                    continue
                t = "—" if agg == REFERENCE else f"{a['train_seconds_mean']:.0f}"
                lines.append(
                    f"| {enc} | {agg} | {_cell(a, 'auc')} | {_cell(a, 'dice')} | {_cell(b, 'auc')} | "
                    f"{_cell(b, 'dice')} | {t} |"
                )
        lines.append("")
    if any(r["group"] == "val" for r in s):
        lines += ["Validation patients of the training sites (what settings are chosen on; thresholds are chosen on "
                  "these same slices, so Dice is optimistic): slice AUC, heatmap Dice, best epoch / epochs run", "",
                  "| held out | encoder | aggregator | val AUC | val Dice | best epoch / run |", "|---|---|---|---:|---:|---:|"]  # fmt: skip
        for h in res["holdout"]:
            for enc in res["encoders"]:
                for agg in [*res["aggregators"], REFERENCE]:
                    v = find(h, enc, agg, "val")
                    if v is None:
                        continue
                    rs = [r for r in res["runs"] if (r["holdout"], r["encoder"], r["aggregator"]) == (h, enc, agg)]
                    ep = "—" if agg == REFERENCE else (f"{np.mean([r['best_epoch'] for r in rs]):.1f} / "
                                                       f"{np.mean([r['epochs_run'] for r in rs]):.1f}")  # fmt: skip
                    lines.append(f"| {h} | {enc} | {agg} | {_cell(v, 'auc')} | {_cell(v, 'dice')} | {ep} |")
        lines.append("")
    if res.get("paired"):
        lines += ["Paired differences a − b on the same slices, mean over seeds [mean of the per-seed 95% CIs]: slice "
                  "AUC (slices resampled, stratified), heatmap Dice (per-patient means, patients resampled)", "",
                  "| held out | encoder | a − b | group | Δ AUC | Δ Dice |", "|---|---|---|---|---:|---:|"]  # fmt: skip
        keys = list(dict.fromkeys((p["holdout"], p["encoder"], p["a"], p["b"], p["group"]) for p in res["paired"]))
        for k in keys:
            ps = [p for p in res["paired"] if (p["holdout"], p["encoder"], p["a"], p["b"], p["group"]) == k]
            m = {q: float(np.nanmean([p[q] for p in ps])) for q in ps[0] if q.endswith(("_diff", "_lo", "_hi"))}
            cell = lambda q, m=m: f"{m[q + '_diff']:+.3f} [{m[q + '_diff_lo']:+.2f}, {m[q + '_diff_hi']:+.2f}]"  # noqa: E731
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} − {k[3]} | {k[4]} | {cell('auc')} | {cell('dice')} |")
        lines.append("")
    sub = sorted({r["group"] for r in s if r["group"].startswith("test:")})
    if sub:
        lines += ["Per site (in-site test patients): slice AUC / heatmap Dice, mean over seeds [mean of the per-seed "
                  "bootstrap 95% CIs]", "",
                  "| held out | encoder | aggregator | " + " | ".join(sub) + " |",
                  "|---|---|---|" + "---:|" * len(sub)]  # fmt: skip
        for h in res["holdout"]:
            for enc in res["encoders"]:
                for agg in [*res["aggregators"], REFERENCE]:
                    cells = [find(h, enc, agg, g) for g in sub]
                    if all(c is None for c in cells):
                        continue
                    txt = [
                        "—"
                        if c is None
                        else f"{c['auc_mean']:.3f} [{c['auc_lo_mean']:.2f}, {c['auc_hi_mean']:.2f}] / "
                        f"{c['dice_mean']:.3f} [{c['dice_lo_mean']:.2f}, {c['dice_hi_mean']:.2f}]"
                        for c in cells
                    ]
                    lines.append(f"| {h} | {enc} | {agg} | " + " | ".join(txt) + " |")
        lines.append("")
    if res.get("cost"):
        lines += ["Cost (CPU, 1 thread; shared machine):", "",
                  "| encoder | aggregator | parameters | s / epoch | epochs run | inference ms / bag |",
                  "|---|---|---:|---:|---:|---:|"]  # fmt: skip
        for c in res["cost"]:
            lines.append(
                f"| {c['encoder']} | {c['aggregator']} | {c['parameters']:,} | {c['seconds_per_epoch']:.1f} | "
                f"{c['epochs_run']:.1f} | {c['infer_ms_per_bag']:.2f} |"
            )
        lines += ["", "| encoder | embed ms / tile | dim |", "|---|---:|---:|"]
        for name, e in res["embedding"].items():
            lines.append(f"| {name} | {e['ms_per_tile']:.3f} | {e['dim']} |")
    return "\n".join(lines) + "\n"


def cost_of(runs: list[dict], encoders: list[str], aggregators: list[str]) -> list[dict]:
    """Mean parameters, seconds per epoch, epochs run and inference ms per bag of each encoder × aggregator."""
    trained = [r for r in runs if r["aggregator"] != REFERENCE]
    cost = []
    for enc_name in encoders:
        for agg in aggregators:
            rs = [r for r in trained if r["encoder"] == enc_name and r["aggregator"] == agg]
            if rs:
                cost.append({"encoder": enc_name, "aggregator": agg, "parameters": rs[0]["parameters"],
                             "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in rs])),
                             "epochs_run": float(np.mean([r["epochs_run"] for r in rs])),
                             "infer_ms_per_bag": float(np.mean([r["infer_ms_per_bag"] for r in rs]))})  # fmt: skip
    return cost


def merge(paths: list[Path]) -> dict:
    """One result from several runs' JSON files (e.g. one process per held-out site): runs pooled, tables rebuilt.

    The settings of the first file are kept; held-out sites, seeds, encoders and aggregators are the union.
    """
    parts = [json.loads(Path(p).read_text()) for p in paths]
    res = {**parts[0], "merged_from": [str(p) for p in paths]}
    union = lambda key: list(dict.fromkeys(x for part in parts for x in part[key]))  # noqa: E731
    res["holdout"] = [h for h in SITES if h in union("holdout")]
    res["seeds"], res["encoders"], res["aggregators"] = sorted(union("seeds")), union("encoders"), union("aggregators")
    res["runs"] = [r for part in parts for r in part["runs"]]
    res["embedding"] = {k: v for part in parts for k, v in part["embedding"].items()}
    res["failures"] = [f for part in parts for f in part["failures"]]
    res["paired"] = [q for part in parts for q in part.get("paired", [])]
    res["seconds"] = [part["seconds"] for part in parts]
    res["cpu_seconds"] = [part["cpu_seconds"] for part in parts]
    res["summary"] = summarise(res["runs"])
    res["cost"] = cost_of(res["runs"], res["encoders"], res["aggregators"])
    return res


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.data.splits import cap_per_group
    from medwss.io.atomic import atomic_path
    from medwss.mil.slice_bags import build_slice_bags
    from medwss.runinfo import versions, write_results

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/real"), help="folder with mri/lgg/manifest.csv")
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--holdout", nargs="+", default=["CS"], choices=SITES, help="sites held out, one rotation each")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoders", nargs="+", default=["stats", "cnn"], choices=["stats", "cnn", "ssl"])
    ap.add_argument("--aggregators", nargs="+", default=AGGREGATORS)
    ap.add_argument("--insight-kwargs", type=json.loads, default={},
                    help="JSON of INSIGHT options, over those of configs/mil_insight.yaml")  # fmt: skip
    ap.add_argument("--lr", type=float, help="learning rate of every aggregator (default: configs/mil_insight.yaml's)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--heat-norm", choices=["none", "minmax"], default="none",
                    help="minmax: every trained heatmap rescaled to [0, 1] per slice before thresholding")  # fmt: skip
    ap.add_argument("--val-only", action="store_true",
                    help="score the val patients only (to choose settings; no test or held-out-site figures)")  # fmt: skip
    ap.add_argument("--tile", type=int, default=16)
    ap.add_argument("--max-train-bags", type=int, default=240)
    ap.add_argument("--max-val-bags", type=int, default=120)
    ap.add_argument("--max-cases", type=int, help="at most this many cases per site and split")
    ap.add_argument("--ssl-epochs", type=int, default=3)
    ap.add_argument("--ssl-tiles", type=int, default=6000)
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the CIs")
    ap.add_argument("--tag", default="", help="suffix of the results' name (mil_lgg<tag>.json)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--cache", type=Path, help="folder for the embedded bags (reused by later runs; own files only)")
    ap.add_argument("--merge", nargs="+", type=Path, help="merge these result JSONs into --out/mil_lgg<tag>.* and stop")
    args = ap.parse_args(argv)
    if args.merge:
        missing = [p for p in args.merge if not p.is_file()]
        if missing:
            print(f"{missing[0]}: result file not found", file=sys.stderr)
            return 2
        res = merge(args.merge)
        write_results(args.out, "mil_lgg" + args.tag, res, to_markdown(res))
        return 0
    if args.quick:
        args.seeds, args.epochs, args.encoders, args.tile = [0], 2, ["stats"], 32
        args.aggregators = ["insight", "abmil", "max"]
        args.max_cases, args.max_train_bags, args.max_val_bags = args.max_cases or 1, 40, 30
        args.n_boot = 200
    manifest = args.data / "mri" / "lgg" / "manifest.csv"
    if not manifest.is_file():
        print(f"{manifest}: LGG manifest not found (pass --data, a folder with mri/lgg/manifest.csv)", file=sys.stderr)
        return 2
    shipped_kwargs, shipped_lr = shipped_insight()
    insight_kwargs, lr = {**shipped_kwargs, **args.insight_kwargs}, shipped_lr if args.lr is None else args.lr
    t0, cpu0 = time.perf_counter(), time.process_time()
    cases = cap_per_group(load_manifest(manifest).cases, args.max_cases)
    print(f"{len(cases)} cases from {manifest}", flush=True)
    bags_of: dict[str, list] = {}
    embedding: dict[str, dict] = {}
    failures: list[dict] = []
    for enc_name in [e for e in args.encoders if e != "ssl"]:
        cached = args.cache / f"{enc_name}_t{args.tile}_c{args.max_cases}.pkl" if args.cache else None
        if cached is not None and cached.is_file():  # bags embedded by an earlier process (same settings)
            bags, fails, embedding[enc_name] = pickle.loads(cached.read_bytes())
        else:
            t1 = time.perf_counter()
            enc = make_encoder(enc_name)
            bags, fails = build_slice_bags(cases, enc, seed=0, channels=CHANNELS, tile=args.tile)
            n_tiles = sum(len(b.item.bag) for b in bags)
            embedding[enc_name] = {"seconds": time.perf_counter() - t1, "tiles": n_tiles, "bags": len(bags),
                                   "ms_per_tile": 1000 * (time.perf_counter() - t1) / max(1, n_tiles),
                                   "dim": int(enc.embed_dim)}  # fmt: skip
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cached) as tmp_file:
                    tmp_file.write_bytes(pickle.dumps((bags, fails, embedding[enc_name])))
        n_tiles = embedding[enc_name]["tiles"]
        failures += [{"encoder": enc_name, **f} for f in fails]
        bags_of[enc_name] = bags
        print(f"{enc_name}: {len(bags)} bags, {n_tiles} tiles, {embedding[enc_name]['seconds']:.0f} s", flush=True)
    runs: list[dict] = []
    pairs: list[dict] = []
    ssl_records: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for h in args.holdout:
            train_sites = [s for s in SITES if s != h]
            per_enc = dict(bags_of)
            if "ssl" in args.encoders:
                pre_cases = [c for c in cases if c.site in train_sites and c.split == "train"]
                enc, ssl_records[h] = pretrain_ssl(pre_cases, args.ssl_epochs, args.ssl_tiles, args.tile)
                t1 = time.perf_counter()
                per_enc["ssl"], fails = build_slice_bags(cases, enc, seed=0, channels=CHANNELS, tile=args.tile)
                n_tiles = sum(len(b.item.bag) for b in per_enc["ssl"])
                embedding[f"ssl (held out {h})"] = {"seconds": time.perf_counter() - t1, "tiles": n_tiles,
                    "bags": len(per_enc["ssl"]), "ms_per_tile": 1000 * (time.perf_counter() - t1) / max(1, n_tiles),
                    "dim": int(enc.embed_dim), "pretrain": ssl_records[h]}  # fmt: skip
                failures += [{"encoder": "ssl", **f} for f in fails]
                print(f"ssl (held out {h}): pretrained {ssl_records[h]['seconds']:.0f} s", flush=True)
            for enc_name in args.encoders:
                bags = per_enc[enc_name]
                data = {"train": _subset(_pick(bags, train_sites, "train"), args.max_train_bags, 0),
                        "val": _subset(_pick(bags, train_sites, "val"), args.max_val_bags, 1)}  # fmt: skip
                groups = {} if args.val_only else groups_of(bags, h)
                if not data["train"] or not data["val"]:
                    failures.append(
                        {"encoder": enc_name, "case_id": "*", "error": f"no train/val bags for holdout {h}"}
                    )
                    continue
                ref = run_reference(data, groups, 0, args.n_boot)
                preds = {(h, enc_name, REFERENCE, 0): ref.pop("_preds")}
                runs.append({"holdout": h, "encoder": enc_name, "aggregator": REFERENCE, "seed": 0, **ref})
                for agg in args.aggregators:
                    kw = dict(insight_kwargs) if agg == "insight" else dict(EXTRA_KWARGS.get(agg, {}))
                    for seed in args.seeds:
                        work = Path(tmp) / f"{h}_{enc_name}_{agg}_{seed}"
                        r = run_one(agg, kw, seed, data, groups, args.epochs, work, args.n_boot, lr, args.heat_norm)
                        preds[(h, enc_name, agg, seed)] = r.pop("_preds")
                        runs.append({"holdout": h, "encoder": enc_name, "aggregator": agg, "seed": seed,
                                     "aggregator_kwargs": kw, **r})  # fmt: skip
                        g_in, g_out = r["groups"].get("in-site", {}), r["groups"].get(f"held-out:{h}", {})
                        g_val = r["groups"]["val"]
                        print(f"[{time.perf_counter() - t0:.0f}s] held out {h} {enc_name} {agg} seed {seed}: "
                              f"val AUC {g_val['auc']:.3f} Dice {g_val['dice']:.3f} ep {r['best_epoch']}/{r['epochs_run']} | "
                              f"in-site AUC {g_in.get('auc', np.nan):.3f} Dice {g_in.get('dice', np.nan):.3f} | "
                              f"{h} AUC {g_out.get('auc', np.nan):.3f} Dice {g_out.get('dice', np.nan):.3f} "
                              f"({r['train_seconds']:.0f} s)", flush=True)  # fmt: skip
                mine = [r for r in runs if (r["holdout"], r["encoder"]) == (h, enc_name)]
                pairs += paired_rows(mine, preds, groups, args.n_boot)
    cost = cost_of(runs, args.encoders, args.aggregators)
    res = {"quick": args.quick, "val_only": args.val_only, "data": str(manifest), "holdout": args.holdout, "seeds": args.seeds,
           "encoders": args.encoders, "aggregators": args.aggregators, "insight_kwargs": insight_kwargs,
           "lr": lr, "epochs": args.epochs, "heat_norm": args.heat_norm, "tile": args.tile, "max_train_bags": args.max_train_bags,
           "max_val_bags": args.max_val_bags, "n_boot": args.n_boot, "max_cases": args.max_cases, "n_cases": len(cases),
           "embedding": embedding, "runs": runs, "paired": pairs, "summary": summarise(runs), "cost": cost, "failures": failures,
           "seconds": time.perf_counter() - t0,
           "cpu_seconds": time.process_time() - cpu0, "versions": versions()}  # fmt: skip
    name = ("mil_lgg_quick" if args.quick else "mil_lgg") + ("_val" if args.val_only else "") + args.tag
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
