"""COIN vs attribution baselines: synthetic tumours in the kidneys of a real CT, and phantom CT.

Usage:
    python benchmarks/coin_kidney.py [--quick] [--seeds 0 1] [--out benchmarks/results] [--work DIR]

Kidney setting (the paper's synthetic setting on real anatomy): the 23 kidney slices of
``example_ct_sm.nii.gz`` are augmented (flips, ±10° rotations, ±3 px shifts, intensity jitter, noise)
and about half get a blob tumour (random size, outline, ±50–120 HU contrast) inside a kidney.
Training, validation and test slices are drawn from three different seeds, so the test blobs and
augmentations are never seen in training or threshold choice. Phantom setting: `medwss.data.phantoms`
CT scans (tumour label 4, kidney cysts as confounders), axial slices through the kidneys, split by
patient (train / val / test); abnormal = the slice holds tumour voxels.

Per setting and seed: train the classifier, train COIN, then on the test slices: COIN masks at the
paper's threshold 0.25 and at the threshold chosen on validation, and Grad-CAM, LayerCAM, ScoreCAM,
RISE and occlusion masks at the threshold chosen on validation. Masks only on slices the classifier
calls abnormal (the same protocol for all). IoU is the mean over test slices with a tumour, pooled
over seeds, with a percentile bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "volumes"
METHODS = ("gradcam", "layercam", "scorecam", "rise", "occlusion")


def kidney_sets(seed: int, n_train: int, n_eval: int) -> tuple:
    from medwss.counterfactual.slices import SliceSpec
    from medwss.counterfactual.synth import load_kidney_source, make_kidney_slices
    from medwss.io.volumes import load_volume

    src = load_kidney_source(
        load_volume(REAL / "example_ct_sm.nii.gz"), load_volume(REAL / "example_seg.nii.gz"), SliceSpec()
    )
    base = 1000 * (seed + 1)
    return tuple(make_kidney_slices(src, n, base + k) for k, n in ((1, n_train), (2, n_eval), (3, n_eval)))


def phantom_sets(seed: int, n_cases: int, work: Path, scale: float = 1.0) -> tuple:
    from medwss.counterfactual.slices import SliceSpec, manifest_slices
    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms import generate

    path = generate("ct", work / f"phantom_seed{seed}", n=n_cases, seed=100 + seed, scale=scale, progress=False)
    cases = list(load_manifest(path))
    spec = SliceSpec()  # kidney_tumour labels: kidney 2, 3; tumour 4
    return tuple(manifest_slices([c for c in cases if c.split == s], spec, False)[0] for s in ("train", "val", "test"))


def _config(model: type, name: str, **override: object):  # noqa: ANN202
    """The shipped YAML config with the benchmark's overrides."""
    from medwss.config import load_config

    return load_config(ROOT / "configs" / name, model).model_copy(update=override)


def run_one(setting: str, seed: int, sets: tuple, args: argparse.Namespace) -> dict:
    from medwss.counterfactual.attribution import attribute
    from medwss.counterfactual.classifier import ClassifierConfig, penultimate_features, predict_proba, train_classifier
    from medwss.counterfactual.evaluate import sweep_threshold
    from medwss.counterfactual.metrics import frechet_distance, mmd_rbf, validity
    from medwss.counterfactual.segment import MaskSettings, coin_masks, threshold_maps
    from medwss.counterfactual.train import CoinConfig, counterfactuals, train_coin
    from medwss.eval.metrics import roc_auc
    from medwss.eval.overlap import iou_per_slice

    train, val, test = sets
    LARGEST = MaskSettings(largest=True)  # noqa: N806
    times: dict[str, float] = {}
    t = time.perf_counter()
    clf_cfg = _config(ClassifierConfig, "coin_classifier.yaml", epochs=args.clf_epochs, seed=seed)
    clf, _ = train_classifier(train.images, train.labels, clf_cfg, False)
    times["classifier_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cfg = _config(CoinConfig, "coin.yaml", iterations=args.iterations, seed=seed)
    G, _ = train_coin(clf, train.images, cfg, False, train.labels)
    times["coin_s"] = time.perf_counter() - t
    res: dict = {"setting": setting, "seed": seed, "n_train": len(train), "n_test_tumour": int(test.labels.sum())}
    out_iou: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    for name, sl in (("val", val), ("test", test)):
        p = predict_proba(clf, sl.images)
        dec = (p >= 0.5).astype(np.int64)
        x_cf = counterfactuals(G, sl.images, dec)
        maps, _ = coin_masks(sl.images, x_cf, dec, MaskSettings())
        tum = sl.labels == 1
        if name == "val":
            thresholds["coin@0.25"] = 0.25
            thresholds["coin@val"], _ = sweep_threshold(maps * dec[:, None, None], sl.masks)
            thresholds["coin@val+largest"], _ = sweep_threshold(maps * dec[:, None, None], sl.masks, LARGEST)
            continue
        res["auc"] = roc_auc(sl.labels, p) if len(set(sl.labels.tolist())) == 2 else float("nan")
        res["validity"] = validity(p, predict_proba(clf, x_cf))
        fake, real_n, real_a = (
            penultimate_features(clf, a) for a in (x_cf[tum & (dec == 1)], sl.images[~tum], sl.images[tum])
        )
        res["frechet_cf_normal"], res["frechet_abnormal_normal"] = (
            frechet_distance(fake, real_n),
            frechet_distance(real_a, real_n),
        )
        res["mmd_cf_normal"], res["mmd_abnormal_normal"] = mmd_rbf(fake, real_n), mmd_rbf(real_a, real_n)
        gated = dec[tum][:, None, None] > 0
        out_iou["coin@0.25"] = iou_per_slice(threshold_maps(maps[tum], MaskSettings()) & gated, sl.masks[tum])
        s = MaskSettings(threshold=thresholds["coin@val"])
        out_iou["coin@val"] = iou_per_slice(threshold_maps(maps[tum], s) & gated, sl.masks[tum])
        s = replace(LARGEST, threshold=thresholds["coin@val+largest"])
        out_iou["coin@val+largest"] = iou_per_slice(threshold_maps(maps[tum], s) & gated, sl.masks[tum])
    t = time.perf_counter()
    for m in METHODS:
        kw = {"n_masks": args.rise_masks} if m == "rise" else {}
        vt = val.labels == 1
        v_dec = (predict_proba(clf, val.images[vt]) >= 0.5)[:, None, None]
        thresholds[m], _ = sweep_threshold(attribute(m, clf, val.images[vt], **kw) * v_dec, val.masks[vt])
        tt = test.labels == 1
        t_dec = (predict_proba(clf, test.images[tt]) >= 0.5)[:, None, None]
        mask = threshold_maps(attribute(m, clf, test.images[tt], **kw), MaskSettings(threshold=thresholds[m])) & t_dec
        out_iou[m] = iou_per_slice(mask, test.masks[tt])
    times["baselines_s"] = time.perf_counter() - t
    res.update(times=times, thresholds=thresholds, iou={k: v.tolist() for k, v in out_iou.items()})
    return res


def summarise(runs: list[dict]) -> list[dict]:
    from medwss.counterfactual.evaluate import bootstrap_mean

    rows = []
    for setting in dict.fromkeys(r["setting"] for r in runs):
        rs = [r for r in runs if r["setting"] == setting]
        for m in rs[0]["iou"]:
            pooled = np.concatenate([r["iou"][m] for r in rs])
            lo, hi = bootstrap_mean(pooled, 2000, 0)
            per_seed = [float(np.mean(r["iou"][m])) for r in rs]
            thr = [r["thresholds"][m] for r in rs]
            if not len(pooled):
                pooled = np.array([np.nan])
            rows.append(
                {
                    "setting": setting,
                    "method": m,
                    "iou": float(pooled.mean()),
                    "lo": lo,
                    "hi": hi,
                    "per_seed": per_seed,
                    "thresholds": thr,
                    "n": int(len(pooled)),
                }
            )
    return rows


def markdown(rows: list[dict], runs: list[dict], quick: bool, total_s: float) -> str:
    lines = [
        f"## COIN vs attribution baselines{' (quick)' if quick else ''}",
        "",
        "| setting | method | IoU | 95% CI | per seed | threshold(s) | n slices |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = ", ".join(f"{v:.3f}" for v in r["per_seed"])
        thr = ", ".join(f"{t:.2f}" for t in r["thresholds"])
        lines.append(
            f"| {r['setting']} | {r['method']} | {r['iou']:.3f} | [{r['lo']:.3f}, {r['hi']:.3f}] | {seeds} | {thr} | {r['n']} |"
        )
    lines += [
        "",
        "| setting | seed | AUC | validity | Fréchet cf–normal | Fréchet abnormal–normal | MMD cf–normal | MMD abnormal–normal | classifier s | COIN s | baselines s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        t = r["times"]
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['auc']:.3f} | {r['validity']:.2f} | {r['frechet_cf_normal']:.2f} | {r['frechet_abnormal_normal']:.2f} | "
            f"{r['mmd_cf_normal']:.3f} | {r['mmd_abnormal_normal']:.3f} | {t['classifier_s']:.0f} | {t['coin_s']:.0f} | {t['baselines_s']:.0f} |"
        )
    lines += [
        "",
        f"Total run time {total_s / 60:.1f} min on CPU (1 thread). Paper (kidney synthetic): COIN 0.646, RISE 0.397, ScoreCAM 0.030, LayerCAM 0.026.",
        "",
    ]
    return "\n".join(lines)


def _merge(args: argparse.Namespace) -> int:
    """Rewrite the summary over the runs stored in several result files (seeds run in parallel)."""
    import json

    from medwss.runinfo import write_results

    recs = [json.loads(Path(p).read_text()) for p in args.merge]
    runs = [r for rec in recs for r in rec["runs"]]
    total = sum(rec["total_s"] for rec in recs)
    record = {
        "summary": summarise(runs),
        "runs": runs,
        "merged_from": args.merge,
        "total_s": total,
        "settings": recs[0]["settings"],
        "versions": recs[0]["versions"],
    }
    write_results(args.out, args.name or "coin_kidney", record, markdown(record["summary"], runs, False, total))
    return 0


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.runinfo import versions, write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one seed, kidney + phantom (< 60 s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--settings", nargs="+", default=["kidney", "phantom"], choices=["kidney", "phantom"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default=None, help="folder for phantom volumes (default: a temporary folder)")
    ap.add_argument("--name", default=None, help="results file name (default coin_kidney or coin_kidney_quick)")
    ap.add_argument("--n-cases", type=int, default=None, help="phantom scans per seed (default 48)")
    ap.add_argument("--clf-epochs", type=int, default=None, help="classifier epochs (default 8)")
    ap.add_argument("--merge", nargs="+", default=None, help="combine the runs of these result JSONs into --name")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    q = args.quick
    n_cases, clf_epochs = args.n_cases, args.clf_epochs
    args.n_train, args.n_eval, args.n_cases = (96, 32, 8) if q else (2400, 240, 48)
    args.clf_epochs, args.iterations, args.rise_masks = (2, 10, 50) if q else (8, 500, 300)
    args.n_cases = n_cases or args.n_cases
    args.clf_epochs = clf_epochs or args.clf_epochs
    if args.merge:
        return _merge(args)
    seeds = args.seeds[:1] if q else args.seeds
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="coin_bench_"))
    start = time.perf_counter()
    runs = []
    for setting in args.settings:
        for seed in seeds:
            sets = (
                kidney_sets(seed, args.n_train, args.n_eval)
                if setting == "kidney"
                else phantom_sets(seed, args.n_cases, work, 0.5 if q else 1.0)
            )
            runs.append(run_one(setting, seed, sets, args))
            print(
                f"{setting} seed {seed}: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in runs[-1]["iou"].items()),
                file=sys.stderr,
            )
    total = time.perf_counter() - start
    rows = summarise(runs)
    name = args.name or ("coin_kidney_quick" if q else "coin_kidney")
    record = {
        "summary": rows,
        "runs": runs,
        "seeds": seeds,
        "total_s": total,
        "versions": versions(),
        "settings": {
            k: getattr(args, k) for k in ("n_train", "n_eval", "n_cases", "clf_epochs", "iterations", "rise_masks")
        },
    }
    write_results(args.out, name, record, markdown(rows, runs, q, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
