"""MIL on mosaic slides built from real EBHI H&E tiles: the whole slide pipeline, every aggregator, three encoders.

Usage:
    python benchmarks/mil_ebhi_mosaic.py [--data DIR] [--quick] [--seeds 0 1 2] [--insight-kwargs JSON]

Data (`medwss.data.mosaic.build_mosaics`, from ``DIR/histo/ebhi/manifest.csv``): slides of 8×8
real 224-px EBHI tiles inside a one-tile margin of blank glass, each split's slides built from that
split's patients only (train 40, val 16, test 30 slides; half positive). Background: benign tiles
(Normal, Polyp); positive slides: one 4-connected cluster of 4–12 malignant tiles (High-grade IN,
Adenocarcinoma); every slide, negative or positive, also holds 1–3 isolated Low-grade IN tiles
(benign look-alikes). Tiles are reused across slides (train has 291 benign and 136 malignant
tiles), each time with a random rotation and flip. Written as pyramidal JPEG TIFFs at a nominal
0.5 µm/px (EBHI stores none), with the malignant tiles' masks pasted as the ground truth.

Pipeline, each step a library function: mosaics → `medwss tile` (``--mpp 1.0 --tile-size 112``:
one tile per EBHI tile, read from pyramid level 1) → embeddings with three encoders: ``stats``
(weight-free colour/texture statistics), ``resnet18`` (MONAI ResNet-18, random init, half width)
and ``ssl_resnet18`` (the same network pretrained in-domain with `medwss.embed.pretrain.pretrain`,
SimCLR, on tiles of the train mosaics only) → every aggregator × seed trained on train/val
(`medwss.mil.workflow.train_from_manifest`, model selection on val loss) → per-tile scores on the
held-out test slides → dense heatmaps (`medwss.mil.heatmaps.dense_heatmap`) → slide AUC with a
bootstrap 95% CI, CAMELYON16-style FROC score (`medwss.eval.froc`), heatmap Dice at 0.5 against the
pasted masks (pixel Dice, on the heatmap grid of 2×2 cells per tile) and against the placed lesion
tiles (tile Dice) on the positive test slides, and the fraction of tiles flagged on negative test
slides. Heatmap files (`medwss.mil.workflow.write_heatmaps`: overlay PNG, pyramidal TIFF, GeoJSON)
are written for the first seed of INSIGHT.

What was cut to fit a 2-core CPU: 86 slides of 64 tiles; tiles read at 1 µm/px (112 px) rather than
0.5; half-width ResNet-18; SSL pretraining of 4 epochs on 20 tiles per train slide; 30 MIL epochs.
Measured: 1,120 s CPU (2,766 s wall on a machine loaded by other jobs); `--seeds 0` or fewer
`--aggregators` cut it further. ``--quick`` (smoke test): 10 slides of 4×4 tiles, stats and random
ResNet only (width 1/8), two aggregators, one seed, 2 epochs. ``--work DIR`` keeps and reuses the
mosaics, tiles, bags and SSL weights (MIL runs resume from their checkpoints; ``--tag`` gives a
variant its own run folders and result files).
Results: benchmarks/results/mil_ebhi_mosaic[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

AGGREGATORS = ["insight", "abmil", "clam_sb", "transmil", "mean", "max"]
ENCODERS = ["stats", "resnet18", "ssl_resnet18"]
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def build(args: argparse.Namespace, work: Path) -> Path:
    """The mosaics' manifest (reused when it exists)."""
    from medwss.data.mosaic import build_mosaics

    source = args.data / "histo" / "ebhi" / "manifest.csv"
    if not source.exists():
        raise SystemExit(f"{source}: EBHI manifest not found (pass --data, a folder laid out as ../shared/data/real)")
    return build_mosaics(
        source, work / "mosaics", {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        grid=(args.grid, args.grid), cluster=tuple(args.cluster), lookalikes=tuple(args.lookalikes),
        seed=args.data_seed, progress=False,
    )  # fmt: skip


def tile(manifest: Path, out: Path) -> None:
    """The tiling job of `medwss tile` at 1 µm/px, 112-px tiles (one per EBHI tile), no QA images (half the time)."""
    from medwss.data.manifest import load_manifest
    from medwss.embed.config import TileConfig
    from medwss.embed.tiling_job import tile_manifest

    cfg = TileConfig(mpp=1.0, tile_size=112, min_tissue=0.1, qa=False)
    if tile_manifest(load_manifest(manifest), out, cfg, progress=False)["failed"]:
        raise RuntimeError(f"tiling the mosaics failed; see {out}/failures.csv")


def make_encoder(key: str, args: argparse.Namespace, manifest: Path, tiles: Path, work: Path) -> tuple[Any, dict]:
    """The encoder `key` (the SSL one pretrained on the train mosaics' tiles) and a record of how it was made."""
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.embed.encoders import create_encoder

    if key == "stats":
        return create_encoder("stats"), {}
    torch.manual_seed(0)
    enc = create_encoder("resnet18", widen_factor=args.width)
    if key == "resnet18":
        return enc, {"widen_factor": args.width, "init": "random, seed 0"}
    from medwss.embed.pretrain import PretrainConfig, pretrain, tile_dataset

    weights = work / "ssl" / "ssl_resnet18.pt"
    if weights.exists():  # a finished pretraining in --work is reused
        enc = create_encoder("resnet18", weights=weights, widen_factor=args.width)
        return enc, {"widen_factor": args.width, "pretrain": f"reused {weights}"}
    train = load_manifest(manifest).split("train")
    data, groups, skipped = tile_dataset(train, tiles, max_tiles_per_case=args.ssl_tiles, seed=0)
    cfg = PretrainConfig(
        encoder="resnet18", encoder_kwargs={"widen_factor": args.width}, epochs=args.ssl_epochs, batch_size=64,
        device="cpu", out=str(weights),
    )  # fmt: skip
    t0 = time.perf_counter()
    res = pretrain(enc, data, cfg, groups=groups, progress=False)
    return enc, {"widen_factor": args.width, "pretrain_tiles": len(data), "pretrain_epochs": args.ssl_epochs,
                 "pretrain_skipped": skipped, "pretrain_loss": [h["loss"] for h in res["history"]],
                 "pretrain_seconds": time.perf_counter() - t0}  # fmt: skip


def embed(manifest: Path, tiles: Path, out: Path, encoder: Any) -> Path:
    """Bags of every case with `encoder` (an object, so any width or weights); one failing case is recorded."""
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.embed.engine import EmbedConfig, bag_from_tiles, embed_tiles
    from medwss.embed.job import bag_path, tiles_path, write_output_manifest
    from medwss.embed.reader import TileReader
    from medwss.embed.store import bag_is_done, save_bag
    from medwss.embed.tiles import load_tiles
    from medwss.jobs import FailureLog

    m = load_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    failures = FailureLog(out / "failures.csv")
    cfg = EmbedConfig(encoder=encoder.name, batch_size=64, workers=0, amp=False, device="cpu")
    encoder.eval()
    for case in m.cases:
        target = bag_path(out, case.case_id)
        if bag_is_done(target, encoder=encoder.name):
            continue
        try:
            reader = TileReader(load_tiles(tiles_path(tiles, case.case_id)), case.images, case.modality)
            features, tokens = embed_tiles(encoder, reader, cfg, torch.device("cpu"))
            reader.close()
            save_bag(bag_from_tiles(reader, features, tokens, encoder), target)
            failures.clear(case.case_id)
        except Exception as exc:  # one bad case is recorded and skipped
            failures.record(case.case_id, case.image, exc)
    return write_output_manifest(m, out)


def slide_geometry(case: Any) -> tuple[tuple[int, int], int, int]:
    """Level-0 (width, height), tile side and margin (tiles) of a mosaic from its manifest row."""
    rows, cols = (int(v) for v in case.meta["grid"].split("x"))
    t, margin = int(case.meta["tile_px"]), int(case.meta["margin_tiles"])
    return ((cols + 2 * margin) * t, (rows + 2 * margin) * t), t, margin


def evaluate(manifest: Path, aggregator: str, seed: int, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train one aggregator with one seed; score it on the test slides (see the module docstring)."""
    from medwss.data.manifest import Manifest, load_manifest
    from medwss.data.mosaic import read_layout
    from medwss.embed.store import load_bag
    from medwss.eval.froc import detections_from_heatmap, froc
    from medwss.eval.heatmap import rasterize_gt
    from medwss.eval.metrics import classification_report, dice, mean_ci
    from medwss.mil.heatmaps import dense_heatmap
    from medwss.mil.train import MILTrainConfig
    from medwss.mil.workflow import predict_manifest, train_from_manifest

    m = load_manifest(manifest)
    kwargs = dict(args.insight_kwargs) if aggregator == "insight" else {}
    settings = {"epochs": args.epochs, **args.train_kwargs}  # --train-kwargs may change the epochs too
    cfg = MILTrainConfig(aggregator=aggregator, seed=seed, aggregator_kwargs=kwargs, **settings)
    t0 = time.perf_counter()
    fit = train_from_manifest(m, cfg, out, progress=False)
    seconds = time.perf_counter() - t0
    cases, outs = predict_manifest(Manifest(m.path, m.split("test")), out / "model.pt")
    y = np.array([c.label for c in cases])
    p = np.array([float(o.probs[-1]) for o in outs])
    report = classification_report(y, p, seed=seed)
    pixel: list[float] = []
    tiles_d: list[float] = []
    neg_flagged: list[float] = []
    detections: list[np.ndarray] = []
    lesions: list[np.ndarray | None] = []
    ds: list[float] = []
    thr, root = args.threshold, Path(m.path).parent if m.path else Path.cwd()
    for c, o in zip(cases, outs, strict=True):
        assert c.features is not None and c.mask is not None
        fb = load_bag(c.features)
        assert fb.coords is not None
        scores = o.scores[:, -1].numpy()
        dims, t, margin = slide_geometry(c)
        hm = dense_heatmap(c, fb, scores, dims=dims)
        filled = np.nan_to_num(hm.heatmap, nan=0.0)
        assert hm.downsample is not None
        detections.append(detections_from_heatmap(filled, hm.downsample, threshold=0.05, min_distance=2))
        ds.append(hm.downsample)
        flagged = fb.coords[scores >= thr]
        cells = {(int(y0) // t - margin, int(x0) // t - margin) for x0, y0 in flagged}
        if c.label != 1:
            lesions.append(None)
            neg_flagged.append(len(cells) / len(read_layout(c.meta["layout"], root)))
            continue
        gt = rasterize_gt(c.mask, dims, hm.downsample, gt_downsample=float(c.meta["mask_downsample"]))
        lesions.append(gt)
        pixel.append(dice(filled >= thr, gt))
        truth = {(pl.row, pl.col) for pl in read_layout(c.meta["layout"], root) if pl.role == "lesion"}
        tiles_d.append(2 * len(cells & truth) / max(len(cells) + len(truth), 1))
    fr = froc(detections, lesions, ds) if any(g is not None for g in lesions) else None
    px, td = mean_ci(pixel, seed=seed), mean_ci(tiles_d, seed=seed)
    return {"aggregator": aggregator, "seed": seed, "auc": report["auc"], "auc_lo": report["auc_lo"],
            "auc_hi": report["auc_hi"], "balanced_accuracy": report["balanced_accuracy"],
            "dice": px[0], "dice_lo": px[1], "dice_hi": px[2], "tile_dice": td[0], "tile_dice_lo": td[1],
            "tile_dice_hi": td[2], "neg_flagged": float(np.mean(neg_flagged)) if neg_flagged else float("nan"),
            "froc": float(fr.score) if fr is not None else float("nan"), "n_test": len(cases), "n_dice": len(pixel),
            "train_seconds": seconds, "best_epoch": fit.get("best_epoch"), "stopped_early": fit.get("stopped_early")}  # fmt: skip


def reference_dice(manifest: Path) -> dict[str, float]:
    """Pixel Dice on the positive test slides of two reference heatmaps, and the tile Dice of the second.

    ``oracle_pixel``: a perfect tile-level heatmap (every lesion tile 1, else 0) against the pasted
    masks: the best a heatmap on the tile grid can score. ``all_pixel`` / ``all_tile``: a heatmap
    that flags every tile: what a method that has learned nothing spatial scores.
    """
    from medwss.data.manifest import load_manifest
    from medwss.data.mosaic import read_layout
    from medwss.eval.heatmap import rasterize_gt, resample_mask
    from medwss.eval.metrics import dice

    out: dict[str, list[float]] = {"oracle_pixel": [], "all_pixel": [], "all_tile": []}
    for c in load_manifest(manifest).split("test"):
        if c.label != 1 or c.mask is None:
            continue
        dims, t, margin = slide_geometry(c)
        lesion = np.zeros((dims[1] // t, dims[0] // t), bool)
        tissue = np.zeros_like(lesion)
        lay = read_layout(c.meta["layout"], manifest.parent)
        for pl in lay:
            lesion[pl.row + margin, pl.col + margin] |= pl.role == "lesion"
            tissue[pl.row + margin, pl.col + margin] = True
        ds = t / 2
        gt = rasterize_gt(c.mask, dims, ds, gt_downsample=float(c.meta["mask_downsample"]))
        out["oracle_pixel"].append(dice(resample_mask(lesion, t, ds, dims), gt))
        out["all_pixel"].append(dice(resample_mask(tissue, t, ds, dims), gt))
        out["all_tile"].append(dice(tissue, lesion))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}


def tile_probe(manifest: Path) -> dict[str, float]:
    """How separable the tiles are in an encoder's space, with tile labels (which MIL never sees).

    A standardised logistic regression on the train slides' tiles (lesion tile or not), scored on
    the test slides' tiles: AUC lesion vs every other tile, and lesion vs look-alike tiles only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medwss.data.manifest import load_manifest
    from medwss.data.mosaic import read_layout
    from medwss.embed.store import load_bag

    m = load_manifest(manifest)
    root = Path(m.path).parent if m.path else Path.cwd()
    xy: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for c in m.cases:
        if c.split not in xy or c.features is None:
            continue
        fb = load_bag(c.features)
        _, t, margin = slide_geometry(c)
        roles = {(p.row, p.col): p.role for p in read_layout(c.meta["layout"], root)}
        assert fb.coords is not None
        for f, (x0, y0) in zip(np.asarray(fb.features, np.float32), fb.coords, strict=True):
            xy[c.split][0].append(f)
            xy[c.split][1].append(roles.get((int(y0) // t - margin, int(x0) // t - margin), "background"))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(np.stack(xy["train"][0]), np.array(xy["train"][1]) == "lesion")
    roles_test = np.array(xy["test"][1])
    p = model.predict_proba(np.stack(xy["test"][0]))[:, 1]
    look = roles_test != "background"
    out = {"auc_lesion_vs_rest": float(roc_auc_score(roles_test == "lesion", p))}
    if (roles_test == "lookalike").any():
        out["auc_lesion_vs_lookalike"] = float(roc_auc_score(roles_test[look] == "lesion", p[look]))
    return out


def data_stats(manifest: Path, tiles: Path) -> dict[str, Any]:
    from medwss.data.manifest import load_manifest
    from medwss.data.mosaic import read_layout
    from medwss.embed.tiles import load_tiles

    m = load_manifest(manifest)
    stats: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        cs = m.split(split)
        layouts = [read_layout(c.meta["layout"], manifest.parent) for c in cs]
        sources = {p.case_id for lay in layouts for p in lay}
        n_tiles = [
            len(load_tiles(tiles / f"{c.case_id}.tiles.h5")) for c in cs if (tiles / f"{c.case_id}.tiles.h5").exists()
        ]
        stats[split] = {"slides": len(cs), "positive": sum(c.label == 1 for c in cs),
                        "source_tiles": len(sources), "source_patients": len({p.patient_id for lay in layouts for p in lay}),
                        "placements_per_source_tile": sum(len(lay) for lay in layouts) / max(len(sources), 1),
                        "lesion_tiles_mean": float(np.mean([int(c.meta["lesion_tiles"]) for c in cs if c.label == 1] or [0])),
                        "bag_tiles_mean": float(np.mean(n_tiles)) if n_tiles else 0.0}  # fmt: skip
    return stats


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for enc in ENCODERS:
        for agg in AGGREGATORS:
            rs = [r for r in runs if r["encoder"] == enc and r["aggregator"] == agg]
            if not rs:
                continue
            col = lambda k, rs=rs: np.array([r[k] for r in rs], float)  # noqa: E731
            row: dict[str, Any] = {"encoder": enc, "aggregator": agg, "seeds": len(rs), "n_test": rs[0]["n_test"],
                                   "n_dice": rs[0]["n_dice"]}  # fmt: skip
            for k in ("auc", "dice", "tile_dice", "froc", "neg_flagged", "train_seconds"):
                row[f"{k}_mean"], row[f"{k}_sd"] = float(np.nanmean(col(k))), float(np.nanstd(col(k)))
            for k in ("auc", "dice", "tile_dice"):
                row[f"{k}_ci_lo_mean"] = float(np.nanmean(col(f"{k}_lo")))
                row[f"{k}_ci_hi_mean"] = float(np.nanmean(col(f"{k}_hi")))
            rows.append(row)
    return rows


def _fmt(r: dict, k: str, ci: bool = True) -> str:
    if np.isnan(r[f"{k}_mean"]):
        return "—"
    s = f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_sd']:.3f}"
    return s + (f" [{r[f'{k}_ci_lo_mean']:.2f}, {r[f'{k}_ci_hi_mean']:.2f}]" if ci else "")


def to_markdown(res: dict) -> str:
    d = res["data"]
    lines = [
        f"MIL on EBHI mosaic slides ({d['train']['slides']}/{d['val']['slides']}/{d['test']['slides']} train/val/test "
        f"slides of {res['grid']}×{res['grid']} real tiles, split by source patient), seeds {res['seeds']}, "
        f"{res['epochs']} epochs; mean ± sd over seeds [mean of the per-seed bootstrap 95% CIs]. Pixel Dice "
        "against the pasted masks and tile Dice against the placed lesion tiles on the "
        f"{res['summary'][0]['n_dice'] if res['summary'] else 0} positive test slides; 'neg flagged': fraction of "
        f"tiles scored ≥ 0.5 on negative test slides. References: a perfect tile-level heatmap scores pixel Dice "
        f"{res['reference_dice']['oracle_pixel']:.3f}; one that flags every tile scores pixel Dice "
        f"{res['reference_dice']['all_pixel']:.3f} and tile Dice {res['reference_dice']['all_tile']:.3f}.",
        "",
        "| encoder | aggregator | test AUC | pixel Dice | tile Dice | FROC | neg flagged | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["summary"]:
        lines.append(
            f"| {r['encoder']} | {r['aggregator']} | {_fmt(r, 'auc')} | {_fmt(r, 'dice')} | {_fmt(r, 'tile_dice')} | "
            f"{_fmt(r, 'froc', False)} | {_fmt(r, 'neg_flagged', False)} | {r['train_seconds_mean']:.0f} |"
        )
    lines += ["", "Encoders: tile-level linear probe (tile labels, which MIL never sees; train slides' tiles → test "
              "slides' tiles) and embedding time:", "",
              "| encoder | dim | probe AUC lesion vs rest | probe AUC lesion vs look-alike | embed s | notes |",
              "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for key, e in res["encoders"].items():
        probe = e.get("tile_probe", {})
        notes = ", ".join(f"{k} {v}" for k, v in e.items() if k in ("widen_factor", "init", "pretrain_tiles",
                                                                     "pretrain_epochs", "pretrain"))  # fmt: skip
        if e.get("pretrain_loss"):
            notes += f", SSL loss {e['pretrain_loss'][0]:.2f} → {e['pretrain_loss'][-1]:.2f}"
        lines.append(f"| {key} | {e['embed_dim']} | {probe.get('auc_lesion_vs_rest', float('nan')):.3f} | "
                     f"{probe.get('auc_lesion_vs_lookalike', float('nan')):.3f} | {e['embed_seconds']:.0f} | {notes} |")  # fmt: skip
    cpu = f", {res['cpu_seconds']:.0f} s CPU" if res.get("cpu_seconds") else ""
    lines += ["", f"INSIGHT kwargs: `{json.dumps(res['insight_kwargs'])}`; train kwargs: `{json.dumps(res['train_kwargs'])}`; "
              f"total {res['seconds']:.0f} s wall{cpu}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _cpu_seconds() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return float(u.ru_utime + u.ru_stime)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.runinfo import versions, write_results

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder laid out as ../shared/data/real")
    ap.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--aggregators", nargs="+", default=AGGREGATORS, choices=AGGREGATORS)
    ap.add_argument("--encoders", nargs="+", default=ENCODERS, choices=ENCODERS)
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=30)
    ap.add_argument("--grid", type=int, default=8, help="tiles per side of a mosaic")
    ap.add_argument("--cluster", type=int, nargs=2, default=[4, 12], help="lesion cluster size (min, max) tiles")
    ap.add_argument("--lookalikes", type=int, nargs=2, default=[1, 3], help="isolated Low-grade IN tiles per slide")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threshold", type=float, default=0.5, help="heatmap threshold of the Dice scores")
    ap.add_argument("--width", type=float, default=0.5, help="ResNet-18 widen factor")
    ap.add_argument("--ssl-epochs", type=int, default=4)
    ap.add_argument("--ssl-tiles", type=int, default=20, help="SSL pretraining tiles per train slide")
    ap.add_argument("--insight-kwargs", type=json.loads, default={}, help="JSON of INSIGHT options")
    ap.add_argument(
        "--train-kwargs", type=json.loads, default={}, help="JSON of MILTrainConfig fields (all aggregators)"
    )
    ap.add_argument("--tag", default="", help="suffix of the result files and run folders (a variant's results)")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one; reused steps are kept)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.grid, args.cluster = args.seeds[:1], 2, 4, [2, 4]
        args.n_train, args.n_val, args.n_test, args.width = 4, 2, 4, 0.125
        args.aggregators, args.encoders = args.aggregators[:2], [e for e in args.encoders if e != "ssl_resnet18"]
    t0 = time.perf_counter()
    runs: list[dict] = []
    encoders: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        manifest = build(args, work)
        stages = {"build": time.perf_counter() - t0}
        tiles = work / "tiles"
        tile(manifest, tiles)
        stages["tile"] = time.perf_counter() - t0 - stages["build"]
        print(f"mosaics {stages['build']:.0f} s, tiles {stages['tile']:.0f} s", flush=True)
        for key in args.encoders:
            te = time.perf_counter()
            enc, info = make_encoder(key, args, manifest, tiles, work)
            te_embed = time.perf_counter()
            bags = embed(manifest, tiles, work / f"bags_{key}", enc)
            encoders[key] = {**info, "embed_dim": int(enc.embed_dim), "embed_seconds": time.perf_counter() - te_embed,
                             "seconds": time.perf_counter() - te, "tile_probe": tile_probe(bags)}  # fmt: skip
            for agg in args.aggregators:
                for seed in args.seeds:
                    r = evaluate(bags, agg, seed, work / f"runs{args.tag}" / f"{key}_{agg}_{seed}", args)
                    runs.append({"encoder": key, **r})
                    print(f"{key} {agg} seed {seed}: AUC {r['auc']:.3f} Dice {r['dice']:.3f} tile Dice "
                          f"{r['tile_dice']:.3f} FROC {r['froc']:.3f} ({r['train_seconds']:.0f} s)", flush=True)  # fmt: skip
            if "insight" in args.aggregators:
                from medwss.data.manifest import Manifest, load_manifest
                from medwss.mil.workflow import write_heatmaps

                bm = load_manifest(bags)
                run = work / f"runs{args.tag}" / f"{key}_insight_{args.seeds[0]}"
                hm = write_heatmaps(Manifest(bm.path, bm.split("test")), run / "model.pt", run / "heatmaps",
                                    progress=False)  # fmt: skip
                encoders[key]["heatmap_files"] = {"done": hm["done"], "failed": hm["failed"]}
        stats = data_stats(manifest, tiles)
        reference = reference_dice(manifest)
    res = {"quick": args.quick, "tag": args.tag, "seeds": args.seeds, "epochs": args.epochs, "grid": args.grid,
           "cluster": args.cluster, "lookalikes": args.lookalikes, "data_seed": args.data_seed,
           "insight_kwargs": args.insight_kwargs, "train_kwargs": args.train_kwargs, "threshold": args.threshold,
           "stages_seconds": stages, "data": stats, "reference_dice": reference, "encoders": encoders, "runs": runs, "summary": summarise(runs),
           "seconds": time.perf_counter() - t0, "cpu_seconds": _cpu_seconds(), "versions": versions()}  # fmt: skip
    name = "mil_ebhi_mosaic" + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")
    write_results(args.out, name, res, to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
