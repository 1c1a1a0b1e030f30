"""Box pseudo-labels on real colonoscopy frames (Kvasir-SEG): every box segmenter against the raw box.

Usage:
    python benchmarks/pseudo_polyp.py [--data DIR] [--quick] [--config configs/pseudo_polyp.yaml]
        [--sam-checkpoint PATH --sam-flavour sam|medsam] [--out benchmarks/results] [--name NAME]

    python benchmarks/pseudo_polyp.py --config configs/pseudo_polyp_6ep.yaml --name pseudo_polyp_6ep
        # the first recipe (6 epochs); configs/pseudo_polyp_long.yaml: 15 epochs of it, one seed
    python benchmarks/pseudo_polyp.py --config configs/pseudo_polyp_gcd2.yaml --name pseudo_polyp_gcd2 --workers 2
        # the shipped setting: GrabCut grown by 2 px (``dilate``), box-ignore (``inside_for: [grabcut]``)

Data: ``DIR/endo/polyp`` (the layout of ``../shared/data/real``): 1,000 Kvasir-SEG RGB frames of
256×256 with manual polyp masks, the manifest's split by frame (train 600 / val 200 / test 200).
What is cut to fit about 45-60 minutes on one CPU thread (full mode, `configs/pseudo_polyp.yaml`):

* frames are resized to 128×128 (area average; masks: area > 0.5) for box segmentation and
  training; test Dice/IoU are computed at the full 256×256 on the original masks (probabilities
  upsampled bilinearly). Pseudo-label Dice is scored at 128×128 against the resized masks;
* a seeded subset of 200 training frames (of 600) gets pseudo-labels and trains the networks;
  settings are chosen on 60 val frames (a seeded subset of 200); all 200 test frames are scored;
* the U-Net is small (MONAI UNet 8-16-32-64, one residual unit per level) and trains for 600 steps
  of 8 frames (24 passes) with a one-cycle learning rate (peak 3e-3), flips, 90° turns, a mild
  affine and colour jitter, keeping the last weights (`medwss.seg.train.Recipe` through
  `medwss.seg.train_segmenter` on `medwss.train.fit`, CE + soft Dice on the labelled pixels). That
  recipe was chosen on the val frames, where it lifts full supervision from 0.41 to 0.55 val Dice
  and puts it above the raw box (0.50); the first recipe (6 epochs of 25 steps, constant rate,
  flips and intensity jitter, `configs/pseudo_polyp_6ep.yaml`) left full masks at about 0.4 test
  Dice, no better than the raw box. The U-Net trains on the sets of ``train_sets`` (full, raw
  jittered box, the val-best refiner on jittered boxes and its box-ignore variant: the refined
  mask as polyp, the rest of each box ignored, outside the boxes background), each on three seeds
  (``seed_sets``); the segmenters' settings are fixed to the first recipe's val winners.

Weak labels come from the masks: one box per connected component (``boxes_from_labels``) — tight —
and the same boxes with each side moved by up to ±10 % of the box size (``jitter_boxes``, seeded
per frame), as a detector would give. Every box segmenter (raw box, random walker, Chan-Vese,
Otsu, GrabCut-style; SAM/MedSAM through the adapter only with ``--sam-checkpoint``) turns them into
pseudo-labels (`boxes_to_labels`: a one-pixel ignore ring on each side of every refined mask; none
for the raw box). Each segmenter's settings (colour feature, beta, ...) are chosen on the val
frames with jittered boxes, by pooled pseudo-label Dice, and used for both kinds of box. Points (5
clicks per polyp) and scribbles (skeletons) from `make_weak_label`, with its background marks,
feed AGMM's offline refiner (`gmm_refine` on CIELAB, smoothed CIELAB and position features; its
confidence and position weight chosen on val). Stage 2 trains the U-Net on each pseudo-label set,
on the raw boxes and on the full masks, and reports test Dice/IoU with 95 % bootstrap intervals over
test frames (per-frame scores averaged over seeds), and the paired difference to the raw box of
the same kind. Results: ``benchmarks/results/pseudo_polyp[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medwss.config import StrictConfig  # noqa: E402
from medwss.eval.metrics import mean_ci  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"
KINDS = ("tight", "jitter")


class PolypBenchConfig(StrictConfig):
    """Settings of the Kvasir box benchmark (stored as given; `configs/pseudo_polyp*.yaml`)."""

    size: int = 128
    """Side of the frames for box segmentation and training (test scores at the stored size)."""
    n_train: int = 300
    n_val: int = 60
    n_test: int | None = None
    """Test frames scored (None: all)."""
    jitter: float = 0.1
    kinds: list[Literal["tight", "jitter"]] = ["tight", "jitter"]
    """Kinds of box that get pseudo-labels (tight: the masks' boxes; jitter: those moved)."""
    min_component: int = 10
    """Smallest mask component (pixels at `size`) that gets a box."""
    ring: int = 1
    segmenters: dict[str, list[dict[str, Any]]] = {
        "random_walker": [{"beta": 130.0, "core": 0.3}],
        "chan_vese": [{"colour": "contrast"}],
        "otsu": [{"colour": "contrast"}],
        "grabcut": [{"colour": "lab"}],
    }
    """Settings tried on the val frames, per segmenter (the first wins ties)."""
    agmm_points: int = 5
    agmm_confidence: list[float] = [0.6, 0.8]
    agmm_position: list[float] = [0.3, 1.0]
    bg_margin: int = 3
    """Background marks of the simulated points/scribbles: a ring this far outside the polyp (+ strokes)."""
    epochs: int = 6
    channels: tuple[int, ...] = (8, 16, 32, 64)
    batch_size: int = 8
    lr: float = 3e-3
    steps: int | None = None
    """Optimiser steps of each U-Net training (the frames are cycled); None: `epochs` passes."""
    schedule: Literal["constant", "onecycle"] = "constant"
    """Learning rate: constant `lr`, or one cycle (10 % warm-up to `lr`, cosine decay to ~0)."""
    augment: dict[str, Any] | None = None
    """`medwss.transforms.augment.AugmentConfig` fields of the training augmentation; None: the
    ``segmentation`` preset (flips, mild per-channel gain and offset)."""
    select: Literal["loss", "last"] = "loss"
    """Weights kept: the epoch of lowest training loss (the engine's default) or the last step's."""
    inside: list[Literal["ignore"]] = []
    """Extra label variants of the val-best refiner (`boxes_to_labels`' ``inside``): ``ignore`` adds
    ``<segmenter>+ignore/<kind>``, its mask with the rest of each box `IGNORE` instead of background
    ("refined core, box-ignore"; name it in sets as ``best+ignore/<kind>``)."""
    inside_for: list[str] = []
    """Refiners that get the `inside` variants besides the val-best one (e.g. ``[grabcut]`` with
    GrabCut's ``dilate: 2``: the val screen's winner, ``grabcut+ignore/<kind>``)."""
    seeds: int = 3
    train_sets: list[str] = ["full", "*/tight", "*/jitter"]
    """Label sets the U-Net trains on: ``full``, ``<segmenter>/<kind>``, ``*/<kind>`` (every segmenter)
    or ``best/<kind>`` (the refined segmenter best on val; ``best+ignore/<kind>``: its box-ignore variant)."""
    seed_sets: list[str] = ["full", "box/tight", "box/jitter", "best/tight", "best/jitter"]
    """Label sets trained on every seed (same patterns); the others on the first seed only."""
    n_boot: int = 1000
    seed: int = 0


@dataclass
class Frame:
    case_id: str
    image: np.ndarray  # (S, S, 3) uint8 at the working size
    mask: np.ndarray  # (S, S) int64 at the working size
    full_mask: np.ndarray  # (H, W) int64 as stored


def load_frames(data: Path, cfg: PolypBenchConfig, quick: bool) -> tuple[dict[str, list[Frame]], list[str]]:
    """Frames per split (seeded subsets), and one line per frame that could not be read."""
    from PIL import Image

    root = data / "endo" / "polyp"
    with (root / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(cfg.seed)
    wanted = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    out: dict[str, list[Frame]] = {}
    skipped: list[str] = []
    for split, n in wanted.items():
        rs = [r for r in rows if r["split"] == split]
        if n is not None and n < len(rs):
            rs = [rs[i] for i in sorted(rng.choice(len(rs), size=n, replace=False))]
        frames = []
        for r in rs:
            try:
                with Image.open(root / r["image"]) as im:
                    rgb = im.convert("RGB")
                    small = np.asarray(rgb.resize((cfg.size, cfg.size), Image.Resampling.BOX))
                with Image.open(root / r["mask"]) as mk:
                    m = mk.convert("L")
                    full = (np.asarray(m) > 127).astype(np.int64)
                    sm = np.asarray(
                        m.point(lambda v: 255 if v > 127 else 0).resize((cfg.size, cfg.size), Image.Resampling.BOX)
                    )
                frames.append(Frame(r["case_id"], small, (sm > 127).astype(np.int64), full))
            except (OSError, ValueError) as exc:
                skipped.append(f"{root / r['image']}: {exc}")
        out[split] = frames
    return out, skipped


def frame_boxes(frames: list[Frame], kind: str, cfg: PolypBenchConfig, offset: int) -> list[list]:  # noqa: ANN001
    from medwss.pseudo.boxes import boxes_from_labels, jitter_boxes

    out = []
    for i, f in enumerate(frames):
        bs = boxes_from_labels(f.mask, min_size=cfg.min_component)
        if kind == "jitter":
            bs = jitter_boxes(bs, f.mask.shape, cfg.jitter, seed=[cfg.seed, offset, i])
        out.append(bs)
    return out


def make_segmenter(name: str, settings: dict[str, Any]) -> Any:
    from medwss.pseudo.segmenters import create_box_segmenter

    return create_box_segmenter(name, **settings)


def pseudo_labels(
    frames: list[Frame], boxes: list[list], seg: Any, ring: int, inside: str = "background"
) -> list[np.ndarray]:
    from medwss.pseudo.boxes import boxes_to_labels

    return [
        boxes_to_labels(f.image, bs, seg, 0.5, ring, channels_last=True, inside=inside)[0]  # type: ignore[arg-type]
        for f, bs in zip(frames, boxes, strict=True)
    ]


def label_quality(frames: list[Frame], labels: list[np.ndarray], n_boot: int, seed: int) -> dict[str, float]:
    """Pooled Dice/IoU on the labelled pixels, coverage, polyp recall; mean per-frame Dice with a 95 % CI."""
    from medwss.eval.overlap import dice
    from medwss.pseudo.metrics import pseudo_label_metrics

    r: dict[str, Any] = dict(pseudo_label_metrics(labels, [f.mask for f in frames], 2, ["background", "polyp"]))
    per = np.array([dice(lab, f.mask) for lab, f in zip(labels, frames, strict=True)])
    est, lo, hi = mean_ci(per, n_boot=n_boot, seed=seed)
    return {
        "dice": r["mean_dice"], "iou": r["miou"], "coverage": r["coverage"],
        "recall": r["per_class"]["polyp"]["recall"], "frame_dice": est, "frame_dice_lo": lo, "frame_dice_hi": hi,
    }  # fmt: skip


def choose_settings(val: list[Frame], cfg: PolypBenchConfig) -> tuple[dict[str, dict], list[dict]]:
    """Per segmenter, the settings of best pooled pseudo-label Dice on the val frames (jittered boxes)."""
    boxes = frame_boxes(val, "jitter", cfg, offset=1)
    chosen, rows = {}, []
    for name, grid in cfg.segmenters.items():
        best = None
        for settings in grid:
            t = time.perf_counter()
            q = label_quality(val, pseudo_labels(val, boxes, make_segmenter(name, settings), cfg.ring), 0, cfg.seed)
            rows.append({"segmenter": name, "settings": settings, "val_dice": q["dice"], "val_recall": q["recall"],
                         "seconds": round(time.perf_counter() - t, 1)})  # fmt: skip
            if best is None or q["dice"] > best[0]:
                best = (q["dice"], settings)
        assert best is not None
        chosen[name] = best[1]
        print(f"val: {name} -> {best[1]} (Dice {best[0]:.3f})", flush=True)
    return chosen, rows


def agmm_features(image: np.ndarray, position_weight: float) -> np.ndarray:
    """(F, H, W) for `gmm_refine`: standardised CIELAB, the same smoothed (σ = 1.5 px), weighted coordinates."""
    from scipy import ndimage

    from medwss.pseudo.box_colour import lab_image

    lab = lab_image(image).astype(np.float64).transpose(2, 0, 1)
    lab = (lab - lab.mean((1, 2), keepdims=True)) / (lab.std((1, 2), keepdims=True) + 1e-6)
    smooth = np.stack([ndimage.gaussian_filter(c, 1.5) for c in lab])
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in image.shape[:2]], indexing="ij")
    return np.concatenate([lab, smooth, position_weight * np.stack(grids)]).astype(np.float32)


def agmm_labels(frames: list[Frame], kind: str, cfg: PolypBenchConfig, conf: float, pos: float, offset: int) -> list:  # noqa: ANN001
    from medwss.data.weak import make_weak_label
    from medwss.pseudo.agmm import gmm_refine

    opts: dict[str, Any] = {"bg_margin": cfg.bg_margin} | ({"n_points": cfg.agmm_points} if kind == "point" else {})
    out = []
    for i, f in enumerate(frames):
        sparse = make_weak_label(f.mask, kind, seed=cfg.seed * 100003 + offset * 1009 + i, **opts)
        out.append(
            gmm_refine(agmm_features(f.image, pos), sparse, 2, confidence=conf, seed=cfg.seed, standardize=False)
        )
    return out


def agmm_stage(splits: dict[str, list[Frame]], cfg: PolypBenchConfig) -> list[dict]:
    from medwss.data.weak import make_weak_label, weak_label_stats

    rows = []
    for kind in ("point", "skeleton"):
        best = None
        for conf in cfg.agmm_confidence:
            for pos in cfg.agmm_position:
                q = label_quality(splits["val"], agmm_labels(splits["val"], kind, cfg, conf, pos, 1), 0, cfg.seed)
                if best is None or q["dice"] > best[0]:
                    best = (q["dice"], conf, pos)
        assert best is not None
        t = time.perf_counter()
        train = splits["train"]
        labels = agmm_labels(train, kind, cfg, best[1], best[2], 0)
        q = label_quality(train, labels, cfg.n_boot, cfg.seed)
        opts: dict[str, Any] = {"bg_margin": cfg.bg_margin} | ({"n_points": cfg.agmm_points} if kind == "point" else {})
        sparse_q = [
            weak_label_stats(make_weak_label(f.mask, kind, seed=cfg.seed * 100003 + i, **opts), f.mask)
            for i, f in enumerate(train)
        ]
        rows.append({
            "method": f"agmm/{kind}", "confidence": best[1], "position_weight": best[2], "val_dice": best[0], **q,
            "sparse_labelled_fraction": float(np.mean([s["labelled_fraction"] for s in sparse_q])),
            "seconds": round(time.perf_counter() - t, 1),
        })  # fmt: skip
        print(f"agmm/{kind}: train Dice {q['dice']:.3f}", flush=True)
    return rows


def train_and_test(
    name: str, train: list[Frame], targets: list[np.ndarray], test: list[Frame], cfg: PolypBenchConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train the U-Net on (frame, target) pairs; per-test-frame Dice and IoU at the stored size, seconds."""
    import torch
    import torch.nn.functional as F

    from medwss.eval.overlap import dice, iou
    from medwss.seg import SegSample, SegTrainConfig, predict_probs, train_segmenter
    from medwss.seg.train import Recipe
    from medwss.transforms.augment import AugmentConfig

    scfg = SegTrainConfig(
        in_channels=3, num_classes=2, channels=cfg.channels, loss="ce_dice", epochs=cfg.epochs,
        batch_size=cfg.batch_size, lr=cfg.lr, augment=True, seed=seed, device="cpu",
    )  # fmt: skip
    t = time.perf_counter()
    samples = [SegSample(_net_input(f.image), y.astype(np.int64)) for f, y in zip(train, targets, strict=True)]
    recipe = Recipe(
        steps=cfg.steps, onecycle=cfg.schedule == "onecycle", keep_last=cfg.select == "last",
        augment=None if cfg.augment is None else AugmentConfig(**cfg.augment),
    )  # fmt: skip
    model, _ = train_segmenter(samples, scfg, progress=False, recipe=recipe)
    probs = predict_probs(model, [_net_input(f.image) for f in test], scfg, batch_size=16)
    ds, ious = [], []
    for p, f in zip(probs, test, strict=True):
        up = F.interpolate(torch.from_numpy(p[None]), size=f.full_mask.shape, mode="bilinear", align_corners=False)
        pred = up[0].argmax(0).numpy()
        ds.append(dice(pred, f.full_mask, ignore=None))
        ious.append(iou(pred, f.full_mask, ignore=None))
    secs = time.perf_counter() - t
    print(f"train {name} seed {seed}: test Dice {np.mean(ds):.3f} ({secs:.0f} s)", flush=True)
    return np.array(ds), np.array(ious), secs


def _net_input(image: np.ndarray) -> np.ndarray:
    return ((image.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)


def _train_job(args: tuple) -> tuple[np.ndarray, np.ndarray, float]:
    import torch

    torch.set_num_threads(1)
    return train_and_test(*args)


def segmenter_stage(
    splits: dict[str, list[Frame]],
    labels: dict[str, list[np.ndarray]],
    best: dict[str, str],
    cfg: PolypBenchConfig,
    workers: int = 1,
) -> list[dict]:
    """Train and test the U-Net on each label set and seed (`workers` processes); one row per set."""
    train, test = splits["train"], splits["test"]
    sets = [s for s in ["full", *labels] if s in _resolve(cfg.train_sets, labels, best)]
    kinds = {s.split("/")[1] for s in sets if "/" in s}  # the raw box of every kind trained on is the baseline
    sets += [s for s in (f"box/{k}" for k in KINDS if k in kinds) if s in labels and s not in sets]
    always = _resolve(cfg.seed_sets, labels, best)
    jobs = [(s, seed) for s in sets for seed in range(cfg.seed, cfg.seed + (cfg.seeds if s in always else 1))]
    args = [(s, train, [f.mask for f in train] if s == "full" else labels[s], test, cfg, seed) for s, seed in jobs]
    if workers > 1:  # each training seeds itself: the scores do not depend on the number of workers
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_train_job, args))
    else:
        results = [train_and_test(*a) for a in args]
    runs: dict[str, dict[str, list]] = {}
    for (s, _), (d, j, secs) in zip(jobs, results, strict=True):
        r = runs.setdefault(s, {"dice": [], "iou": [], "seconds": []})
        r["dice"].append(d)
        r["iou"].append(j)
        r["seconds"].append(secs)
    rows = []
    full = float(np.mean(runs["full"]["dice"]))
    for s, r in runs.items():
        d, j = np.mean(r["dice"], axis=0), np.mean(r["iou"], axis=0)  # per test frame, averaged over seeds
        est, lo, hi = mean_ci(d, n_boot=cfg.n_boot, seed=cfg.seed)
        iest, ilo, ihi = mean_ci(j, n_boot=cfg.n_boot, seed=cfg.seed)
        row = {
            "labels": s, "seeds": len(r["dice"]), "test_dice": est, "dice_lo": lo, "dice_hi": hi,
            "test_iou": iest, "iou_lo": ilo, "iou_hi": ihi, "of_full": est / full if full else float("nan"),
            "seed_dice": [float(np.mean(x)) for x in r["dice"]], "seconds": float(np.sum(r["seconds"])),
            "frame_dice": [np.round(x, 5).tolist() for x in r["dice"]],  # per seed, per test frame (for pairing)
        }  # fmt: skip
        kind = s.split("/")[1] if "/" in s else None
        if kind and not s.startswith("box/"):
            ref = runs[f"box/{kind}"]
            common = min(len(ref["dice"]), len(r["dice"]))  # paired on the seeds both ran
            diff = np.mean(r["dice"][:common], axis=0) - np.mean(ref["dice"][:common], axis=0)
            row |= dict(
                zip(("vs_box", "vs_box_lo", "vs_box_hi"), mean_ci(diff, n_boot=cfg.n_boot, seed=cfg.seed), strict=True)
            )
            row["vs_box_seeds"] = common
        rows.append(row)
    return rows


def _resolve(patterns: list[str], labels: dict[str, Any], best: dict[str, str]) -> set[str]:
    """The label-set names that `patterns` (``full``, ``name/kind``, ``*/kind``, ``best/kind``) stand for."""
    from fnmatch import fnmatch

    out = set()
    for p in patterns:
        if p.startswith("best"):  # best/<kind>, best+ignore/<kind>
            head, _, kind = p.partition("/")
            name = best.get(kind, p).split("/")[0]
            out.add(f"{name}{head[4:]}/{kind}")
        else:
            out |= {s for s in ["full", *labels] if fnmatch(s, p)}
    return out


def fmt_ci(est: float, lo: float, hi: float) -> str:
    return f"{est:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(res: dict) -> str:
    cfg = res["config"]
    lines = [
        "# Box pseudo-labels on real colonoscopy frames (Kvasir-SEG)",
        "",
        f"{res['n_frames']['train']} train / {res['n_frames']['val']} val / {res['n_frames']['test']} test frames, "
        f"segmented at {cfg['size']}×{cfg['size']}; jitter ±{cfg['jitter']:.0%} of the box size per side. "
        f"{res['sam']}",
        "",
        "Settings chosen on the val frames (jittered boxes, pooled pseudo-label Dice):",
        "",
        "| segmenter | settings | val Dice | val recall | s |",
        "|---|---|---|---|---|",
    ]
    for r in res["val_grid"]:
        mark = " **(chosen)**" if r["settings"] == res["chosen"].get(r["segmenter"]) else ""
        lines.append(
            f"| {r['segmenter']} | `{r['settings']}`{mark} | {r['val_dice']:.3f} | {r['val_recall']:.3f} | {r['seconds']} |"
        )
    lines += [
        "",
        "Pseudo-labels on the train frames (Dice/IoU pooled over the labelled pixels; recall counts ignored polyp "
        "pixels as missed; per-frame Dice with 95 % bootstrap CI):",
        "",
        "| labels | boxes | Dice | IoU | coverage | recall | per-frame Dice [CI] | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["quality"]:
        lines.append(
            f"| {r['method']} | {r['kind']} | {r['dice']:.3f} | {r['iou']:.3f} | {r['coverage']:.3f} | {r['recall']:.3f} "
            f"| {fmt_ci(r['frame_dice'], r['frame_dice_lo'], r['frame_dice_hi'])} | {r['seconds']} |"
        )
    for r in res["agmm"]:
        lines.append(
            f"| {r['method']} (conf {r['confidence']}, pos {r['position_weight']}) | — | {r['dice']:.3f} | {r['iou']:.3f} "
            f"| {r['coverage']:.3f} | {r['recall']:.3f} | {fmt_ci(r['frame_dice'], r['frame_dice_lo'], r['frame_dice_hi'])} "
            f"| {r['seconds']} |"
        )
    lines += [
        "",
        "U-Net trained on each label set, test frames at full size (Dice/IoU per frame averaged over seeds, 95 % "
        "bootstrap CI over frames; Δ box: paired difference to the raw box of the same kind):",
        "",
        "| labels | seeds | test Dice [CI] | test IoU [CI] | of full | Δ box [CI] | per-seed Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["segmenter"]:
        delta = fmt_ci(r["vs_box"], r["vs_box_lo"], r["vs_box_hi"]) if "vs_box" in r else "—"
        seeds = ", ".join(f"{v:.3f}" for v in r["seed_dice"])
        lines.append(
            f"| {r['labels']} | {r['seeds']} | {fmt_ci(r['test_dice'], r['dice_lo'], r['dice_hi'])} "
            f"| {fmt_ci(r['test_iou'], r['iou_lo'], r['iou_hi'])} | {r['of_full']:.2f} | {delta} | {seeds} |"
        )
    lines += ["", f"Target (a refined-box label trains a better segmenter than the raw box): {res['target']}", ""]
    if res["skipped"]:
        lines += ["Skipped frames: " + "; ".join(res["skipped"]), ""]
    lines.append(f"Total {res['seconds']:.0f} s ({'quick' if res['quick'] else 'full'} mode, 1 CPU thread).")
    return "\n".join(lines) + "\n"


def target_line(rows: list[dict]) -> str:
    wins = [r for r in rows if "vs_box" in r and r["vs_box_lo"] > 0]
    ahead = [r for r in rows if "vs_box" in r and r["vs_box"] > 0]
    if wins:
        return "met: " + ", ".join(f"{r['labels']} (+{r['vs_box']:.3f}, CI excludes 0)" for r in wins)
    if ahead:
        return "not shown: ahead of the raw box but within noise: " + ", ".join(
            f"{r['labels']} ({r['vs_box']:+.3f} [{r['vs_box_lo']:+.3f}, {r['vs_box_hi']:+.3f}])" for r in ahead
        )
    return "missed: no refined-box label trains a segmenter above the raw box"


def main(argv: list[str] | None = None) -> int:
    import torch
    from threadpoolctl import threadpool_limits

    from medwss.config import load_config
    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder with endo/polyp/ (default ../shared/data/real)")
    ap.add_argument("--quick", action="store_true", help="tiny settings (< 60 s): configs/pseudo_polyp_quick.yaml")
    ap.add_argument("--config", help="benchmark settings (default configs/pseudo_polyp[_quick].yaml)")
    ap.add_argument("--sam-checkpoint", help="local SAM/MedSAM weights: adds that segmenter (needs segment_anything)")
    ap.add_argument("--sam-flavour", default="sam", choices=("sam", "medsam"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--name", help="results file name (default pseudo_polyp[_quick])")
    ap.add_argument("--workers", type=int, default=1, help="U-Net trainings run at once (processes of one thread)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = Path(args.data)
    if not (data / "endo" / "polyp" / "manifest.csv").is_file():
        print(f"{data / 'endo' / 'polyp' / 'manifest.csv'}: not found (give --data DIR holding endo/polyp/)")
        return 2
    default = ROOT / "configs" / ("pseudo_polyp_quick.yaml" if args.quick else "pseudo_polyp.yaml")
    cfg = load_config(args.config or default, PolypBenchConfig)
    with threadpool_limits(1):  # BLAS threads on a shared CPU make the mixtures ~10x slower
        splits, skipped = load_frames(data, cfg, args.quick)
        print(f"frames: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; skipped {len(skipped)}", flush=True)
        chosen, val_grid = choose_settings(splits["val"], cfg)
        segs: dict[str, tuple[Any, dict]] = {"box": (make_segmenter("box", {}), {})}
        segs |= {n: (make_segmenter(n, s), s) for n, s in chosen.items()}
        if args.sam_checkpoint:
            s = {"checkpoint": args.sam_checkpoint}
            segs[args.sam_flavour] = (make_segmenter(args.sam_flavour, s), s)
            sam = f"{args.sam_flavour} from {args.sam_checkpoint} (default settings, not tuned on val)."
        else:
            sam = "SAM/MedSAM not run: no --sam-checkpoint given (no weights or segment_anything package here)."
        rows = [r for r in val_grid if r["segmenter"] in chosen]  # the refined segmenter best on val
        top = max(rows, key=lambda r: r["val_dice"])["segmenter"] if rows else "box"
        labels: dict[str, list[np.ndarray]] = {}
        quality = []
        for kind in cfg.kinds:
            boxes = frame_boxes(splits["train"], kind, cfg, offset=0)
            for name, (seg, _) in segs.items():
                extra = name != "box" and (name == top or name in cfg.inside_for)
                variants = ["background"] + (list(cfg.inside) if extra else [])
                for inside in variants:  # box-ignore variants of the val-best refiner only
                    label = f"{name}/{kind}" if inside == "background" else f"{name}+{inside}/{kind}"
                    t = time.perf_counter()
                    labs = pseudo_labels(splits["train"], boxes, seg, 0 if name == "box" else cfg.ring, inside)
                    secs = round(time.perf_counter() - t, 1)
                    labels[label] = labs
                    q = label_quality(splits["train"], labs, cfg.n_boot, cfg.seed)
                    quality.append({"method": label.split("/")[0], "kind": kind, **q, "seconds": secs})
                    print(f"pseudo {label}: Dice {q['dice']:.3f} recall {q['recall']:.3f} ({secs} s)", flush=True)
        agmm = agmm_stage(splits, cfg)
        val_best = {kind: f"{top}/{kind}" for kind in KINDS}
        seg_rows = segmenter_stage(splits, labels, val_best, cfg, args.workers)
    res = {
        "quick": args.quick, "config": cfg.model_dump(mode="json"), "data": str(data),
        "n_frames": {k: len(v) for k, v in splits.items()}, "test_cases": [f.case_id for f in splits["test"]],
        "skipped": skipped, "chosen": chosen,
        "val_best": val_best, "val_grid": val_grid, "quality": quality, "agmm": agmm, "segmenter": seg_rows,
        "sam": sam, "target": target_line(seg_rows), "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    name = args.name or ("pseudo_polyp_quick" if args.quick else "pseudo_polyp")
    write_results(args.out, name, res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
