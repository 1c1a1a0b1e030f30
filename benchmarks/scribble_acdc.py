"""Scribble-supervised cardiac MRI segmentation on ACDC with its real scribbles: full, pCE, size, DMPLS, self-training.

Usage:
    python benchmarks/scribble_acdc.py [--data DIR] [--quick] [--seeds 3] [--epochs N] [--out DIR] [--work DIR]
        [--settings NAME ...] [--split test|val] [--post none volume slice]

Data: ``DIR/mri/acdc`` (default ``../shared/data/real``): 120 short-axis cine volumes of 60 patients
(ED and ES frames) with dense labels (0 background, 1 RV, 2 myocardium, 3 LV) and the real scribbles
of Valvano et al. (-1 = not scribbled), split by patient: train 40 patients (80 volumes), val 10
(20, epoch selection only), test 10 (20 volumes, never looked at while choosing settings).

Settings = the shipped configs ``configs/scribble_acdc_{full,pce,size,dmpls,selftrain}.yaml`` through the one
workflow (`medwss.scribble.workflow.train_model` / `predict_cases`): a 2D MONAI UNet (8/16/32/64
channels) on every axial slice, the whole field of view resized to 128 × 128 (`medwss.data.slicer`):
- ``full``: the dense labels, CE + Dice;
- ``pce``: partial CE on the scribbled pixels (+ negative CE on slices without a structure scribble);
- ``size``: ``pce`` + the per-class size penalty (Kervadec et al.) with bounds from a tag prior: a
  scribbled class gets [lower, upper] mm² per slice (the data has no spacing: mm = stored pixels),
  from the spread of the training masks' per-slice areas (0.5 × 5th to 1.5 × 95th percentile,
  rounded), an unscribbled class [0, 0] (every structure on an ACDC slice is scribbled);
- ``dmpls``: the dual-branch network with dynamically mixed pseudo labels of Luo et al. (MICCAI 2022,
  WSL4MIS), re-implemented in `medwss.scribble.dmpls` (pCE on both branches + 0.5 × Dice to the
  argmax of a random convex mix of the two branches' softmax);
- ``selftrain``: ``size``, then one round of self-training (`medwss.scribble.selftrain`): the size
  model labels the training slices (argmax where its top softmax >= 0.9, inside each class's
  largest 3D component; classes not scribbled on a slice and the rest unlabelled; the scribbles
  kept) and a new network trains on them with CE + Dice + the same size and negative terms. Its
  round 0 is the ``size`` run of the same seed when that is in the work folder (the configs are
  checked to differ only in the self-training keys), else trained in ``round_0/``.

Post-processing (``--post``, default ``none volume``): every prediction is scored as it is and
after keeping each class's largest connected component (`medwss.scribble.selftrain.
largest_components`, full connectivity: ``volume`` = in 3D, ``slice`` = per slice), the same for
every setting; the post-processed rows are the settings' names + ``_lcc`` / ``_lcc2d``.

Each setting is trained with ``--seeds`` seeds (0..n-1); predictions go back to each scored volume's
stored grid (label maps) and are scored per volume and class with `medwss.eval.overlap`: Dice, and
HD95 with spacing 1 (the h5 files keep no voxel spacing; HD95 is in stored pixels, not mm; a
class predicted nowhere while present scores HD95 = inf and is counted apart). The table gives the
mean over seeds (± sd) and a 95% bootstrap interval over the 10 test *patients* (each patient's two
volumes averaged, then `medwss.eval.metrics.bootstrap_ci`) of the seed-averaged per-volume scores,
plus paired differences (size − pce, dmpls − pce, selftrain − size, ..., each post-processed one −
its raw one) and ratios of mean Dice to full supervision's (same post-processing) with a bootstrap
interval over patients. ``--split val`` scores the val patients instead (for choosing settings,
with ``--work`` keeping the models for the test run).

What was cut to fit a shared CPU (about 15 min for the full run): 128 × 128 instead of WSL4MIS's
256 × 256, a small UNet, ``--epochs`` (default 4) passes over the ~730 training slices instead of
30,000 iterations of batch 12, one fixed split instead of 5-fold cross-validation, light
augmentation (the project's segmentation preset). ``--quick`` (smoke test): 4 training, 2 val and 2 test
volumes, 64 × 64, 1 epoch, one seed. Results: benchmarks/results/scribble_acdc[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("full", "pce", "size", "dmpls", "selftrain")
POSTS = {"none": "", "volume": "_lcc", "slice": "_lcc2d"}
"""Post-processing (`medwss.scribble.selftrain.largest_components`) → suffix of the scored setting name."""
CLASSES = ("RV", "myocardium", "LV")


def _mean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def score_volume(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Per-class Dice and HD95 (spacing 1) of one volume's label map."""
    from medwss.eval.overlap import dice_per_class, surface_per_class

    d = dice_per_class(pred, gt, 4)
    h = surface_per_class(pred, gt, 4, "hd95", spacing=1.0)
    out = {f"dice_{n}": float(v) for n, v in zip(CLASSES, d, strict=True)}
    out |= {f"hd95_{n}": float(v) for n, v in zip(CLASSES, h, strict=True)}
    out["dice_mean"] = float(np.mean(d))
    out["hd95_mean"] = float(np.mean(h)) if np.isfinite(h).all() else float("inf")
    return out


def run(args: argparse.Namespace, on_round: Any = None) -> dict[str, Any]:
    """Train, predict and score every setting for every seed; `on_round(record)` after each seed's round."""
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.io import load_volume
    from medwss.scribble.selftrain import largest_components
    from medwss.scribble.workflow import predict_cases, train_model

    torch.set_num_threads(1)
    src = Path(args.data) / "mri" / "acdc" / "manifest.csv"
    if not src.is_file():
        raise SystemExit(f"ACDC manifest not found: {src} (give --data DIR holding mri/acdc/)")
    manifest = load_manifest(src)
    train, val, test = manifest.split("train"), manifest.split("val"), manifest.split(args.split)
    seeds = [0] if args.quick else (args.seed_list or list(range(args.seeds)))
    overrides: dict[str, Any] = {"device": "cpu"}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.quick:
        train, val, test = train[:4], val[:2], test[:2]
        overrides |= {"epochs": 1, "slice_size": 64, "channels": (4, 8, 16)}
    work = Path(args.work or tempfile.mkdtemp(prefix="scribble_acdc_"))
    gts = {c.case_id: load_volume(c.mask).array.astype(np.int64) for c in test if c.mask is not None}
    per_case: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    configs: dict[str, Any] = {}
    cache: dict[str, Any] = {}  # loaded cases, shared by the settings and seeds
    t_all, cpu_all = time.time(), time.process_time()
    names = args.settings or SETTINGS
    cfgs = {name: _load(name) for name in names}
    record: dict[str, Any] = {}
    for seed in seeds:  # seed-major: every finished round of seeds is a complete table (see `on_round`)
        for name, cfg in cfgs.items():
            c = cfg.model_copy(update={**overrides, "seed": seed})
            size_model = work / "size" / f"seed_{seed}" / "model.pt"
            if name == "selftrain" and size_model.exists():  # round 0 = the size run of this seed
                _check_same_but_self_training(c, (cfgs.get("size") or _load("size")).model_copy(update=overrides))
                c = c.model_copy(update={"pseudo_model": str(size_model)})
            configs[name] = c.model_dump(mode="json") | {"seed": seeds}
            out = work / name / f"seed_{seed}"
            t0 = time.process_time()
            summary = train_model(manifest, c, out, train, val, progress=False, cache=cache)
            t_train = time.process_time() - t0
            pred = predict_cases(manifest, test, [out / "model.pt"], out, progress=False, device="cpu")
            failed = pred["failed"]
            for case in test:
                p = out / "predictions" / f"{case.case_id}.nii.gz"
                if not p.exists() or case.case_id not in gts:
                    continue
                raw = load_volume(p).array.astype(np.int64)
                for post in args.post:
                    row = {"setting": name + POSTS[post], "seed": seed, "case_id": case.case_id,
                           "patient_id": case.patient_id}  # fmt: skip
                    per_case.append(row | score_volume(largest_components(raw, 4, post), gts[case.case_id]))
            rows = [r for r in per_case if r["setting"] == name and r["seed"] == seed]
            runs.append(
                {"setting": name, "seed": seed, "train_cpu_seconds": round(t_train, 1),
                 "best_val_dice": summary["best_val_dice"], "failed": failed,
                 "dice_mean": _mean([r["dice_mean"] for r in rows])}
            )  # fmt: skip
            print(
                f"{name} seed {seed}: {args.split} Dice {runs[-1]['dice_mean']:.3f} ({t_train:.0f} s CPU)", flush=True
            )
        done = seeds[: seeds.index(seed) + 1]
        record = {
            "quick": args.quick, "split": args.split, "post": list(args.post), "data": str(src), "seeds": done, "seeds_planned": seeds, "n_train": len(train),
            "n_val": len(val), "n_test": len(test), "configs": configs, "runs": runs,
            "summary": summarise(per_case, done), "paired": paired(per_case), "per_case": per_case,
            "seconds": round(time.time() - t_all, 1), "cpu_seconds": round(time.process_time() - cpu_all, 1),
        }  # fmt: skip
        if on_round is not None:
            on_round(record)
    return record


def _load(name: str) -> Any:
    from medwss.config import load_config
    from medwss.scribble.config import ScribbleConfig

    return load_config(ROOT / "configs" / f"scribble_acdc_{name}.yaml", ScribbleConfig)


def _check_same_but_self_training(cfg: Any, size: Any) -> None:
    """The self-training config is the size config bar its self-training keys (so its round 0 is the size run)."""
    keys = {"self_training", "pseudo_threshold", "pseudo_loss", "pseudo_model", "seed", "device", "epochs"}
    a, b = cfg.model_dump(exclude=keys), size.model_dump(exclude=keys)
    diff = sorted(k for k in a if a[k] != b[k])
    if diff:
        raise SystemExit(f"selftrain differs from size in {diff}: its round 0 is not the size run")


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from runs made in parallel (other seeds or settings of the same protocol)."""
    first = records[0]
    per_case = [r for rec in records for r in rec["per_case"]]
    seeds = sorted({s for rec in records for s in rec["seeds"]})
    configs = {k: v for rec in records for k, v in rec["configs"].items()}
    return first | {
        "seeds": seeds, "seeds_planned": seeds, "configs": configs, "per_case": per_case,
        "runs": [r for rec in records for r in rec["runs"]], "summary": summarise(per_case, seeds),
        "paired": paired(per_case), "seconds": sum(rec["seconds"] for rec in records),
        "cpu_seconds": sum(rec["cpu_seconds"] for rec in records), "merged_from": len(records),
    }  # fmt: skip


def seed_means(
    per_case: list[dict[str, Any]], setting: str, key: str = "dice_mean"
) -> tuple[dict[str, float], dict[str, str]]:
    """Per test volume: `key` averaged over seeds (inf HD95 left out; NaN if every seed is inf), and its patient."""
    vals: dict[str, list[float]] = {}
    patient: dict[str, str] = {}
    for r in per_case:
        if r["setting"] == setting:
            vals.setdefault(r["case_id"], []).append(float(r[key]))
            patient[r["case_id"]] = r["patient_id"]
    return {c: _mean(v) for c, v in vals.items()}, patient


def patient_ci(per_case: list[dict[str, Any]], setting: str, key: str) -> tuple[float, float, float]:
    """Mean of the seed-averaged `key` over test patients and its 95% bootstrap interval over patients."""
    from medwss.eval.metrics import mean_ci

    v, patient = seed_means(per_case, setting, key)
    return mean_ci(list(v.values()), [patient[c] for c in v])


def scored_names(per_case: list[dict[str, Any]]) -> list[str]:
    """The scored setting names present (setting + post-processing suffix), settings first, then post-processing."""
    present = {r["setting"] for r in per_case}
    return [n + suf for suf in POSTS.values() for n in SETTINGS if n + suf in present]


def summarise(per_case: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per setting: per-class and mean Dice / HD95, mean ± sd over seeds and CI over patients."""
    out = []
    keys = [f"dice_{n}" for n in CLASSES] + ["dice_mean"] + [f"hd95_{n}" for n in CLASSES] + ["hd95_mean"]
    for name in scored_names(per_case):
        rows = [r for r in per_case if r["setting"] == name]
        if not rows:
            continue
        row: dict[str, Any] = {"setting": name}
        for k in keys:
            per_seed = [_mean([r[k] for r in rows if r["seed"] == s]) for s in seeds]
            m, lo, hi = patient_ci(per_case, name, k)
            row |= {k: m, f"{k}_lo": lo, f"{k}_hi": hi, f"{k}_sd": float(np.std(per_seed)) if len(seeds) > 1 else None}
            if k.startswith("hd95"):
                row[f"{k}_inf"] = sum(1 for r in rows if not math.isfinite(r[k]))
        out.append(row)
    return out


def paired(per_case: list[dict[str, Any]]) -> dict[str, Any]:
    """Paired differences of mean Dice per test volume (seed-averaged), with patient-level bootstrap CIs."""
    from medwss.eval.metrics import paired_mean_ci

    res: dict[str, Any] = {}
    base = (("size", "pce"), ("dmpls", "pce"), ("size", "dmpls"), ("size", "full"), ("dmpls", "full"),
            ("selftrain", "pce"), ("selftrain", "size"), ("selftrain", "full"))  # fmt: skip
    pairs = [(a + suf, b + suf) for suf in POSTS.values() for a, b in base]
    pairs += [(n + suf, n) for suf in list(POSTS.values())[1:] for n in SETTINGS]
    for a, b in pairs:
        (va, patient), (vb, _) = seed_means(per_case, a), seed_means(per_case, b)
        m, lo, hi, n = paired_mean_ci(va, vb, patient)
        if n:
            res[f"{a}-{b}"] = {"dice_mean_diff": m, "lo": lo, "hi": hi}
    for suf in POSTS.values():
        for a in ("size", "dmpls", "pce", "selftrain"):
            ratio = ratio_ci(per_case, a + suf, "full" + suf)
            if ratio is not None:
                res[f"{a}{suf}/full{suf}"] = ratio
    return res


def ratio_ci(per_case: list[dict[str, Any]], a: str, b: str) -> dict[str, float] | None:
    """Mean Dice of `a` over that of `b` on their common volumes (seed-averaged), 95% bootstrap CI over patients."""
    from medwss.eval.metrics import bootstrap_ci

    (ma, patient), (mb, _) = seed_means(per_case, a), seed_means(per_case, b)
    common = sorted(set(ma) & set(mb))
    if not common:
        return None
    by: dict[str, list[tuple[float, float]]] = {}
    for c in common:
        by.setdefault(patient[c], []).append((ma[c], mb[c]))
    va = np.array([np.mean([x for x, _ in v]) for v in by.values()])
    vb = np.array([np.mean([y for _, y in v]) for v in by.values()])
    if len(va) < 2:
        return {"ratio": float(va.mean() / vb.mean()), "lo": float("nan"), "hi": float("nan")}
    m, lo, hi = bootstrap_ci(lambda y, p: float(np.mean(p) / np.mean(y)), vb, va, seed=0, stratify=False)
    return {"ratio": m, "lo": lo, "hi": hi}


def _cell(row: dict[str, Any], key: str, digits: int = 3) -> str:
    v = row.get(key)
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    s = f"{v:.{digits}f}"
    if row.get(f"{key}_sd") is not None:
        s += f" ± {row[f'{key}_sd']:.{digits}f}"
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    if row.get(f"{key}_inf"):
        s += f" ({row[f'{key}_inf']} inf)"
    return s


def markdown(record: dict[str, Any]) -> str:
    split = record.get("split", "test")
    names = {"full": "full supervision (dense labels, CE + Dice)", "pce": "scribbles, partial CE",
             "size": "scribbles, partial CE + size (tag prior)", "dmpls": "scribbles, DMPLS (Luo et al. 2022)",
             "selftrain": "scribbles, size + one self-training round"}  # fmt: skip
    posts = {"_lcc": " + largest 3D component", "_lcc2d": " + largest 2D component per slice"}
    lines = [
        f"# ACDC with real scribbles ({'quick' if record['quick'] else 'full'} run)",
        "",
        f"Train {record['n_train']} / val {record['n_val']} / {record.get('split', 'test')} {record['n_test']} volumes "
        f"(scored on {record.get('split', 'test')}); seeds "
        f"{record['seeds']} (of {record['seeds_planned']} planned); {record['cpu_seconds']:.0f} s CPU ({record['seconds']:.0f} s wall). Mean over seeds ± sd [95% bootstrap CI over {split} "
        "patients]; HD95 in stored pixels (the data has no spacing), inf = a structure predicted nowhere, "
        "left out of the means and counted.",
        "",
        "| setting | Dice RV | Dice Myo | Dice LV | Dice mean | HD95 RV | HD95 Myo | HD95 LV |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["summary"]:
        cells = [_cell(r, f"dice_{n}") for n in CLASSES] + [_cell(r, "dice_mean")]
        cells += [_cell(r, f"hd95_{n}", 1) for n in CLASSES]
        name, suf = r["setting"], ""
        for s in posts:
            if name.endswith(s):
                name, suf = name[: -len(s)], posts[s]
        lines.append(f"| {names.get(name, name)}{suf} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired differences and ratios of mean Dice ({split} volumes, seed-averaged; 95% CI over patients):",
        "",
    ]
    for k, v in record["paired"].items():
        if isinstance(v, dict) and "ratio" in v:
            lines.append(f"- {k}: {v['ratio']:.1%} [{v['lo']:.1%}, {v['hi']:.1%}]")
        elif isinstance(v, dict):
            lines.append(f"- {k}: {v['dice_mean_diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]")
        else:
            lines.append(f"- {k}: {v:.1%}")
    lines += ["", f"| setting | seed | {split} Dice (raw) | best val Dice | train CPU s |", "|---|---|---|---|---|"]
    for r in record["runs"]:
        bv = r["best_val_dice"]
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['dice_mean']:.3f} | "
            f"{'n/a' if bv is None else f'{bv:.3f}'} | {r['train_cpu_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real"), help="folder holding mri/acdc/")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few volumes, tiny network, one epoch")
    ap.add_argument("--seeds", type=int, default=3, help="trainings per setting (seeds 0..n-1; default 3)")
    ap.add_argument("--epochs", type=int, help="override the configs' epochs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    ap.add_argument("--work", help="work folder for models and predictions (default: a temporary folder)")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, help="only these settings (default: all)")
    ap.add_argument("--seed-list", type=int, nargs="+", help="these seeds instead of 0..--seeds-1 (runs in parallel)")
    ap.add_argument("--name", help="results file name (default scribble_acdc[_quick])")
    ap.add_argument("--merge", nargs="+", type=Path, help="combine the runs of these result JSONs into --name and stop")
    ap.add_argument(
        "--split", default="test", choices=("test", "val"), help="cases predicted and scored (val: choosing)"
    )
    ap.add_argument(
        "--post",
        nargs="+",
        default=["none", "volume"],
        choices=tuple(POSTS),
        help="post-processings scored (largest connected component per class; default none volume)",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from medwss.runinfo import write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("scribble_acdc_quick" if args.quick else "scribble_acdc")
    if args.merge:
        record = merge([json.loads(p.read_text()) for p in args.merge])
        write_results(out, stem, record, markdown(record), echo=False)
        print(markdown(record))
        return 0

    def save(record: dict[str, Any]) -> None:  # after every round of seeds: an interrupted run keeps its tables
        write_results(out, stem, record, markdown(record), echo=False)

    record = run(args, on_round=save)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
