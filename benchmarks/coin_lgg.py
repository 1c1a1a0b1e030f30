"""COIN on real brain MRI (LGG): tumour masks from slice labels, against attribution baselines.

Usage:
    python benchmarks/coin_lgg.py [--data DIR] [--quick] [--holdout CS] [--seed 0 | --seeds 0,1,2] [--iterations N]
        [--clf-epochs N] [--size PX] [--scale max|range] [--max-eval N] [--rise-masks N] [--tag TAG]
    python benchmarks/coin_lgg.py --merge A.json B.json ... --tag TAG   (pool per-seed results, no training)

Data: ``DIR/mri/lgg/manifest.csv`` (default DIR ../shared/data/real): 95 patients from three TCGA
institutions (CS 16, DU 45, HT 34), FLAIR slices at 128×128, manual masks of the FLAIR abnormality.

Slices: the COIN slicer (`medwss.counterfactual.slices.manifest_slices`, the one `medwss coin` uses)
with the slicing of ``configs/coin_lgg_classifier.yaml`` (FLAIR, whole slices, window 0–255 → [-1, 1],
resized to 64×64); which slices a case contributes is `medwss.mil.slice_bags.choose_slices`, as in
benchmarks/mil_lgg.py: slices with ≥ 10 % brain (FLAIR > 20/255), all tumour slices and as many
tumour-free ones (seeded). A slice is "tumour" when the mask touches it.

Protocol (one rotation, the ``--holdout`` institution held out, default CS): the classifier
(``configs/coin_lgg_classifier.yaml``) and COIN (``configs/coin_lgg.yaml``) train on the train-split
patients of the two other institutions; every threshold is chosen on their val-split patients;
scores on their test-split patients (``in-site``) and on every patient of the held-out institution
(``held-out site``). Splits: the manifest's patient-level split (`medwss.data.splits.split_cases`
makes one when the manifest has none). Every method is scored on the same tumour slices (with a
non-empty 64-px mask), masks only where the classifier says "tumour" (a missed slice scores 0),
threshold = the one of 0.05, 0.10, ..., 0.95 with the best mean IoU on the val tumour slices.

Methods: ``coin`` (|x − x_cf| scaled by its maximum; also ``coin@0.25``, the paper's fixed
threshold), Grad-CAM, LayerCAM, ScoreCAM, RISE (Petsiuk et al.: N masks of an s×s grid, keep
probability 0.5; its fill, 0 or -1, chosen on val as well), occlusion, and two training-free counterfactual baselines: ``cf_blur``
(x_cf = x blurred with a Gaussian of σ = 4 px) and ``cf_mean_normal`` (x_cf = the pixel-wise mean
of the training sites' normal slices). IoU and Dice: mean over slices, 95 % CIs from a bootstrap
over *patients* (`medwss.eval.metrics.bootstrap_ci` on per-patient sums). Validity: the share of the
counterfactuals of slices called "tumour" that the classifier calls normal (p < 0.5), and the
stricter `medwss.counterfactual.metrics.validity` (p > 0.8 → drop > 0.8). Realism: Fréchet distance
on the classifier's pooled last-stage features between counterfactuals and real normal slices of
the same patients (reference rows: real tumour slices vs real normal slices).

Cut to fit ~6 CPU minutes per seed (2 shared cores): 64-px slices (source 128), FLAIR only, a small ResNet
classifier (8–64 channels, 40 epochs), the config's 1000 COIN iterations (the paper trains far longer;
epochs, iterations and λ_rec 30 were chosen on the val patients), one holdout rotation; evaluation on at most ``--max-eval`` tumour slices per group
(seeded subset, default 60; val 40) and RISE with ``--rise-masks`` masks (default 400, the paper
4000). ``--quick``: one case per institution and split, 1 classifier epoch, 4 COIN iterations,
4 tumour slices per group, 16 RISE masks (the smoke test). Results: benchmarks/results/coin_lgg[_quick][TAG].json and .md.

Seeds (``--seeds``): one run per seed (``TAG_sN``, with every slice's IoU and Dice), then ``TAG`` pools them:
per method and group the mean over all (seed, slice) pairs with a 95 % CI resampling patients (a patient
carries its slices of every seed), the IoU on the slices the classifier calls tumour only, and the paired
difference COIN − best baseline (the baseline with the highest pooled IoU in that group, so the comparison
is the hardest one for COIN). Diagnostics per method (on detected slices): share of the map's mass inside
the true mask, share of slices whose map peak lies inside it, and the IoU with each slice's own best
threshold (how much a per-slice threshold could add).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SITES = ("CS", "DU", "HT")
ATTRIBUTIONS = ("gradcam", "layercam", "scorecam", "rise", "occlusion")
CF_BASELINES = ("cf_blur", "cf_mean_normal")
FG_THRESHOLD = 20 / 255  # brain on FLAIR, as `medwss.mil.slice_bags.foreground`


def with_splits(cases: list, train_sites: list[str], seed: int = 0) -> list:
    """The cases with a patient-level split: the manifest's, or `split_cases` (60/20/20 per site) when absent."""
    import dataclasses

    from medwss.data.splits import split_cases

    if all(c.split in ("train", "val", "test") for c in cases):
        return cases
    split = split_cases(cases, seed=seed, stratify=("site",), sites=train_sites)
    return [dataclasses.replace(c, split=split[c.case_id]) for c in cases]


def choose(sl: Any, seed: int) -> np.ndarray:
    """Indices of the slices used: per case `choose_slices` (brain ≥ 10 %, all tumour slices, as many normal)."""
    from medwss.mil.slice_bags import choose_slices

    ids = np.array(sl.case_ids)
    keep = []
    for i, cid in enumerate(dict.fromkeys(sl.case_ids)):
        idx = np.flatnonzero(ids == cid)
        fg = ((sl.images[idx, 0] + 1) / 2 > FG_THRESHOLD).transpose(1, 2, 0)  # (H, W, n)
        lab = np.broadcast_to(sl.labels[idx].astype(bool)[None, None], fg.shape)
        chosen, _ = choose_slices(lab, fg, np.random.default_rng([seed, i]))
        keep.append(idx[chosen])
    return np.concatenate(keep) if keep else np.zeros(0, int)


def cap(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def blur_cf(x: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(s, (0, sigma, sigma), mode="nearest") for s in x]).astype(np.float32)


def cluster_ci(values: np.ndarray, patients: list[str], n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean over slices with a 95 % interval from resampling patients (per-patient sums and counts)."""
    from medwss.eval.metrics import bootstrap_ci

    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    ids = sorted(set(patients))
    pos = {p: i for i, p in enumerate(ids)}
    agg = np.zeros((len(ids), 2))
    for v, p in zip(values, patients, strict=True):
        agg[pos[p]] += (float(v), 1.0)
    return bootstrap_ci(
        lambda _y, a: float(a[:, 0].sum() / a[:, 1].sum()),
        np.zeros(len(ids)), agg, n_boot=n_boot, seed=seed, stratify=False,
    )  # fmt: skip


def configs(quick: bool, args: argparse.Namespace) -> tuple:
    """Classifier settings, slicing spec and COIN settings from the shipped LGG configs (with overrides)."""
    from medwss.counterfactual.config import read_classifier_file, read_coin_file

    clf_cfg, spec, _ = read_classifier_file(ROOT / "configs" / "coin_lgg_classifier.yaml")
    coin_cfg, _ = read_coin_file(ROOT / "configs" / "coin_lgg.yaml")
    clf_over: dict[str, Any] = {"seed": args.seed, "device": "cpu"}
    coin_over: dict[str, Any] = {"seed": args.seed, "device": "cpu"}
    if args.iterations:
        coin_over["iterations"] = args.iterations
    if args.clf_epochs:
        clf_over["epochs"] = args.clf_epochs
    if args.size:
        import dataclasses

        spec = dataclasses.replace(spec, size=args.size)
    if quick:
        clf_over["epochs"] = args.clf_epochs or 1
        coin_over |= {"iterations": args.iterations or 4, "eval_every": 2}
    return clf_cfg.model_copy(update=clf_over), spec, coin_cfg.model_copy(update=coin_over)


def method_maps(
    name: str, clf: Any, x: np.ndarray, x_cf: dict[str, np.ndarray], args: argparse.Namespace, fill: float = 0.0
) -> np.ndarray:
    from medwss.counterfactual.attribution import attribute
    from medwss.counterfactual.segment import difference_maps

    if name in x_cf:
        return difference_maps(x, x_cf[name], args.scale)
    kw: dict[str, Any] = {}
    if name == "rise":
        kw = {"n_masks": args.rise_masks, "cells": args.rise_cells, "baseline": fill}
    return attribute(name, clf, x, **kw)


def map_diagnostics(maps: np.ndarray, gt: np.ndarray, dec: np.ndarray) -> dict[str, float]:
    """On the slices called tumour: share of the map's mass inside the true mask, share of slices whose peak lies
    inside it, and the mean IoU with each slice's own best threshold (an upper bound on what thresholding gives)."""
    from medwss.counterfactual.evaluate import THRESHOLDS
    from medwss.eval.overlap import iou_per_slice

    if not dec.any():
        return {"mass_in": float("nan"), "peak_in": float("nan"), "iou_oracle_thr": float("nan")}
    m, g = maps[dec].reshape(int(dec.sum()), -1), gt[dec].reshape(int(dec.sum()), -1).astype(bool)
    mass = (m * g).sum(1) / np.maximum(m.sum(1), 1e-8)
    peak = g[np.arange(len(m)), m.argmax(1)]
    best = np.max([iou_per_slice(maps[dec] >= t, gt[dec]) for t in THRESHOLDS], axis=0)
    return {"mass_in": float(mass.mean()), "peak_in": float(peak.mean()), "iou_oracle_thr": float(best.mean())}


RISE_FILLS = (0.0, -1.0)
"""RISE fills tried on val: 0 of the model's input (the reference code) and -1 (black)."""


def run(args: argparse.Namespace) -> dict:
    import torch

    from medwss.counterfactual.classifier import penultimate_features, predict_proba, train_classifier
    from medwss.counterfactual.evaluate import sweep_threshold
    from medwss.counterfactual.metrics import frechet_distance, validity
    from medwss.counterfactual.segment import MaskSettings, threshold_maps
    from medwss.counterfactual.slices import manifest_slices
    from medwss.counterfactual.train import counterfactuals, train_coin
    from medwss.data.manifest import load_manifest
    from medwss.data.splits import cap_per_group
    from medwss.eval.metrics import roc_auc
    from medwss.eval.overlap import dice_per_slice, iou_per_slice

    torch.manual_seed(args.seed)
    manifest = args.data / "mri" / "lgg" / "manifest.csv"
    train_sites = [s for s in SITES if s != args.holdout]
    cases = with_splits(cap_per_group(list(load_manifest(manifest).cases), args.max_cases), train_sites, args.seed)
    clf_cfg, spec, coin_cfg = configs(args.quick, args)
    t0 = time.perf_counter()
    sl, _, failures = manifest_slices(cases, spec, progress=False)
    sl = sl.subset(choose(sl, args.seed))
    site = {c.case_id: c.site for c in cases}
    split = {c.case_id: c.split for c in cases}
    patient = {c.case_id: c.patient_id for c in cases}
    s_site = np.array([site[c] for c in sl.case_ids])
    s_split = np.array([split[c] for c in sl.case_ids])
    in_train_sites = np.isin(s_site, train_sites)
    part = {
        "train": np.flatnonzero(in_train_sites & (s_split == "train")),
        "val": np.flatnonzero(in_train_sites & (s_split == "val")),
        "in-site": np.flatnonzero(in_train_sites & (s_split == "test")),
        f"held-out:{args.holdout}": np.flatnonzero(s_site == args.holdout),
    }
    times = {"slices_s": time.perf_counter() - t0}
    print(f"{len(cases)} cases, {len(sl)} slices ({int(sl.labels.sum())} tumour); "
          + ", ".join(f"{k} {len(v)}" for k, v in part.items()), flush=True)  # fmt: skip
    tr = sl.subset(part["train"])
    t = time.perf_counter()
    clf, clf_loss = train_classifier(tr.images, tr.labels, clf_cfg, progress=False)
    times["classifier_s"] = time.perf_counter() - t
    t = time.perf_counter()
    G, history = train_coin(clf, tr.images, coin_cfg, progress=False, labels=tr.labels)
    times["coin_s"] = time.perf_counter() - t
    print(f"[{time.perf_counter() - t0:.0f}s] classifier {times['classifier_s']:.0f} s, COIN {times['coin_s']:.0f} s",
          flush=True)  # fmt: skip
    mean_normal = tr.images[tr.labels == 0].mean(0, keepdims=True)  # (1, 1, S, S)

    # per group: classifier AUC, then the tumour slices that every method is scored on
    groups: dict[str, dict] = {}
    for name, idx in part.items():
        if name == "train" or not len(idx):
            continue
        g = sl.subset(idx)
        p = predict_proba(clf, g.images)
        tum = np.flatnonzero((g.labels == 1) & g.masks.any(axis=(1, 2)))
        ev = cap(tum, args.max_eval_val if name == "val" else args.max_eval, args.seed + 1)
        x, dec = g.images[ev], (p[ev] >= 0.5)
        x_cf = {
            "coin": counterfactuals(G, x, dec.astype(np.int64)),
            "cf_blur": blur_cf(x),
            "cf_mean_normal": np.broadcast_to(mean_normal, x.shape).astype(np.float32),
        }
        rec: dict[str, Any] = {
            "n_slices": len(g), "n_tumour": int(g.labels.sum()), "n_eval": len(ev),
            "n_patients": len({patient[c] for c in g.case_ids}), "n_eval_patients": len({g.case_ids[i] for i in ev}),
            "auc": roc_auc(g.labels, p) if len(set(g.labels.tolist())) == 2 else float("nan"),
            "detected": float(dec.mean()) if len(dec) else float("nan"),
        }  # fmt: skip
        normal = g.images[g.labels == 0]
        f_norm = penultimate_features(clf, normal)
        f_tum = penultimate_features(clf, x[dec])
        rec["frechet_tumour_normal"] = frechet_distance(f_tum, f_norm)
        for cf_name, xc in x_cf.items():
            p_cf = predict_proba(clf, xc[dec]) if dec.any() else np.zeros(0)
            rec[f"flip_{cf_name}"] = float((p_cf < 0.5).mean()) if len(p_cf) else float("nan")
            rec[f"validity_{cf_name}"] = validity(p[ev][dec], p_cf) if len(p_cf) else float("nan")
            rec[f"frechet_{cf_name}"] = frechet_distance(penultimate_features(clf, xc[dec]), f_norm)
        groups[name] = {"rec": rec, "x": x, "dec": dec, "gt": g.masks[ev], "cf": x_cf,
                        "patients": [patient[g.case_ids[i]] for i in ev]}  # fmt: skip

    methods = ["coin", *ATTRIBUTIONS, *CF_BASELINES]
    results: dict[str, dict] = {}
    per_slice: dict[str, Any] = {
        "patients": {k: v["patients"] for k, v in groups.items()},
        "detected": {k: v["dec"].astype(int).tolist() for k, v in groups.items()},
        "methods": {},
    }
    t = time.perf_counter()
    for m in methods:
        tm = time.perf_counter()
        fill, extra = 0.0, {}
        if m == "rise" and "val" in groups:  # the fill is chosen on val too (favours RISE)
            v = groups["val"]
            tried = {f: sweep_threshold(method_maps(m, clf, v["x"], v["cf"], args, f) * v["dec"][:, None, None],
                                        v["gt"]) for f in RISE_FILLS}  # fmt: skip
            fill = max(tried, key=lambda f: tried[f][1][tried[f][0]])
            extra = {"fill": fill, "val_iou_by_fill": {str(f): tried[f][1][tried[f][0]] for f in tried}}
        maps = {k: method_maps(m, clf, v["x"], v["cf"], args, fill) * v["dec"][:, None, None]
                for k, v in groups.items()}  # fmt: skip
        thr = sweep_threshold(maps["val"], groups["val"]["gt"])[0] if "val" in maps else 0.25
        rules = {m: thr, **({"coin@0.25": 0.25} if m == "coin" else {})}
        for label, th in rules.items():
            row: dict[str, Any] = {"threshold": th, "seconds": 0.0}
            for k, v in groups.items():
                pred = threshold_maps(maps[k], MaskSettings(threshold=th))
                ious, dices = iou_per_slice(pred, v["gt"]), dice_per_slice(pred, v["gt"])
                per_slice["methods"].setdefault(label, {})[k] = {
                    "iou": np.round(ious, 5).tolist(), "dice": np.round(dices, 5).tolist()
                }  # fmt: skip
                i_ci, d_ci = (cluster_ci(a, v["patients"], args.n_boot, args.seed) for a in (ious, dices))
                row[k] = {"iou": i_ci[0], "iou_lo": i_ci[1], "iou_hi": i_ci[2],
                          "dice": d_ci[0], "dice_lo": d_ci[1], "dice_hi": d_ci[2]}  # fmt: skip
            results[label] = row | extra
        results[m]["seconds"] = time.perf_counter() - tm
        results[m]["diagnostics"] = {k: map_diagnostics(maps[k], v["gt"], v["dec"]) for k, v in groups.items()}
        held = results[m].get(f"held-out:{args.holdout}", {})
        print(f"[{time.perf_counter() - t0:.0f}s] {m}: threshold {thr:.2f}, in-site IoU "
              f"{results[m].get('in-site', {}).get('iou', np.nan):.3f}, held-out IoU {held.get('iou', np.nan):.3f}",
              flush=True)  # fmt: skip
    times["methods_s"] = time.perf_counter() - t
    return {
        "data": str(manifest), "holdout": args.holdout, "train_sites": train_sites, "seed": args.seed,
        "n_cases": len(cases), "spec": spec.as_dict(), "classifier_config": clf_cfg.model_dump(mode="json"),
        "coin_config": coin_cfg.model_dump(mode="json"), "classifier_loss": clf_loss,
        "coin_history": history[-1:] if history else [], "rise": {"n_masks": args.rise_masks, "cells": args.rise_cells},
        "max_eval": args.max_eval, "max_eval_val": args.max_eval_val, "n_boot": args.n_boot,
        "groups": {k: v["rec"] for k, v in groups.items()}, "methods": results, "times": times,
        "failures": failures, "scale": args.scale, "per_slice": per_slice,
    }  # fmt: skip


def _cell(r: dict | None, m: str) -> str:
    if not r or not np.isfinite(r.get(m, np.nan)):
        return "—"
    return f"{r[m]:.3f} [{r[m + '_lo']:.2f}, {r[m + '_hi']:.2f}]"


def to_markdown(res: dict) -> str:
    h = f"held-out:{res['holdout']}"
    g = res["groups"]
    ins, out = g.get("in-site", {}), g.get(h, {})
    lines = [
        f"COIN on real brain MRI (LGG, FLAIR, 64 px){' — quick' if res.get('quick') else ''}: trained on "
        f"{' + '.join(res['train_sites'])} (train patients), thresholds on their val patients; in-site = their test "
        f"patients ({ins.get('n_eval', 0)} tumour slices, {ins.get('n_eval_patients', 0)} patients), held-out site "
        f"{res['holdout']} ({out.get('n_eval', 0)} tumour slices, {out.get('n_eval_patients', 0)} patients). "
        "Mean over tumour slices [95 % CI, bootstrap over patients]; a slice the classifier misses scores 0.",
        "",
        "| method | threshold (val) | in-site IoU | in-site Dice | held-out IoU | held-out Dice | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, r in res["methods"].items():
        lines.append(
            f"| {m} | {r['threshold']:.2f} | {_cell(r.get('in-site'), 'iou')} | {_cell(r.get('in-site'), 'dice')} | "
            f"{_cell(r.get(h), 'iou')} | {_cell(r.get(h), 'dice')} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "Classifier and counterfactuals (per group): slice AUC, share of tumour slices called tumour; flip = share "
        "of their counterfactuals called normal (p < 0.5); validity = p > 0.8 → drop > 0.8; Fréchet distance to "
        "real normal slices on the classifier's features (reference: real tumour slices).",
        "",
        "| group | AUC | detected | flip coin / blur / mean | validity coin | Fréchet coin | Fréchet blur | "
        "Fréchet mean | Fréchet tumour (ref) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in g.items():
        lines.append(
            f"| {k} | {r['auc']:.3f} | {r['detected']:.2f} | {r['flip_coin']:.2f} / {r['flip_cf_blur']:.2f} / "
            f"{r['flip_cf_mean_normal']:.2f} | {r['validity_coin']:.2f} | {r['frechet_coin']:.2f} | "
            f"{r['frechet_cf_blur']:.2f} | {r['frechet_cf_mean_normal']:.2f} | {r['frechet_tumour_normal']:.2f} |"
        )
    t = res["times"]
    lines += [
        "",
        f"COIN {res['coin_config']['iterations']} iterations; RISE {res['rise']['n_masks']} masks on a "
        f"{res['rise']['cells']}×{res['rise']['cells']} grid. Time: classifier {t['classifier_s']:.0f} s, COIN "
        f"{t['coin_s']:.0f} s, methods {t['methods_s']:.0f} s; total {res['seconds'] / 60:.1f} min, CPU "
        f"{res['cpu_seconds'] / 60:.1f} min (1 thread, shared machine).",
        "",
    ]
    return "\n".join(lines)


BASELINES = (*ATTRIBUTIONS, *CF_BASELINES)


def _num(v: Any) -> float:
    """A JSON number (NaN is stored as null)."""
    return float("nan") if v is None else float(v)


def merge(runs: list[dict], n_boot: int = 1000) -> dict:
    """Seeds pooled: per method and group the mean over every (seed, slice), 95 % CI resampling patients
    (a patient carries its slices of every seed); IoU on detected slices only; COIN − best baseline paired."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "methods": {}, "paired": {}, "groups": {}}
    groups = list(runs[0]["groups"])
    pooled: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for label in runs[0]["per_slice"]["methods"]:
        row: dict[str, Any] = {"thresholds": [r["methods"][label]["threshold"] for r in runs]}
        for g in groups:
            pats = [p for r in runs for p in r["per_slice"]["patients"][g]]
            det = np.array([d for r in runs for d in r["per_slice"]["detected"][g]], bool)
            vals = {
                m: np.array([v for r in runs for v in r["per_slice"]["methods"][label][g][m]]) for m in ("iou", "dice")
            }
            pooled.setdefault(label, {})[g] = vals["iou"]
            cell: dict[str, Any] = {}
            for m, v in vals.items():
                cell[m], cell[m + "_lo"], cell[m + "_hi"] = cluster_ci(v, pats, n_boot, 0)
            cell["iou_seeds"] = [_num(r["methods"][label][g]["iou"]) for r in runs]
            cell["iou_detected"] = float(vals["iou"][det].mean()) if det.any() else float("nan")
            diag = [r["methods"][label].get("diagnostics", {}).get(g, {}) for r in runs]
            for key in ("mass_in", "peak_in", "iou_oracle_thr"):
                cell[key] = float(np.nanmean([_num(d.get(key)) for d in diag])) if diag[0] else float("nan")
            row[g] = cell
        out["methods"][label] = row
    for g in groups:
        if g == "val":
            continue
        pats = [p for r in runs for p in r["per_slice"]["patients"][g]]
        best = max(BASELINES, key=lambda m: out["methods"][m][g]["iou"])
        diffs = {}
        for m in BASELINES:
            est, lo, hi = cluster_ci(pooled["coin"][g] - pooled[m][g], pats, n_boot, 0)
            diffs[m] = {"diff": est, "lo": lo, "hi": hi}
        out["paired"][g] = {"best": best, **diffs[best], "all": diffs}
    for g in groups:
        vals = {k: np.array([_num(r["groups"][g][k]) for r in runs]) for k in runs[0]["groups"][g]}
        out["groups"][g] = {k: float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")
                            for k, v in vals.items()}  # fmt: skip
        out["groups"][g] |= {k + "_sd": float(np.std(vals[k])) for k in ("auc", "detected")}
    return out


def merged_markdown(runs: list[dict], m: dict) -> str:
    r0 = runs[0]
    h = f"held-out:{r0['holdout']}"
    g = m["groups"]
    size = r0["spec"]["size"]
    lines = [
        f"COIN on real brain MRI (LGG, FLAIR, {size} px), seeds {', '.join(map(str, m['seeds']))} pooled: trained on "
        f"{' + '.join(r0['train_sites'])} (train patients), thresholds on their val patients (per seed); in-site = "
        f"their test patients ({g['in-site']['n_eval_patients']:.0f} patients, {g['in-site']['n_eval']:.0f} tumour "
        f"slices per seed), held-out site {r0['holdout']} ({g[h]['n_eval_patients']:.0f} patients, "
        f"{g[h]['n_eval']:.0f} per seed). Mean over seeds and tumour slices [95 % CI, bootstrap over patients]; a "
        "slice the classifier misses scores 0 (last columns: IoU on the slices it calls tumour only).",
        "",
        "| method | thresholds (val) | in-site IoU | in-site Dice | held-out IoU | held-out Dice | IoU per seed "
        "in-site / held-out | IoU detected only in-site / held-out |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for label, row in m["methods"].items():
        ins, out = row["in-site"], row[h]
        seeds = " ".join(f"{v:.3f}" for v in ins["iou_seeds"]) + " / " + " ".join(f"{v:.3f}" for v in out["iou_seeds"])
        lines.append(
            f"| {label} | {' '.join(f'{t:.2f}' for t in row['thresholds'])} | {_cell(ins, 'iou')} | "
            f"{_cell(ins, 'dice')} | {_cell(out, 'iou')} | {_cell(out, 'dice')} | {seeds} | "
            f"{ins['iou_detected']:.3f} / {out['iou_detected']:.3f} |"
        )
    lines += [
        "",
        "Diagnostics on the slices called tumour (mean over seeds; in-site / held-out): share of the map's mass "
        "inside the true mask, share of slices whose map peak lies inside it, IoU with each slice's own best "
        "threshold (upper bound of thresholding).",
        "",
        "| method | mass inside | peak inside | IoU, oracle threshold |",
        "|---|---:|---:|---:|",
    ]
    for label, row in m["methods"].items():
        if "@" in label:
            continue
        ins, out = row["in-site"], row[h]
        lines.append(
            f"| {label} | {ins['mass_in']:.2f} / {out['mass_in']:.2f} | {ins['peak_in']:.2f} / {out['peak_in']:.2f} | "
            f"{ins['iou_oracle_thr']:.3f} / {out['iou_oracle_thr']:.3f} |"
        )
    lines += ["", "Paired difference COIN − best baseline (IoU, same slices; 95 % CI resampling patients):", ""]
    for k, d in m["paired"].items():
        lines.append(f"- {k}: COIN − {d['best']} = {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]")
    lines += [
        "",
        "Classifier and counterfactuals (mean over seeds): slice AUC (± sd over seeds), share of tumour slices called "
        "tumour, flip = share of their counterfactuals called normal, validity = p > 0.8 → drop > 0.8, Fréchet "
        "distance to real normal slices (reference: real tumour slices).",
        "",
        "| group | AUC | detected | flip coin / blur / mean | validity coin | Fréchet coin | Fréchet blur | "
        "Fréchet mean | Fréchet tumour (ref) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in g.items():
        lines.append(
            f"| {k} | {r['auc']:.3f} ± {r['auc_sd']:.3f} | {r['detected']:.2f} ± {r['detected_sd']:.2f} | "
            f"{r['flip_coin']:.2f} / {r['flip_cf_blur']:.2f} / {r['flip_cf_mean_normal']:.2f} | {r['validity_coin']:.2f} | "
            f"{r['frechet_coin']:.2f} | {r['frechet_cf_blur']:.2f} | {r['frechet_cf_mean_normal']:.2f} | "
            f"{r['frechet_tumour_normal']:.2f} |"
        )
    c, k = r0["coin_config"], r0["classifier_config"]
    cpu = " ".join(f"{r['cpu_seconds'] / 60:.1f}" for r in runs)
    lines += [
        "",
        f"Classifier {k['epochs']} epochs (lr {k['lr']}); COIN {c['iterations']} iterations; difference maps scaled by "
        f"{r0['scale']}; RISE {r0['rise']['n_masks']} masks. CPU minutes per seed: {cpu} (1 thread, shared machine).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.runinfo import versions, write_results

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/real"), help="folder with mri/lgg/manifest.csv")
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--holdout", default="CS", choices=SITES, help="institution held out (default CS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", help="comma-separated seeds: one run each (TAG_sN), then the pooled table (TAG)")
    ap.add_argument("--merge", type=Path, nargs="+", help="pool these per-seed JSON files (no training) into TAG")
    ap.add_argument("--size", type=int, help="slice side in px (default: configs/coin_lgg_classifier.yaml)")
    ap.add_argument("--scale", default="max", choices=("max", "range"), help="difference-map scaling (counterfactuals)")
    ap.add_argument("--iterations", type=int, help="COIN iterations (default: configs/coin_lgg.yaml)")
    ap.add_argument("--clf-epochs", type=int, help="classifier epochs (default: configs/coin_lgg_classifier.yaml)")
    ap.add_argument("--max-cases", type=int, help="at most this many cases per institution and split")
    ap.add_argument("--max-eval", type=int, default=60, help="tumour slices scored per test group (seeded subset)")
    ap.add_argument("--max-eval-val", type=int, default=40, help="val tumour slices for the thresholds")
    ap.add_argument("--rise-masks", type=int, default=400, help="RISE masks (paper 4000)")
    ap.add_argument("--rise-cells", type=int, default=8, help="RISE grid (8×8 on 64 px: 8-px cells)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--tag", default="", help="suffix of the results' name")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_cases = args.max_cases or 1
        args.max_eval, args.max_eval_val, args.rise_masks, args.n_boot = 4, 4, 16, 100
    name = ("coin_lgg_quick" if args.quick else "coin_lgg") + args.tag
    if args.merge:
        runs = [json.loads(f.read_text()) for f in args.merge]
        merged = merge(runs, args.n_boot)
        write_results(
            args.out, name, {"merged": merged, "runs": [str(f) for f in args.merge]}, merged_markdown(runs, merged)
        )
        return 0
    manifest = args.data / "mri" / "lgg" / "manifest.csv"
    if not manifest.is_file():
        print(f"{manifest}: LGG manifest not found (pass --data, a folder with mri/lgg/manifest.csv)", file=sys.stderr)
        return 2
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = []
    for seed in seeds:
        args.seed = seed
        t0, cpu0 = time.perf_counter(), time.process_time()
        res = run(args)
        res |= {"quick": args.quick, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
                "versions": versions()}  # fmt: skip
        write_results(args.out, name + (f"_s{seed}" if args.seeds else ""), res, to_markdown(res))
        runs.append(res)
    if args.seeds:
        merged = merge(runs, args.n_boot)
        write_results(args.out, name, {"merged": merged, "runs": [f"{name}_s{s}.json" for s in seeds]},
                      merged_markdown(runs, merged))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
