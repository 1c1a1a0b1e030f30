"""Augmentation speed: the batched pretraining `Augment` against the MONAI per-sample pipeline, side by side.

Usage:
    python benchmarks/augment_speed.py [--quick] [--tiles 256] [--size 96] [--device cpu]

On one batch of random RGB tiles (default 256 × 3 × 96 × 96), in one run, best of a few repeats:
  (a) `medwss.embed.pretrain.augment.Augment` (crop-and-resize, flips, 90° rotations, H&E stain,
      gamma/contrast/brightness, blur, noise) on the whole batch in a few torch ops;
  (b) the same kinds of transform as a MONAI `Compose` of dictionary transforms
      (`augment_pipeline(PRESETS["pretrain"])`) applied per sample by `augment_batch`;
and the share of (b) each MONAI step takes. The ratio (b)/(a) decides whether pretraining keeps
its batched op. Results: benchmarks/results/augment_speed[_quick].json/.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch


def _seconds(fn) -> float:  # noqa: ANN001
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(tiles: int, size: int, device: str, repeats: int) -> dict:
    from medwss.embed.pretrain.augment import Augment
    from medwss.train.device import resolve_device
    from medwss.transforms.augment import PRESETS, augment_batch, augment_pipeline

    dev = resolve_device(device)
    x = torch.rand(tiles, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)  # (B, 3, S, S)
    batched = Augment(spatial_dims=2, stain=True)
    pipeline = augment_pipeline(PRESETS["pretrain"], label_keys=(), mask_keys=())
    gen = torch.Generator().manual_seed(0)
    batched(x[:2], gen), augment_batch(pipeline, {"image": x[:2]}, seed=0)  # warm-up
    t_a, t_b = float("inf"), float("inf")
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t_a = min(t_a, _seconds(lambda: batched(x, gen)))
        t_b = min(t_b, _seconds(lambda: augment_batch(pipeline, {"image": x}, seed=0)))
    steps: dict[str, float] = {}
    pipeline.set_random_state(seed=0)
    samples = [{"image": x[i]} for i in range(tiles)]
    for step in pipeline.transforms:
        t0 = time.perf_counter()
        samples = [step(s) for s in samples]
        steps[type(step).__name__] = steps.get(type(step).__name__, 0.0) + time.perf_counter() - t0
    total = sum(steps.values())
    return {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "tiles": tiles,
        "size": size,
        "repeats": repeats,
        "seconds": {"a_batched_augment": t_a, "b_monai_per_sample": t_b},
        "tiles_per_s": {"a_batched_augment": tiles / t_a, "b_monai_per_sample": tiles / t_b},
        "ratio_b_over_a": t_b / t_a,
        "monai_step_share": {k: v / total for k, v in steps.items()},
    }


def to_markdown(r: dict) -> str:
    s, t = r["seconds"], r["tiles_per_s"]
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["monai_step_share"].items(), key=lambda kv: -kv[1]))
    return (
        f"Augmentation speed on {r['device']} ({r['device_name']}, {r['torch_threads']} threads), "
        f"{r['tiles']} tiles of 3×{r['size']}×{r['size']}, best of {r['repeats']}\n\n"
        "| path | seconds | tiles/s |\n|---|---:|---:|\n"
        f"| (a) batched `Augment` (pretraining) | {s['a_batched_augment']:.3f} | {t['a_batched_augment']:.0f} |\n"
        f"| (b) MONAI dictionary pipeline, per sample | {s['b_monai_per_sample']:.3f} | {t['b_monai_per_sample']:.0f} |\n\n"
        f"(b)/(a) = {r['ratio_b_over_a']:.1f} (time ratio; > 1: the batched op is faster)\n\n"
        f"Share of (b) per MONAI step: {shares}\n"
    )


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--tiles", type=int, default=256)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _h100)")
    args = ap.parse_args(argv)
    res = run(16, 32, args.device, 1) if args.quick else run(args.tiles, args.size, args.device, args.repeats)
    res["quick"] = args.quick
    name = ("augment_speed_quick" if args.quick else "augment_speed") + args.tag
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
