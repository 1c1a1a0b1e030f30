"""Every MIL aggregator on three phantom sets: easy slides, context slides, and CT.

Usage:
    python benchmarks/mil_phantom.py [--quick] [--seeds 0 1 2] [--sets wsi wsi_context ct]
        [--aggregators ...] [--n-wsi 30] [--n-ct 30] [--epochs N] [--no-cost] [--tag mil_phantom]

The sets are `medwss.mil.experiment.SETTINGS`: ``wsi`` (the original phantom slides, 128 µm tiles),
``wsi_context`` (every slide, negatives included, holds isolated tumour-like patches of about one
64 µm tile; lesions are clusters of 3–6 tiles across, fainter, with a stain shift between sites:
instance pooling fails by construction) and ``ct`` (an enhancing kidney tumour, 12 mm cubes inside
the kidneys' bounding box). The set options were chosen on phantoms of seed 7 (validation);
this benchmark draws seed 1000 (`--data-seed`), never used while choosing.

For each set: phantoms → `medwss tile` → `medwss embed` (stats encoder) → for every aggregator and
seed: train on the train/val split (model selection on validation loss) with `MILTrainConfig`'s defaults,
which are the shipped configs/mil_insight.yaml (a test checks it; epochs aside): INSIGHT's model there and lr 3e-4 for
every aggregator (the baselines' own configs/mil_<name>.yaml say the same; not read here), plus each set's
`SETTINGS` overrides (``ct``: INSIGHT's in-plane context, and the library's 40 epochs); test on the held-out test
split: case AUC with a bootstrap 95% CI, heatmap Dice at 0.5 on positive test cases against the
exact ground truth (bootstrap CI over cases), FROC score on slides, training seconds per training
case and prediction seconds per test case. Then (unless ``--no-cost``) the cost of each
aggregator: seconds for one training step and peak memory on one bag of 10k and 100k instances
(C = 512), each in a fresh process.

Cuts to fit a loaded 2-core CPU: 30 slides / 30 scans per set (test split 6 each), 15 epochs on the slide sets
(40 lowered INSIGHT's wsi_context Dice on selection draws 7–8: 0.86 → 0.83), the easy ``wsi`` set at
scale 0.5 (1536 × 2048 level-0 pixels; the others at 1.0), and the README's cost table from an earlier run
(``--no-cost``). ``--quick``: one seed, ``wsi`` only, 8 slides at
scale 0.5, 2 epochs, INSIGHT and ABMIL (the smoke test).
Results: benchmarks/results/<tag>[_quick].json and .md (``--tag``, default mil_phantom; ``train``: the lr and
INSIGHT defaults the runs start from).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AGGREGATORS = ["insight", "abmil", "clam_sb", "transmil", "mean", "max"]
SETS = ("wsi", "wsi_context", "ct")

_COST = r"""
import json, resource, sys, time, torch
from medwss.mil.base import Bag
from medwss.mil.registry import create_aggregator
name, n, kwargs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
side = int((n * 1.6) ** 0.5) + 1
cells = torch.randperm(side * side)[:n]
grid = torch.stack([cells // side, cells % side], 1)
bag = Bag(torch.randn(n, 512), grid, (side, side))
model = create_aggregator(name, 512, 1, **kwargs)
opt = torch.optim.AdamW(model.parameters(), 1e-4)
label = torch.ones(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(3):
    t0 = time.perf_counter()
    out = model(bag, label=label)
    loss = torch.nn.functional.binary_cross_entropy(out.probs.clamp(1e-6, 1 - 1e-6), label)
    if out.aux_loss is not None:
        loss = loss + out.aux_loss
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(min(times), (peak - base) / 1024, peak / 1024)
"""


def shipped_kwargs(name: str) -> dict:
    """The aggregator's constructor arguments in its shipped ``configs/mil_<name>.yaml``."""
    from medwss.config import load_config
    from medwss.mil.config import MILTrainConfig

    path = Path(__file__).resolve().parents[1] / "configs" / f"mil_{name}.yaml"
    return dict(load_config(path, MILTrainConfig).aggregator_kwargs) if path.exists() else {}


def train_defaults() -> dict:
    """What every run starts from: `MILTrainConfig`'s lr and INSIGHT's constructor defaults (before `SETTINGS`)."""
    import inspect

    from medwss.mil.config import MILTrainConfig
    from medwss.mil.insight import Insight

    params = inspect.signature(Insight.__init__).parameters
    keys = ("hidden", "context_depth", "block", "context_norm")
    return {"lr": MILTrainConfig().lr, "insight": {k: params[k].default for k in keys}}


def cost(name: str, n: int, timeout: int = 600) -> dict:
    """One training step on a random bag of `n` instances (C = 512), the shipped config, one thread, fresh process."""
    kwargs = json.dumps(shipped_kwargs(name))
    try:
        r = subprocess.run([sys.executable, "-c", _COST, name, str(n), kwargs], capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
        sec, grow, peak = (float(v) for v in r.stdout.split()[-3:])
        return {"seconds_per_step": sec, "peak_growth_mb": grow, "peak_rss_mb": peak}
    except (subprocess.TimeoutExpired, ValueError):
        return {"seconds_per_step": None, "peak_growth_mb": None, "peak_rss_mb": None, "error": "timeout or failure"}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for kind in dict.fromkeys(r["kind"] for r in runs):
        for agg in AGGREGATORS:
            rs = [r for r in runs if r["kind"] == kind and r["aggregator"] == agg]
            if not rs:
                continue
            auc, dice = np.array([r["auc"] for r in rs], float), np.array([r["dice"] for r in rs], float)
            froc = np.array([np.nan if r.get("froc") is None else r["froc"] for r in rs], float)  # None: no lesions
            rows.append({
                "kind": kind, "aggregator": agg, "seeds": len(rs),
                "auc_mean": float(np.nanmean(auc)), "auc_sd": float(np.nanstd(auc)),
                "auc_ci_lo_mean": float(np.nanmean([r["auc_lo"] for r in rs])),
                "auc_ci_hi_mean": float(np.nanmean([r["auc_hi"] for r in rs])),
                "auc_min": float(np.nanmin(auc)),
                "dice_mean": float(np.nanmean(dice)), "dice_sd": float(np.nanstd(dice)),
                "dice_ci_lo_mean": float(np.nanmean([r["dice_lo"] for r in rs])),
                "dice_ci_hi_mean": float(np.nanmean([r["dice_hi"] for r in rs])),
                "froc_mean": float(np.nanmean(froc)) if np.isfinite(froc).any() else float("nan"),
                "froc_sd": float(np.nanstd(froc)) if np.isfinite(froc).any() else float("nan"),
                "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
                "train_seconds_per_case": float(np.mean([r["train_seconds_per_case"] for r in rs])),
                "predict_seconds_per_case": float(np.mean([r["predict_seconds_per_case"] for r in rs])),
                "n_test": rs[0]["n_test"], "n_dice": rs[0]["n_dice"],
            })  # fmt: skip
    return rows


def _epochs(epochs: int | dict | None) -> str:
    """The header's epochs: one number (older results) or per set ("wsi 15, ct 40")."""
    if isinstance(epochs, dict):
        return ", ".join(f"{k} {n}" for k, n in epochs.items())
    return "?" if epochs is None else str(epochs)


def to_markdown(res: dict) -> str:
    lines = (
        []
        if "summary" not in res
        else [  # --cost-only: the cost table alone
            f"MIL on phantoms, stats encoder, seeds {res['seeds']}, epochs (at most) {_epochs(res.get('epochs'))}; "
            "test AUC and heatmap Dice: mean ± sd over seeds [mean of the per-seed bootstrap 95% CIs]"
            + (
                ""
                if "train" not in res
                else f"; lr {res['train']['lr']:g} for every aggregator, INSIGHT "
                + ", ".join(f"{k} {v}" for k, v in res["train"]["insight"].items())
                + " (then each set's `SETTINGS` overrides)"
            ),
            "",
            "| data | aggregator | test AUC | heatmap Dice (positive test cases) | FROC score (slides) "
            "| train s (per case) | predict s / case |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
    )
    for r in res.get("summary", []):
        lines.append(
            f"| {r['kind']} (n_test {r['n_test']}) | {r['aggregator']} | {r['auc_mean']:.3f} ± {r['auc_sd']:.3f} "
            f"[{r['auc_ci_lo_mean']:.2f}, {r['auc_ci_hi_mean']:.2f}] | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} "
            f"[{r['dice_ci_lo_mean']:.2f}, {r['dice_ci_hi_mean']:.2f}] | "
            + ("—" if np.isnan(r["froc_mean"]) else f"{r['froc_mean']:.3f} ± {r['froc_sd']:.3f}")
            + f" | {r['train_seconds_mean']:.0f} ({r['train_seconds_per_case']:.1f}) | {r['predict_seconds_per_case']:.2f} |"
        )
    if res.get("cost"):
        lines += ["", "Cost of one training step on one bag (C = 512), shipped configs, one thread, fresh process each:", "",
                  "| aggregator | instances | s / step | peak RSS, MB | growth over the loaded bag, MB |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for c in res["cost"]:
            s = "—" if c["seconds_per_step"] is None else f"{c['seconds_per_step']:.2f}"
            m = "— | —" if c["peak_growth_mb"] is None else f"{c['peak_rss_mb']:.0f} | {c['peak_growth_mb']:.0f}"
            lines.append(f"| {c['aggregator']} | {c['instances']:,} | {s} | {m} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.mil.experiment import SETTINGS, evaluate, prepare
    from medwss.runinfo import versions, write_results

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=sorted(SETTINGS), help="phantom sets")
    ap.add_argument("--aggregators", nargs="+", default=AGGREGATORS, choices=AGGREGATORS)
    ap.add_argument("--n-wsi", type=int, default=30, help="slides per WSI set")
    ap.add_argument("--n-ct", type=int, default=30, help="scans per CT set")
    ap.add_argument("--epochs", type=int, help="at most (early stopping); default: each set's SETTINGS epochs, else 15")
    ap.add_argument("--data-seed", type=int, default=1000, help="phantom seed (settings were chosen on seed 7)")
    ap.add_argument("--wsi-scale", type=float, default=0.5, help="size of the easy wsi set's slides (1.0: 4096 × 3072)")
    ap.add_argument("--train-kwargs", type=json.loads, default={},
                    help='JSON of MILTrainConfig overrides for every run, e.g. \'{"monitor": "val_auc"}\'')  # fmt: skip
    ap.add_argument("--no-cost", action="store_true", help="skip the cost-per-step measurement")
    ap.add_argument("--cost-only", action="store_true", help="only the cost table (writes mil_phantom_cost.*)")
    ap.add_argument("--tag", default="mil_phantom", help="results file name (benchmarks/results/<tag>.json)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.sets, args.n_wsi, args.epochs = [0], ["wsi"], 8, 2
        args.aggregators = AGGREGATORS[:2] if args.aggregators == AGGREGATORS else args.aggregators
    t0 = time.perf_counter()
    runs: list[dict] = []
    set_epochs: dict[str, int] = {}
    if args.cost_only:
        sizes = [1000] if args.quick else [10_000, 100_000]
        res = {"quick": args.quick, "cost": [{"aggregator": a, "instances": n, **cost(a, n)} for a in args.aggregators
                                             for n in sizes], "seconds": time.perf_counter() - t0,
               "versions": versions()}  # fmt: skip
        write_results(args.out, "mil_phantom_cost_quick" if args.quick else "mil_phantom_cost", res, to_markdown(res))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.sets:
            n = args.n_wsi if SETTINGS[name]["kind"] == "wsi" else args.n_ct
            epochs = set_epochs[name] = args.epochs or SETTINGS[name].get("epochs", 15)
            scale = 0.5 if args.quick else (args.wsi_scale if name == "wsi" else None)
            manifest = prepare(name, work / "data", n, seed=args.data_seed, scale=scale)
            for agg in args.aggregators:
                for seed in args.seeds:
                    r = evaluate(manifest, agg, seed, work / "runs" / f"{name}_{agg}_{seed}", epochs,
                                 SETTINGS[name]["positive_labels"], train={**SETTINGS[name].get("train", {}).get(agg, {}), **args.train_kwargs})  # fmt: skip
                    runs.append({"kind": name, "epochs": epochs, **{k: v for k, v in r.items() if k not in ("y", "p")}})
                    print(f"{name} {agg} seed {seed}: AUC {r['auc']:.3f} Dice {r['dice']:.3f} FROC {r['froc']:.3f} "
                          f"(best epoch {r['best_epoch']})", flush=True)  # fmt: skip
    sizes = [1000] if args.quick else [10_000, 100_000]
    costs = (
        []
        if args.no_cost
        else [{"aggregator": a, "instances": n, **cost(a, n)} for a in args.aggregators for n in sizes]
    )
    res = {"quick": args.quick, "seeds": args.seeds, "sets": args.sets, "n_wsi": args.n_wsi, "n_ct": args.n_ct,
           "epochs": set_epochs, "train_kwargs": args.train_kwargs, "data_seed": args.data_seed, "wsi_scale": args.wsi_scale,
           "settings": {k: SETTINGS[k] for k in args.sets}, "train": train_defaults(), "runs": runs,
           "summary": summarise(runs), "cost": costs, "seconds": time.perf_counter() - t0, "versions": versions()}  # fmt: skip
    write_results(args.out, f"{args.tag}_quick" if args.quick else args.tag, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
