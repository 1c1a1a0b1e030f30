"""Slide reading throughput: medwss `Slide.read_region_mpp` (both backends) vs a bare OpenSlide loop.

Usage:
    python benchmarks/bench_slide_read.py [--quick] [--slide PATH --mpp-target 1.0] [--out benchmarks/results]

Without --slide, a synthetic pyramidal TIFF (JPEG tiles, 0.25 µm/px) is written to a temporary folder.
The same tile grid is read by every reader, in the same order, interleaved in rounds so that machine
noise hits all of them alike; the table reports tiles/s and the ratio to the bare OpenSlide loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _synthetic_slide(folder: Path, side: int) -> Path:
    from medwss.io.tiff_writer import write_pyramid_tiff

    rng = np.random.default_rng(0)
    coarse = rng.integers(120, 250, (side // 64, side // 64, 3)).astype(np.uint8)
    image = np.kron(coarse, np.ones((64, 64, 1), np.uint8))
    image = (image.astype(np.int16) + rng.integers(-12, 12, image.shape)).clip(0, 255).astype(np.uint8)
    return write_pyramid_tiff(image, folder / "bench.tif", mpp=0.25, tile=256, min_size=256)


def _grid(dims: tuple[int, int], step: int, n: int) -> list[tuple[int, int]]:
    xs = range(0, dims[0] - step, step)
    ys = range(0, dims[1] - step, step)
    return [(x, y) for y in ys for x in xs][:n]


def run(slide_path: Path, target_mpp: float, tile: int, n_tiles: int, rounds: int) -> dict:
    import openslide
    from PIL import Image

    from medwss.io.slide import Slide, open_slide
    from medwss.io.slide_tifffile import TiffFileBackend

    ours = open_slide(slide_path)
    fallback = Slide(TiffFileBackend(slide_path), slide_path, mpp=ours.mpp)
    bare = openslide.OpenSlide(str(slide_path))
    factor = target_mpp / ours.mpp
    level = bare.get_best_level_for_downsample(factor)
    ds = bare.level_downsamples[level]
    span = int(round(tile * factor))
    coords = _grid(ours.dimensions, span, n_tiles)
    read_size = (int(np.ceil(span / ds)), int(np.ceil(span / ds)))

    def bare_loop() -> None:
        for x, y in coords:
            img = bare.read_region((x, y), level, read_size).convert("RGB")
            np.asarray(img.resize((tile, tile), Image.Resampling.BILINEAR))

    readers = {
        "openslide bare loop": bare_loop,
        "medwss Slide (openslide)": lambda: [ours.read_region_mpp(c, (tile, tile), target_mpp) for c in coords],
        "medwss Slide (tifffile)": lambda: [fallback.read_region_mpp(c, (tile, tile), target_mpp) for c in coords],
    }
    times: dict[str, list[float]] = {k: [] for k in readers}
    for _ in range(rounds):
        for name, fn in readers.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = np.median(times["openslide bare loop"])
    rows = []
    for name, ts in times.items():
        med = float(np.median(ts))
        rows.append({"reader": name, "tiles_per_s": len(coords) / med, "ratio_to_bare_openslide": base / med})
    return {
        "slide": str(slide_path),
        "target_mpp": target_mpp,
        "tile": tile,
        "tiles": len(coords),
        "rounds": rounds,
        "level_used": level,
        "results": rows,
    }


def to_markdown(res: dict) -> str:
    lines = [
        f"Slide reading, {res['tiles']} tiles of {res['tile']} px at {res['target_mpp']} µm/px, median of {res['rounds']} rounds",
        "",
        "| reader | tiles/s | ratio to bare OpenSlide loop |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r['reader']} | {r['tiles_per_s']:.0f} | {r['ratio_to_bare_openslide']:.2f} |" for r in res["results"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--slide", type=Path, help="slide to read (default: a synthetic pyramid)")
    ap.add_argument("--mpp-target", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    side, n_tiles, rounds = (1024, 8, 1) if args.quick else (8192, 400, 5)
    with tempfile.TemporaryDirectory() as tmp:
        slide = args.slide or _synthetic_slide(Path(tmp), side)
        res = run(slide, args.mpp_target, 224, n_tiles, rounds)
    res["quick"] = args.quick
    name = "slide_read_quick" if args.quick else "slide_read"
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
