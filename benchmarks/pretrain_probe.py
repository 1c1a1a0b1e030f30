"""Linear probe of tumour vs normal tiles: in-domain pretrained encoder vs the same encoder at random init vs `stats`.

Usage:
    python benchmarks/pretrain_probe.py [--quick] [--seeds 100 101 102 103 104] [--out benchmarks/results]

Per seed: WSI phantoms for training (6 slides) and, from another phantom seed, held-out slides
for testing (4 slides); 32 px tiles at 1 µm/px on a regular grid inside the ground-truth tissue,
labelled from the ground-truth tumour mask (1: at least half tumour, 0: none; tiles in between
left out). A ResNet-18 (widen factor 0.25) is initialised with the seed; its features are probed,
then it is pretrained with NT-Xent (10 epochs, on the training slides' tiles, no labels) and
probed again; the weight-free `stats` encoder is the baseline. Probes are standardised logistic
regressions, trained on all training tiles ("all") or on 16 tiles per class (mean of 5 draws,
"16/class"), always scored on the held-out slides. The table gives mean ± sd of the AUC over seeds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def phantom_tiles(out: Path, n: int, seed: int, scale: float, tile: int, mpp: float):
    """Tiles (N, 3, S, S) in [0, 1] and labels of `n` WSI phantoms, on a grid inside the tissue."""
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms import generate
    from medwss.embed.pretrain.probe import labelled_phantom_tiles
    from medwss.embed.reader import TileReader

    manifest = load_manifest(generate("wsi", out, n=n, seed=seed, scale=scale, progress=False))
    xs, ys = [], []
    for case in manifest:
        tiles, labels = labelled_phantom_tiles(case, manifest.path.parent, tile, mpp, min_tissue=0.75)
        reader = TileReader(tiles, case.images, case.modality)
        xs += [reader.read(i) for i in range(len(tiles))]
        ys.append(labels)
    return torch.from_numpy(np.stack(xs)), np.concatenate(ys)


def probes(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray, seed: int) -> dict:
    from medwss.embed.pretrain import linear_probe

    out = {"all": linear_probe(f_train, y_train, f_test, y_test)["auc"]}
    rng = np.random.default_rng(seed)
    few = []
    k = min(16, *(int((y_train == c).sum()) for c in (0, 1)))  # 16 unless a class has fewer tiles
    for _ in range(5):
        idx = np.concatenate([rng.choice(np.flatnonzero(y_train == c), k, replace=False) for c in (0, 1)])
        few.append(linear_probe(f_train[idx], y_train[idx], f_test, y_test)["auc"])
    out["16/class"] = float(np.mean(few))
    return out


def run_seed(seed: int, folder: Path, s: dict) -> dict:
    import torch

    from medwss.embed.encoders import create_encoder
    from medwss.embed.pretrain import PretrainConfig, embed, pretrain

    t0 = time.perf_counter()
    x_train, y_train = phantom_tiles(
        folder / f"train{seed}", s["train_slides"], 10_000 + seed, s["scale"], s["tile"], s["mpp"]
    )
    x_test, y_test = phantom_tiles(
        folder / f"test{seed}", s["test_slides"], 20_000 + seed, s["scale"], s["tile"], s["mpp"]
    )
    row: dict = {"seed": seed, "train_tiles": len(x_train), "test_tiles": len(x_test)}
    row["train_tumour_fraction"], row["test_tumour_fraction"] = float(y_train.mean()), float(y_test.mean())
    stats = create_encoder("stats")
    row["stats"] = probes(embed(stats, x_train), y_train, embed(stats, x_test), y_test, seed)
    torch.manual_seed(seed)
    enc = create_encoder("resnet18", widen_factor=s["widen_factor"])
    row["random_init"] = probes(embed(enc, x_train), y_train, embed(enc, x_test), y_test, seed)
    cfg = PretrainConfig(
        encoder_kwargs={"widen_factor": s["widen_factor"]}, epochs=s["epochs"], batch_size=64, seed=seed
    )
    t1 = time.perf_counter()
    history = pretrain(enc, x_train, cfg, progress=False)["history"]
    row["pretrain_seconds"] = time.perf_counter() - t1
    row["pretrain_loss"] = [h["loss"] for h in history]
    row["pretrained"] = probes(embed(enc, x_train), y_train, embed(enc, x_test), y_test, seed)
    row["seconds"] = time.perf_counter() - t0
    return row


ENCODERS = ("pretrained", "random_init", "stats")
PROBES = ("all", "16/class")


def summarise(rows: list[dict]) -> dict:
    out = {}
    for enc in ENCODERS:
        for probe in PROBES:
            v = np.array([r[enc][probe] for r in rows], dtype=float)
            out[f"{enc} {probe}"] = {
                "mean": float(np.nanmean(v)),
                "sd": float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0,
            }
    wins = [r["pretrained"]["all"] > r["random_init"]["all"] for r in rows]
    out["pretrained_beats_random_init_all"] = f"{sum(wins)}/{len(wins)} seeds"
    return out


def to_markdown(res: dict) -> str:
    s = res["settings"]
    lines = [
        f"Linear probe, tumour vs normal tiles of WSI phantoms ({s['tile']} px at {s['mpp']} µm/px), "
        f"held-out slides; AUC mean ± sd over {len(res['seeds'])} seeds; pretraining {s['epochs']} epochs, "
        f"ResNet-18 ×{s['widen_factor']}",
        "",
        "| encoder | AUC, probe on all training tiles | AUC, probe on 16 tiles per class |",
        "|---|---:|---:|",
    ]
    names = {
        "pretrained": "resnet18, in-domain pretrained (NT-Xent)",
        "random_init": "resnet18, random init",
        "stats": "stats (weight-free)",
    }
    for enc in ENCODERS:
        cells = [
            f"{res['summary'][f'{enc} {p}']['mean']:.4f} ± {res['summary'][f'{enc} {p}']['sd']:.4f}" for p in PROBES
        ]
        lines.append(f"| {names[enc]} | {' | '.join(cells)} |")
    lines += ["", f"Pretrained > random init (all tiles): {res['summary']['pretrained_beats_random_init_all']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test (not a measurement)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default 100 101 102 103 104; quick: 100)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.quick:
        settings = {
            "train_slides": 3,
            "test_slides": 2,
            "scale": 0.5,
            "tile": 32,
            "mpp": 1.0,
            "epochs": 1,
            "widen_factor": 0.125,
        }
    else:
        settings = {
            "train_slides": 6,
            "test_slides": 4,
            "scale": 0.5,
            "tile": 32,
            "mpp": 1.0,
            "epochs": 10,
            "widen_factor": 0.25,
        }
    seeds = args.seeds or ([100] if args.quick else [100, 101, 102, 103, 104])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for seed in seeds:
            rows.append(run_seed(seed, Path(tmp), settings))
            r = rows[-1]
            print(
                f"seed {seed}: " + ", ".join(f"{e} {r[e]['all']:.4f}/{r[e]['16/class']:.4f}" for e in ENCODERS),
                file=sys.stderr,
            )
    from medwss.runinfo import versions

    res = {
        "quick": args.quick,
        "settings": settings,
        "seeds": seeds,
        "summary": summarise(rows),
        "per_seed": rows,
        "seconds": time.perf_counter() - t0,
        "versions": versions(),
    }
    name = "pretrain_probe_quick" if args.quick else "pretrain_probe"
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
