"""Embedding throughput: `medwss embed` end to end against the encoder's compute limit and a MONAI loop.

Usage:
    python benchmarks/embed_throughput.py [--quick] [--encoder resnet18] [--slide PATH] [--device auto]

On one slide (default: a phantom slide written to a temporary folder) and one encoder, in one run:
  (a) end-to-end tiles/s of `medwss embed` (tiles read and decoded in background threads while the
      encoder runs; bag written);
  (b) the encoder's forward-only tiles/s on the same tiles already decoded into tensors (the compute
      limit);
  (c) a straightforward loop over MONAI's `PatchWSIDataset` (OpenSlide reader) with a DataLoader
      (2 worker processes) feeding the same encoder;
  (d) tissue detection plus tiling alone, in tiles/s.
Targets: (a)/(b) >= 0.9 and (a)/(c) >= 1.5. Results: benchmarks/results/embed_throughput[_quick].json/.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _phantom_slide(folder: Path, scale: float) -> tuple[Path, Path]:
    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms import generate

    manifest = generate("wsi", folder / "wsi", n=2, seed=11, scale=scale, progress=False)
    case = max(load_manifest(manifest).cases, key=lambda c: c.label or 0)
    return case.image, manifest


def _time(fn, repeats: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(
    slide_path: Path,
    encoder_name: str,
    tile: int,
    mpp: float | None,
    batch: int,
    device: str,
    repeats: int,
    max_tiles: int | None = None,
) -> dict:
    from medwss.embed.encoders import create_encoder
    from medwss.embed.engine import EmbedConfig, embed_tiles
    from medwss.embed.reader import TileReader
    from medwss.embed.tiling import tile_slide
    from medwss.embed.tissue import detect_tissue
    from medwss.io.slide import open_slide
    from medwss.train.device import resolve_device

    dev = resolve_device(device)
    slide = open_slide(slide_path)
    target_mpp = mpp or slide.mpp

    # (d) tissue detection + tiling
    holder: dict = {}

    def tiling() -> None:
        tissue = detect_tissue(slide)
        holder["tiles"] = tile_slide(slide, "bench", tile_size=tile, mpp=target_mpp, tissue=tissue)

    t_tiling = _time(tiling, repeats)
    tiles = holder["tiles"]
    if max_tiles:
        tiles = tiles.subset(np.arange(min(len(tiles), max_tiles)))
    n = len(tiles)
    encoder = create_encoder(encoder_name, spatial_dims=2, in_channels=3).to(dev).eval()
    cfg = EmbedConfig(encoder=encoder_name, batch_size=batch, workers=2, device=str(dev))

    # (b) forward only, on pre-decoded tensors
    reader = TileReader(tiles)
    decoded = [
        torch.from_numpy(np.stack([reader.read(i) for i in range(s, min(s + batch, n))])) for s in range(0, n, batch)
    ]
    decoded = [d.to(dev) for d in decoded]

    @torch.inference_mode()
    def forward_only() -> None:
        for x in decoded:
            with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                encoder(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    forward_only()  # warm-up (allocations, cuDNN autotune)
    t_forward = _time(forward_only, repeats)

    # (a) end to end: medwss embed on the same tiles
    def ours() -> None:
        r = TileReader(tiles)
        embed_tiles(encoder, r, cfg, dev)
        r.close()

    ours()  # warm-up (lazy imports, first slide reads)
    t_ours = _time(ours, repeats)

    # (c) MONAI PatchWSIDataset + DataLoader
    from monai.data import DataLoader, PatchWSIDataset

    level = slide.best_level_for_downsample(target_mpp / slide.mpp)
    span = int(round(tile * target_mpp / slide.mpp / slide.level_downsamples[level]))
    data = [{"image": str(slide_path), "location": [int(y), int(x)], "label": 0} for x, y in tiles.coords]
    from monai.transforms import Compose, Lambda, Resize, ScaleIntensityRange

    tfm = Compose([ScaleIntensityRange(0, 255, 0, 1), Resize((tile, tile)) if span != tile else Lambda(lambda d: d)])
    ds = PatchWSIDataset(data, patch_size=span, patch_level=level, center_location=False, reader="OpenSlide",
                         include_label=False, transform=lambda d: {**d, "image": tfm(d["image"])})  # fmt: skip
    loader = DataLoader(ds, batch_size=batch, num_workers=2, pin_memory=dev.type == "cuda")

    @torch.inference_mode()
    def monai_loop() -> None:
        for b in loader:
            x = torch.as_tensor(b["image"]).to(dev, non_blocking=True).float()
            with torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"):
                encoder(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    monai_loop()  # warm-up
    t_monai = _time(monai_loop, repeats)
    rates = {"a_medwss_embed": n / t_ours, "b_forward_only": n / t_forward, "c_monai_patchwsidataset": n / t_monai,
             "d_tissue_and_tiling": n / t_tiling}  # fmt: skip
    return {
        "slide": str(slide_path),
        "encoder": encoder_name,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "tiles": n,
        "tile": tile,
        "mpp": target_mpp,
        "batch": batch,
        "repeats": repeats,
        "tiles_per_s": rates,
        "ratio_a_over_b": rates["a_medwss_embed"] / rates["b_forward_only"],
        "ratio_a_over_c": rates["a_medwss_embed"] / rates["c_monai_patchwsidataset"],
    }


def to_markdown(r: dict) -> str:
    t = r["tiles_per_s"]
    return (
        f"Embedding throughput, {r['encoder']} on {r['device']} ({r['device_name']}), {r['tiles']} tiles of "
        f"{r['tile']} px at {r['mpp']:.3g} µm/px, batch {r['batch']}, best of {r['repeats']}\n\n"
        "| path | tiles/s |\n|---|---:|\n"
        f"| (a) medwss embed, end to end | {t['a_medwss_embed']:.1f} |\n"
        f"| (b) encoder forward only, pre-decoded | {t['b_forward_only']:.1f} |\n"
        f"| (c) MONAI PatchWSIDataset + DataLoader | {t['c_monai_patchwsidataset']:.1f} |\n"
        f"| (d) tissue detection + tiling | {t['d_tissue_and_tiling']:.0f} |\n\n"
        f"(a)/(b) = {r['ratio_a_over_b']:.2f} (target >= 0.9); (a)/(c) = {r['ratio_a_over_c']:.2f} (target >= 1.5)\n"
    )


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--slide", type=Path, help="slide (default: a phantom slide)")
    ap.add_argument("--mpp", type=float, help="target µm/px (default: the slide's own)")
    ap.add_argument("--tile", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _h100)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.slide:
            slide = args.slide
        else:
            slide, _ = _phantom_slide(Path(tmp), 0.5 if args.quick else 2.0)
        tile = 64 if args.quick else args.tile
        res = run(
            slide,
            "stats" if args.quick else args.encoder,
            tile,
            args.mpp,
            args.batch,
            args.device,
            1 if args.quick else 2,
            48 if args.quick else None,
        )
    res["quick"] = args.quick
    name = ("embed_throughput_quick" if args.quick else "embed_throughput") + args.tag
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
