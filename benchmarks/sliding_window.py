"""Sliding-window vs whole-volume inference of a 3D segmenter: peak memory, time, output agreement.

Usage:
    python benchmarks/sliding_window.py [--quick] [--roi 128,128,64] [--overlap 0.25] [--full-whole]

1. Memory. A synthetic CT-like volume (float32, HU-like noise with spheres, z-scored) of full CT size
   512×512×300 and of 256×256×150 goes through an untrained tiny 3D U-Net (MONAI UNet, channels
   4, 8, 16; weights do not change memory) in a fresh subprocess per measurement, on the CPU with one
   thread: (a) whole-volume inference as medwss did it before (`medwss.seg.train.predict_probs`:
   the volume padded to a multiple of 4 and pushed through the network at once) and (b) the one
   sliding-window function (`medwss.seg.inference.segment_probs`: windows of the training patch
   size, `--roi`, Gaussian blending, windows on the model's device, volume and output on the host).
   Peak resident memory is `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the subprocess, next to
   its resident memory before inference (Python, torch, the volume). Whole-volume inference at
   512×512×300 is *not run* unless `--full-whole` and an estimate from the 256×256×150 run
   (peak above baseline × 8) fits in half of the machine's available memory: the report says so.
2. Agreement. The tiny U-Net is trained briefly (seeded) on 32³ patches of synthetic spheres, then
   applied to a 64×64×48 volume (a) whole and (b) by sliding windows of the training patch (32³,
   overlap 0.5), and (c) by one window covering the volume ("full overlap"): max and mean absolute
   probability difference to (a), voxel agreement of the argmax, and Dice of each against the truth.

What was cut for this 2-core machine: CPU only, one thread, an untrained tiny network for memory,
a 30-step training for agreement. `--quick` measures one 64×64×48 volume with a 32³ window and
checks agreement on a 48×48×32 volume after 6 training steps on 16³ patches. Results: benchmarks/results/sliding_window[_quick].json/.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CHANNELS = (4, 8, 16)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def ct_like(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """(1, X, Y, Z) float32: a z-scored HU-like volume (soft tissue noise, air outside a body ellipse, spheres)."""
    rng = np.random.default_rng(seed)
    vol = rng.standard_normal(shape, dtype=np.float32)
    vol *= 20.0
    vol += 40.0
    x = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    outside = (x**2 / 0.8 + y**2 / 0.6) > 1.0  # (X, Y): air around the body on every slice
    vol[outside] = -1000.0
    vol -= vol.mean()
    vol /= vol.std() + 1e-6
    return vol[None]


def spheres(shape: tuple[int, ...], rng: np.random.Generator, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(1, *shape) image and (*shape) target: bright noisy spheres of radius 3–7 voxels on noise."""
    grid = np.indices(shape, dtype=np.float32)
    target = np.zeros(shape, np.int64)
    for _ in range(n):
        c = [rng.uniform(6, s - 6) for s in shape]
        r = rng.uniform(3, 7)
        target[sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True)) <= r * r] = 1
    image = (target * 1.5 + rng.normal(0, 0.6, shape)).astype(np.float32)
    return image[None], target


def _child(args: argparse.Namespace) -> int:
    """One measurement in this (fresh) process: print a JSON line."""
    import resource

    import torch

    torch.set_num_threads(1)
    from medwss.seg.inference import segment_probs
    from medwss.seg.networks import size_multiple
    from medwss.seg.train import SegTrainConfig, build, predict_probs

    torch.manual_seed(0)
    cfg = SegTrainConfig(spatial_dims=3, channels=CHANNELS, num_classes=2)
    model = build(cfg).eval()
    image = ct_like(_ints(args.shape))
    base = _rss_mb()
    t0 = time.perf_counter()
    if args.child == "whole":
        probs = predict_probs(model, [image], cfg, batch_size=1)[0]
    else:
        probs = segment_probs(model, image, _ints(args.roi), args.overlap, multiple=size_multiple(CHANNELS))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"baseline_mb": base, "peak_mb": peak, "seconds": seconds, "out_shape": list(probs.shape)}))
    return 0


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return float("nan")


def measure(mode: str, shape: tuple[int, ...], roi: tuple[int, ...], overlap: float, timeout: float) -> dict:
    """Run one measurement in a subprocess; ``{"error": ...}`` when it fails or times out."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--shape", ",".join(map(str, shape))]
    cmd += ["--roi", ",".join(map(str, roi)), "--overlap", str(overlap)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {res.returncode}: {tail}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _available_mb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) / 1024.0
    return float("nan")


def agreement(steps: int, shape: tuple[int, ...], patch: int, seed: int = 0) -> dict:
    """Train the tiny U-Net on `patch`³ sphere volumes; compare whole, sliding-window and one-window outputs."""
    import torch

    from medwss.eval.overlap import dice_per_class
    from medwss.seg.inference import segment_probs
    from medwss.seg.networks import size_multiple
    from medwss.seg.train import SegSample, SegTrainConfig, predict_probs, train_segmenter

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    samples = [SegSample(*spheres((patch,) * 3, rng, n=1)) for _ in range(8)]
    cfg = SegTrainConfig(
        spatial_dims=3, channels=CHANNELS, num_classes=2, loss="ce_dice", epochs=max(1, steps // 2),
        batch_size=4, lr=3e-3, augment=False, device="cpu", seed=seed, amp=False,
    )  # fmt: skip
    model, _ = train_segmenter(samples, cfg, progress=False)
    image, truth = spheres(shape, np.random.default_rng(seed + 1), n=6)
    m = size_multiple(CHANNELS)
    whole = predict_probs(model, [image], cfg, batch_size=1)[0]
    out: dict = {"shape": list(shape), "patch": patch, "train_steps": cfg.epochs * 2}
    out["dice_whole"] = float(dice_per_class(whole.argmax(0), truth, 2)[0])
    for name, roi, ov in (("sliding", (patch,) * 3, 0.5), ("one_window", None, 0.25)):
        p = segment_probs(model, image, roi, ov, multiple=m)
        out[name] = {
            "roi": list(roi) if roi else list(shape),
            "overlap": ov,
            "max_abs_diff": float(np.abs(p - whole).max()),
            "mean_abs_diff": float(np.abs(p - whole).mean()),
            "argmax_agreement": float((p.argmax(0) == whole.argmax(0)).mean()),
            "dice": float(dice_per_class(p.argmax(0), truth, 2)[0]),
        }
    return out


def _md(res: dict) -> str:
    lines = [
        "# Sliding-window vs whole-volume inference (tiny 3D U-Net, CPU, 1 thread)",
        "",
        f"Window {tuple(res['roi'])}, overlap {res['overlap']}, Gaussian blending. Peak RSS of a fresh subprocess "
        "(`ru_maxrss`); baseline = its RSS before inference (Python, torch, the float32 volume).",
        "",
        "| volume | method | baseline MB | peak MB | peak − baseline MB | seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in res["memory"]:
        if "error" in row or "skipped" in row:
            lines.append(f"| {row['shape']} | {row['method']} | – | – | – | {row.get('error') or row['skipped']} |")
            continue
        lines.append(
            f"| {row['shape']} | {row['method']} | {row['baseline_mb']:.0f} | {row['peak_mb']:.0f} | "
            f"{row['peak_mb'] - row['baseline_mb']:.0f} | {row['seconds']:.1f} |"
        )
    a = res["agreement"]
    lines += [
        "",
        f"## Agreement on a {tuple(a['shape'])} sphere volume (U-Net trained {a['train_steps']} steps on {a['patch']}³ patches)",
        "",
        f"Whole-volume Dice against the truth: {a['dice_whole']:.3f}.",
        "",
        "| vs whole volume | window | overlap | max abs diff | mean abs diff | argmax agreement | Dice vs truth |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for k in ("sliding", "one_window"):
        r = a[k]
        lines.append(
            f"| {k} | {tuple(r['roi'])} | {r['overlap']} | {r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} | "
            f"{r['argmax_agreement']:.4f} | {r['dice']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small volumes (smoke test, < 60 s)")
    ap.add_argument("--roi", default=None, help="window = training patch size (default 128,128,64; quick 32,32,32)")
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--full-whole", action="store_true", help="try whole-volume at full size if it should fit")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    roi = _ints(args.roi) if args.roi else ((32, 32, 32) if args.quick else (128, 128, 64))
    small, full = ((64, 64, 48), None) if args.quick else ((256, 256, 150), (512, 512, 300))
    rows: list[dict] = []
    for shape in (small, full) if full else (small,):
        for method in ("whole", "sliding"):
            row: dict = {"shape": "×".join(map(str, shape)), "method": method}
            if method == "whole" and shape == full and not args.quick:
                ref = next(r for r in rows if r["method"] == "whole" and "peak_mb" in r)
                need = (ref["peak_mb"] - ref["baseline_mb"]) * np.prod(full) / np.prod(small) + ref["baseline_mb"]
                row["estimated_peak_mb"] = float(need)
                if not args.full_whole or need > 0.5 * _available_mb():
                    row["skipped"] = (
                        f"not run: estimated {need / 1024:.1f} GB (8 × the 256×256×150 run) "
                        f"vs {_available_mb() / 1024:.1f} GB available"
                    )
                    rows.append(row)
                    continue
            row.update(measure(method, shape, roi, args.overlap, args.timeout))
            rows.append(row)
            print(row, flush=True)
    agree = agreement(
        6 if args.quick else 30, (48, 48, 32) if args.quick else (64, 64, 48), 32 if not args.quick else 16
    )
    res = {
        "quick": args.quick,
        "roi": list(roi),
        "overlap": args.overlap,
        "channels": list(CHANNELS),
        "memory": rows,
        "agreement": agree,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "sliding_window_quick" if args.quick else "sliding_window"
    from medwss.runinfo import write_results

    write_results(out, name, res, _md(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
