"""Slice-based active learning: learning curves of every strategy, and the speed of k-center greedy.

Usage:
    python benchmarks/al_curves.py [--quick] [--seeds 0 1 2] [--out benchmarks/results] [--work DIR]

1. Phantom CT (scale 0.5: 48×48×24 volumes; classes liver, kidneys, spleen): the axial slices of
   the train/val volumes form the pool; 5 rounds of 1% of the pool; after each round a fresh tiny
   UNet is trained on every slice annotated so far and scored by 3D Dice on the held-out test
   volumes. Full masks (every strategy) and simulated scribbles (random, coreset, contrastive
   coreset), 3 evaluation seeds, 95% t-intervals over seeds.
2. The real CT (/work/shared/data/real/volumes, 122×101×30, TotalSegmentator organ map): cut into
   6 pseudo-volumes of 5 consecutive slices (in-plane every second voxel: 61×51 at 6 mm); pseudo-volumes 1 and 4 are the test set, the other 20
   slices the pool (1% of it = 1 slice per round). One patient, so patient positives are off.
3. k-center greedy on 100k × 128 features (2 threads): the chunked torch implementation against
   the naive one (every distance recomputed at every step), on the same data and budget, same run.
Results: benchmarks/results/al_curves[_quick].json/.md, al_curves[_quick].png, al_curves_real[_quick].png.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "volumes"
if not REAL.exists():
    REAL = Path("/work/shared/data/real/volumes")
ALL = ["random", "entropy", "margin", "bald", "coreset", "contrastive_coreset", "typiclust"]
WEAK = ["random", "coreset", "contrastive_coreset"]
REAL_STRATEGIES = ["random", "coreset", "contrastive_coreset", "typiclust"]


def kcenter_speed(n: int, d: int, budget: int, naive_budget: int, threads: int = 2) -> dict:
    """Seconds of the medwss k-center (on 1 and on `threads` threads) and the naive one, same features, same run."""
    import torch
    from threadpoolctl import threadpool_limits

    from medwss.active.coreset import kcenter_greedy, kcenter_naive

    previous = torch.get_num_threads()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, d)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    kcenter_greedy(x[:1000], 5, device="cpu")  # warm-up
    fast: dict[int, float] = {}
    picks: list[int] = []
    for t in (1, threads):
        torch.set_num_threads(t)
        with threadpool_limits(t):
            t0 = time.perf_counter()
            picks = kcenter_greedy(x, budget, seed=0, device="cpu")
            fast[t] = time.perf_counter() - t0
    torch.set_num_threads(1)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        fast_small = kcenter_greedy(x, naive_budget, seed=0, device="cpu")
        t_fast_small = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_small = kcenter_naive(x, naive_budget, seed=0)
        t_naive_small = time.perf_counter() - t0
    torch.set_num_threads(previous)
    return {
        "n": n,
        "dim": d,
        "threads": threads,
        "budget": budget,
        "naive_budget": naive_budget,
        "fast_seconds_1_thread": fast[1],
        "fast_seconds": fast[threads],
        "fast_seconds_at_naive_budget": t_fast_small,
        "naive_seconds_at_naive_budget": t_naive_small,
        "speedup_same_budget": t_naive_small / t_fast_small,
        "naive_seconds_extrapolated": t_naive_small * (budget / naive_budget) ** 2,
        "speedup_full_budget_vs_extrapolated": t_naive_small * (budget / naive_budget) ** 2 / fast[threads],
        "same_picks": fast_small == naive_small and picks[:naive_budget] == fast_small,
        "picked": len(set(picks)),
    }


def real_manifest(work: Path, block: int = 5, test_blocks: tuple[int, ...] = (1, 4), step: int = 2) -> Path:
    """Pseudo-volumes of `block` consecutive slices of the real CT and its organ map (every `step`-th voxel
    in-plane: 3 mm → 6 mm, affine adjusted exactly), as a manifest."""
    from medwss.data.manifest import write_manifest
    from medwss.data.orientation import canonical
    from medwss.data.slicer import plan_slices
    from medwss.io import load_volume, save_nifti
    from medwss.io.volume import Volume

    ct, _ = canonical(load_volume(REAL / "example_ct_sm.nii.gz"))  # axial = last axis
    seg, _ = canonical(load_volume(REAL / "example_seg.nii.gz"))
    rows = []
    for b in range(ct.shape[2] // block):
        ks = (slice(None, None, step), slice(None, None, step), slice(b * block, (b + 1) * block))
        aff = plan_slices(ct, indices=[b * block]).slice_affine(0) @ np.diag([step, step, 1.0, 1.0])
        save_nifti(Volume(np.ascontiguousarray(ct.array[ks]), aff), work / f"images/real_{b}.nii.gz")
        save_nifti(Volume(np.ascontiguousarray(seg.array[ks]), aff), work / f"labels/real_{b}.nii.gz")
        rows.append(
            {
                "case_id": f"real_{b}",
                "patient_id": f"block_{b}",
                "site": "ts",
                "modality": "CT",
                "image": str(work / f"images/real_{b}.nii.gz"),
                "mask": str(work / f"labels/real_{b}.nii.gz"),
                "split": "test" if b in test_blocks else "train",
            }
        )
    return write_manifest(rows, work / "manifest.csv")


def table(summary: list[dict], title: str) -> str:
    lines = [
        f"\n### {title}\n",
        "| strategy | " + " | ".join(f"{p:.1f}%" for p in summary[0]["percent"]) + " | mean over rounds |",
        "|---|" + "---|" * (len(summary[0]["percent"]) + 1),
    ]
    for s in sorted(summary, key=lambda s: -float(np.mean(s["dice_mean"]))):
        cells = [
            f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
            for m, lo, hi in zip(s["dice_mean"], s["dice_lo"], s["dice_hi"], strict=True)
        ]
        lines.append(f"| {s['strategy']} | " + " | ".join(cells) + f" | {np.mean(s['dice_mean']):.3f} |")
    return "\n".join(lines) + "\n"


def curves(
    manifest: Path,
    out: Path,
    strategies: list[str],
    modes: list[str],
    seeds: list[int],
    quick: bool,
    real: bool,
    metric_update: dict | None = None,
) -> dict:
    from medwss.active.simulate import SimulateConfig, simulate_from_manifest
    from medwss.config import load_config

    base = load_config(ROOT / "configs" / "al_simulate.yaml", SimulateConfig)
    al = base.al
    if real:
        metric = al.metric.model_copy(update={"patient_weight": 0.0})
        al = al.model_copy(update={"classes": {"liver": [5], "kidneys": [2, 3], "spleen": [1]}, "metric": metric})
    if metric_update:
        al = al.model_copy(update={"metric": al.metric.model_copy(update=metric_update)})
    if quick:
        al = al.model_copy(update={"metric": al.metric.model_copy(update={"epochs": 1}), "min_steps": 10})
    rounds = (1 if real else 2) if quick else 5
    cfg = base.model_copy(update={"al": al, "strategies": strategies, "modes": modes, "seeds": seeds, "rounds": rounds})
    t0 = time.perf_counter()
    res = simulate_from_manifest(manifest, cfg, out, progress=not quick)
    res["seconds"] = time.perf_counter() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    from medwss.active.plot import plot_curves
    from medwss.data.phantoms import generate
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-ct", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="al_curves_"))
    out = Path(args.out)
    q = args.quick
    name = "al_curves_quick" if q else "al_curves"
    seeds = args.seeds[:1] if q else args.seeds
    t0 = time.perf_counter()
    speed = kcenter_speed(*((10_000, 128, 100, 10) if q else (100_000, 128, 1000, 50)))
    manifest = generate("ct", work / "ct", n=5 if q else args.n_ct, seed=0, scale=0.5, progress=False)
    full = curves(
        manifest, work / "sim_ct_full", ["random", "contrastive_coreset"] if q else ALL, ["full"], seeds, q, False
    )
    weak = curves(manifest, work / "sim_ct_weak", ["contrastive_coreset"] if q else WEAK, ["scribble"], seeds, q, False)
    real = curves(
        real_manifest(work / "real"), work / "sim_real", ["random"] if q else REAL_STRATEGIES, ["full"], seeds, q, True
    )
    ablation: list[dict] = []
    if not q:  # ablation: the same k-center on a metric learned with SimCLR positives only (no volume/patient)
        simclr = curves(
            manifest,
            work / "sim_ct_simclr",
            ["contrastive_coreset"],
            ["full"],
            seeds,
            q,
            False,
            {"volume_weight": 0.0, "patient_weight": 0.0},
        )
        ablation = [{**s, "strategy": "contrastive_coreset, SimCLR positives only"} for s in simclr["summary"]]
        base = [s for s in full["summary"] if s["strategy"] in ("contrastive_coreset", "coreset", "random")]
        ablation = base + ablation
    ph = {
        **full,
        "summary": full["summary"] + weak["summary"],
        "rows": full["rows"] + weak["rows"],
        "seconds": full["seconds"] + weak["seconds"],
    }
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(ph["summary"], out / f"{name}.png", ph["pool_slices"], "phantom CT")
    plot_curves(
        real["summary"], out / f"{name.replace('al_curves', 'al_curves_real')}.png", real["pool_slices"], "real CT"
    )
    if not q:
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(out / f"{name}.png", ROOT / "docs" / "al_curves.png")
    md = [f"## Active learning: learning curves and k-center speed{' (quick)' if q else ''}\n"]
    md.append(
        f"Phantom CT: pool {ph['pool_slices']} slices, {ph['budget_per_round']} per round (1%), "
        f"{ph['test_volumes']} test volumes; 3D Dice (liver, kidneys, spleen), mean [95% CI over seeds {seeds}].\n"
    )
    for mode in ("full", "scribble"):
        rows = [s for s in ph["summary"] if s["mode"] == mode]
        if rows:
            md.append(table(rows, f"Phantom CT, {mode} annotations"))
    if ablation:
        md.append(table(ablation, "Ablation (phantom CT, full): which positives the metric learns from"))
    md.append(
        f"\nReal CT: pool {real['pool_slices']} slices, {real['budget_per_round']} per round, {real['test_volumes']} test pseudo-volumes.\n"
    )
    md.append(table(real["summary"], "Real CT (TotalSegmentator example), full annotations"))
    s = speed
    md.append(
        f"\n### k-center greedy, {s['n']:,} × {s['dim']} features (clustered), budget {s['budget']} (1%)\n\n"
        "| implementation | threads | budget | seconds |\n|---|---|---|---|\n"
        f"| medwss (`kcenter_greedy`, CPU) | {s['threads']} | {s['budget']} | {s['fast_seconds']:.2f} |\n"
        f"| medwss (`kcenter_greedy`, CPU) | 1 | {s['budget']} | {s['fast_seconds_1_thread']:.2f} |\n"
        f"| medwss (`kcenter_greedy`, CPU) | 1 | {s['naive_budget']} | {s['fast_seconds_at_naive_budget']:.3f} |\n"
        f"| naive (`kcenter_naive`: all distances recomputed every pick) | 1 | {s['naive_budget']} | {s['naive_seconds_at_naive_budget']:.2f} |\n"
        f"| naive, extrapolated (cost ∝ budget²) | 1 | {s['budget']} | {s['naive_seconds_extrapolated']:.0f} |\n\n"
        f"Speed-up at equal budget ({s['naive_budget']}): {s['speedup_same_budget']:.0f}×; at budget {s['budget']} against the "
        f"extrapolated naive time: {s['speedup_full_budget_vs_extrapolated']:.0f}×; same picks as the naive one: {s['same_picks']}.\n"
    )
    total = time.perf_counter() - t0
    curve_s = {k: sum(r["seconds"] for r in v["rows"]) for k, v in (("phantom", ph), ("real", real))}
    md.append(
        f"\nWall time of this run {total / 60:.1f} min; compute time of the curves, summed over their rounds (runs finished "
        f"earlier in `--work` are reused, not re-run): phantom {curve_s['phantom'] / 60:.1f} min, real CT "
        f"{curve_s['real'] / 60:.1f} min (plus metric training per seed).\n"
    )
    strip = lambda r: {k: v for k, v in r.items() if k != "rows"}  # noqa: E731
    record = {
        "ablation": ablation,
        "phantom": strip(ph),
        "real": strip(real),
        "phantom_rows": ph["rows"],
        "real_rows": real["rows"],
        "kcenter": speed,
        "seconds": total,
        "quick": q,
    }
    write_results(out, name, record, "".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
