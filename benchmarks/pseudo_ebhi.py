"""Pseudo-labels from image-level tags on real H&E tiles (EBHI-Seg): every CAM method against the CAM threshold.

Usage:
    python benchmarks/pseudo_ebhi.py [--data DIR] [--quick] [--seeds 3] [--size 64] [--epochs 6]
        [--stage 1|2|all] [--cam-tau val|T] [--compare-tau 0.5|none] [--tag TAG]
        [--out benchmarks/results] [--work DIR]

Data: ``DIR/histo/ebhi`` (default ``../shared/data/real``): 748 colorectal H&E tiles of 224 × 224
from 268 patients, each with a manual mask of its annotated region and a tile tag (``label`` 1 =
malignant: high-grade IN, adenocarcinoma; 0 = normal, polyp, low-grade IN), split by patient:
train 427 tiles (160 patients), val 169 (54), test 152 (54; never looked at while choosing
settings). The tiles go through ``medwss.pseudo.tiles`` (the manifest one-liner of
``configs/pseudo_ebhi_*.yaml``): one-slice grey volumes of ``--size`` pixels, masks with the tile
tag on their foreground (0 background, 1 benign region, 2 malignant region), so the image-level
tags the CAM methods read are the tile's tag (plus background).

Stage 1, pseudo-labels through the registry (`medwss.pseudo.methods.run_method`), each method with
its shipped config ``configs/pseudo_ebhi_<method>.yaml``, on the train + val tiles: one tag
classifier (TinyFCN on whole-tile tags, ``cam_epochs`` epochs, seed 0; trained once and resumed by
every method from its checkpoint) gives the CAMs of ``cam`` (plain threshold at ``cam_tau``, the
baseline), ``fuse`` (WSSS-BED fusion, τ chosen by the sweep on the val tiles, ignore band 0.05),
``dhr`` (Sinkhorn rebalancing, class prior from the val tiles), ``cpal`` (context prototypes),
``par`` (pixel-adaptive refinement) and ``dupl`` (dual students trained from the CAM labels).
``cam_tau`` (the threshold of cam, of the DHR/CPAL/PAR outputs and of DuPL's initial labels) is
chosen on the val tiles with ``--cam-tau val`` (default): the library's sweep (`medwss pseudo sweep`,
fusion with no ignore band and the config's no-op ``body`` prior = the thresholded CAMs) picks it
and the run records it with its curve; a number fixes it. ``--compare-tau T`` (default 0.5, the
earlier fixed threshold) also runs those five methods at T, as rows ``<method>_tau<T>`` paired with
``cam_tau<T>``: what the val choice is worth to each method.
Scored on the train tiles against the masks: pooled mIoU over the benign and malignant classes
(`pseudo_label_metrics`; background IoU shown apart; pixels where the method abstains left out),
coverage, and the per-tile mIoU with a 95 % bootstrap interval over train patients; the val tiles'
pooled mIoU beside it. An ablation (one setting changed per row, at the chosen ``cam_tau``,
pseudo-label mIoU only) says why a method lands where it does.

Stage 1 saves every set's train-tile labels to ``WORK/labels/<set>.npz`` (int8 by case id,
-1 = abstained), so ``--stage 2 --work WORK`` trains the segmenters alone from them, taking the
stage-1 tables from the results file in ``--out``; ``--stage 1`` stops after the labels.

Stage 2: a small 2D UNet (MONAI, 8/16/32, CE + Dice on the labelled pixels, `medwss.seg.train_segmenter`)
trains on the train tiles' pseudo-labels of each method (and on the masks: ``full``) for
``--seeds`` seeds, and is scored on the val tiles (to choose on) and the test tiles: the Dice of the
tile's class (a benign tile predicted malignant scores 0) and the foreground Dice (benign and
malignant merged), averaged per patient, 95 % bootstrap interval over patients of the
seed-averaged scores, the paired difference to the set's CAM baseline (``cam``, or ``cam_tau<T>``
for the ``_tau<T>`` sets), to its fixed-τ twin, and, for the foreground Dice, to the trivial
every-pixel-foreground prediction (``<set>-all_fg``). Ablation rows ``fuse_bg`` / ``dupl_bg``: the same labels with the abstained
pixels trained as background instead of ignored (what the abstention is worth downstream). The
segmenter settings were not tuned (no look at val or test while fixing them).

What was cut to fit a shared CPU: tiles at 64 × 64 grey (not 224 × 224 RGB), a TinyFCN tag
classifier for 10 epochs, DuPL for 150 steps, the UNet for ``--epochs`` (default 6) epochs;
pseudo-labels from one seed (the segmenter trains with three). ``--quick`` (smoke test): 8
tiles per split at 32 × 32, one epoch, 3 DuPL steps, one seed. Results:
``benchmarks/results/pseudo_ebhi[_<tag>][_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from medwss.eval.metrics import mean_ci  # noqa: E402

METHODS = ("cam", "fuse", "dhr", "cpal", "par", "dupl")
TAU_METHODS = ("cam", "dhr", "cpal", "par", "dupl")  # the methods reading cam_tau (fusion has its own τ)
ABSTAINING = ("fuse", "dupl")  # methods that leave pixels unlabelled (-1); stage 2 also trains them as background
NAMES = ("background", "benign", "malignant")
ABLATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cam", "τ chosen on val (= fuse with no prior and no ignore band)", {"_method": "fuse", "band": 0.0}),
    ("fuse", "foreground prior otsu", {"foreground": "otsu"}),
    ("dhr", "uniform class prior", {"prior": "uniform"}),
    ("cpal", "alpha 0.25", {"alpha": 0.25}),
    ("cpal", "alpha 1.0 (prototype maps only)", {"alpha": 1.0}),
    ("par", "3 iterations", {"par_iter": 3}),
    ("par", "30 iterations", {"par_iter": 30}),
    ("dupl", "confidence 0 (no abstention)", {"confidence": 0.0}),
)


def tile_miou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU over the classes present in the ground truth (or predicted), where `pred` is labelled."""
    keep = pred >= 0
    p, g = pred[keep], gt[keep]
    ious = []
    for c in range(len(NAMES)):
        inter, union = np.sum((p == c) & (g == c)), np.sum((p == c) | (g == c))
        if np.any(gt == c) or union:
            ious.append(inter / union if union else 0.0)
    return float(np.mean(ious)) if ious else float("nan")


def prepare(data: Path, work: Path, size: int, quick: bool) -> tuple[Path, list[str]]:
    """The tiles as one-slice volumes (`medwss.pseudo.tiles`), written once per work folder."""
    from medwss.pseudo.tiles import tiles_to_volumes

    src = data / "histo" / "ebhi" / "manifest.csv"
    if not src.is_file():
        raise SystemExit(f"EBHI manifest not found: {src} (give --data DIR holding histo/ebhi/)")
    out = work / f"tiles_{size}{'_quick' if quick else ''}"
    if (out / "manifest.csv").is_file():
        return out / "manifest.csv", []
    return tiles_to_volumes(src, out, size, "grey", max_per_split=8 if quick else None)


def method_config(method: str, overrides: dict[str, Any]) -> Any:
    from medwss.config import load_config
    from medwss.pseudo.methods import PSEUDO_METHODS

    cls = PSEUDO_METHODS.get(method).config  # the method's own config class; overrides it does not read are dropped
    cfg = load_config(ROOT / "configs" / f"pseudo_ebhi_{method}.yaml", cls)
    return cfg.model_copy(update={k: v for k, v in overrides.items() if k in cls.model_fields})


def run_pseudo(
    method: str, cases: list[Any], cfg: Any, work: Path, variant: str = ""
) -> tuple[list[Any], dict[str, Any]]:
    """One registry method; the tag classifier is resumed from ``work/cam`` (trained by the first call).

    DuPL's students are resumed from ``work/dupl<variant>``: a variant with other initial labels
    (another ``cam_tau``) needs its own folder."""
    from medwss.pseudo.methods import MethodOptions, run_method

    cam_dir = work / "cam"
    out = cam_dir
    if method == "dupl":  # DuPL keeps its students as checkpoint.pt; its CAMs come from cam_checkpoint.pt
        out = work / f"dupl{variant}"
        out.mkdir(parents=True, exist_ok=True)
        if (cam_dir / "checkpoint.pt").is_file() and not (out / "cam_checkpoint.pt").is_file():
            shutil.copy2(cam_dir / "checkpoint.pt", out / "cam_checkpoint.pt")
    return run_method(method, cases, cfg, MethodOptions(out_dir=out))


def quality(cases: list[Any], labels: list[Any]) -> dict[str, Any]:
    """Pooled and per-tile pseudo-label quality on the given (train) tiles."""
    from medwss.pseudo.metrics import pseudo_label_metrics

    preds = [lab[0] for lab in labels]
    gts = [c.gts[0] for c in cases]
    pooled = pseudo_label_metrics(preds, gts, len(NAMES), NAMES)
    per_tile = [tile_miou(p, g) for p, g in zip(preds, gts, strict=True)]
    m, lo, hi = mean_ci(per_tile, [c.meta["patient_id"] for c in cases])
    per_class = pooled["per_class"]
    return {"miou": pooled["miou"], "coverage": pooled["coverage"], "tile_miou": m, "tile_miou_lo": lo,
            "tile_miou_hi": hi, "iou": {n: per_class[n]["iou"] for n in NAMES}}  # type: ignore[index]  # fmt: skip


def train_and_test(
    train: list[Any], targets: list[np.ndarray], scored: dict[str, list[Any]], epochs: int, seed: int, quick: bool
) -> tuple[dict[str, tuple[list[float], list[float]]], float]:
    """Train the UNet on (tile, target); per split of `scored` and tile: Dice of the tile's class and foreground Dice."""
    from medwss.eval.overlap import dice
    from medwss.seg import SegSample, SegTrainConfig, predict_probs, train_segmenter

    scfg = SegTrainConfig(
        in_channels=1, num_classes=len(NAMES), channels=(4, 8) if quick else (8, 16, 32), loss="ce_dice",
        epochs=epochs, batch_size=16, lr=3e-3, augment=True, seed=seed, device="cpu", amp=False,
    )  # fmt: skip
    t = time.process_time()
    samples = [SegSample((c.images[0] - 0.5) / 0.25, y.astype(np.int64)) for c, y in zip(train, targets, strict=True)]
    model, _ = train_segmenter(samples, scfg, progress=False)
    out = {}
    for name, tiles in scored.items():
        probs = predict_probs(model, [(c.images[0] - 0.5) / 0.25 for c in tiles], scfg, batch_size=32)
        cls_d, fg_d = [], []
        for p, c in zip(probs, tiles, strict=True):
            pred, gt = p.argmax(0), c.gts[0]
            k = int(c.meta["label"]) + 1
            cls_d.append(dice((pred == k).astype(np.int64), (gt == k).astype(np.int64), ignore=None))
            fg_d.append(dice((pred > 0).astype(np.int64), (gt > 0).astype(np.int64), ignore=None))
        out[name] = (cls_d, fg_d)
    return out, time.process_time() - t


def _tau_flag(flag: str, spec: str, word: str) -> float:
    """A threshold flag's number in (0, 1); anything else is a one-line error naming the flag."""
    try:
        tau = float(spec)
    except ValueError:
        tau = float("nan")
    if not 0 < tau < 1:
        raise SystemExit(f"{flag} {spec!r}: give a number in (0, 1) or '{word}'")
    return tau


def choose_cam_tau(spec: str, trval: list[Any], over: dict[str, Any], work: Path) -> tuple[float, dict[str, Any]]:
    """``cam_tau`` from ``--cam-tau``: a number as given, or ``val``: the library's sweep (`medwss pseudo
    sweep`: fusion with no ignore band, on the val tiles) on the same CAMs, whose best τ it records."""
    if spec != "val":
        tau = _tau_flag("--cam-tau", spec, "val")
        return tau, {"chosen_on": "given", "tau": tau}
    _, extra = run_pseudo("sweep", trval, method_config("fuse", over | {"band": 0.0, "tau": None}), work)
    sw = extra["sweep"]
    tau = float(sw["best_tau"])
    edge = tau in (min(sw["taus"]), max(sw["taus"]))
    return tau, {"chosen_on": "val", "tau": tau, "at_grid_edge": edge,
                 "sweep": {k: sw[k] for k in ("taus", "dice", "best_tau", "best_dice")}}  # fmt: skip


def variants(tau: float, compare: str) -> list[tuple[str, float]]:
    """(name suffix, cam_tau) of the runs: the chosen τ unsuffixed, the ``--compare-tau`` one as ``_tau<τ>``."""
    out = [("", tau)]
    if compare != "none":
        other = _tau_flag("--compare-tau", compare, "none")
        if other != tau:
            out.append((f"_tau{other:g}", other))
    return out


def baseline_of(name: str) -> str:
    """The CAM baseline a set is paired with: ``cam`` for the chosen τ, ``cam_tau0.5`` for the ``_tau0.5`` sets."""
    _, sep, tail = name.removesuffix("_bg").partition("_tau")
    return f"cam_tau{tail}" if sep else "cam"


def pairs_of(names: list[str]) -> list[tuple[str, str]]:
    """(set, reference) pairs: every set against its CAM baseline, and each chosen-τ set against its fixed-τ twin."""
    out = [(n, baseline_of(n)) for n in names if n != baseline_of(n) and baseline_of(n) in names]
    for n in names:
        stem, sep, tail = n.removesuffix("_bg").partition("_tau")
        if sep and stem in names:
            out.append((stem + ("_bg" if n.endswith("_bg") else ""), n))
    return [(a, b) for a, b in out if a in names]


def run(args: argparse.Namespace, on_stage: Any = None) -> dict[str, Any]:
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.pseudo.workflow import load_cases

    torch.set_num_threads(1)
    t_all, cpu_all = time.time(), time.process_time()
    work = Path(args.work or tempfile.mkdtemp(prefix="pseudo_ebhi_"))
    size = 32 if args.quick else args.size
    man_path, skipped = prepare(Path(args.data), work, size, args.quick)
    manifest = load_manifest(man_path)
    over: dict[str, Any] = {"device": "cpu"}
    if args.quick:
        over |= {"cam_epochs": 1, "iterations": 3}
    base = method_config("cam", over)
    cases, failed = load_cases(manifest, base)
    by_id = {c.case_id: c for c in manifest}
    for c in cases:  # tags and patients travel with the sliced cases
        c.meta |= {"label": by_id[c.case_id].label, "patient_id": by_id[c.case_id].patient_id}
    split = {s: [c for c in cases if c.split == s] for s in ("train", "val", "test")}
    trval = split["train"] + split["val"]
    n_train = len(split["train"])
    record: dict[str, Any] = {
        "quick": args.quick, "data": str(man_path), "size": size, "n_tiles": {s: len(v) for s, v in split.items()},
        "skipped": skipped + failed, "seeds": [], "pseudo": {}, "ablation": [], "segmenter": {}, "paired": {},
        "configs": {},
    }  # fmt: skip
    labels_of: dict[str, list[np.ndarray]] = {}
    if args.stage == "2":  # stage 1's tables and labels from disk
        record |= stage1_record(Path(args.out) / f"{stem_of(args)}.json")
        labels_of = load_labels(work / "labels", split["train"], list(record["pseudo"]))
        return stage2(args, record, labels_of, split, t_all, cpu_all, on_stage)
    tau, record["cam_tau"] = choose_cam_tau(args.cam_tau, trval, over, work)
    print(f"cam_tau {tau:g} ({record['cam_tau']['chosen_on']})", flush=True)
    for suffix, t in variants(tau, args.compare_tau):
        for method in METHODS if not suffix else TAU_METHODS:
            name = method + suffix
            cfg = method_config(method, over | {"cam_tau": t})
            t0 = time.process_time()
            labels, extra = run_pseudo(method, trval, cfg, work, suffix)
            q = quality(split["train"], labels[:n_train])
            q["val"] = quality(split["val"], labels[n_train:])
            q |= {"cpu_seconds": round(time.process_time() - t0, 1)}
            q |= {k: v for k, v in extra.items() if k in ("tau", "final_tau", "discarded_last")}
            if method in TAU_METHODS:
                q["cam_tau"] = t
            if "sweep" in extra:
                q["sweep"] = {k: extra["sweep"][k] for k in ("taus", "dice", "best_tau")}
            record["pseudo"][name] = q
            record["configs"][name] = cfg.model_dump(mode="json")
            labels_of[name] = [lab[0] for lab in labels[:n_train]]
            save_labels(work / "labels" / f"{name}.npz", split["train"], labels_of[name])
            print(f"{name}: train-tile mIoU {q['miou']:.3f}, val {q['val']['miou']:.3f}, "
                  f"coverage {q['coverage']:.3f}", flush=True)  # fmt: skip
    for method, what, change in ABLATIONS:
        name = change.get("_method", method)
        cfg = method_config(name, over | {"cam_tau": tau} | {k: v for k, v in change.items() if k != "_method"})
        labels, extra = run_pseudo(name, trval, cfg, work)
        q = quality(split["train"], labels[:n_train])
        record["ablation"].append({"method": method, "change": what, "tau": extra.get("tau"), **q})
        print(f"ablation {method} / {what}: mIoU {q['miou']:.3f}", flush=True)
    record |= {"seconds": round(time.time() - t_all, 1), "cpu_seconds": round(time.process_time() - cpu_all, 1)}
    if on_stage is not None:
        on_stage(record)
    if args.stage == "1":
        return record
    return stage2(args, record, labels_of, split, t_all, cpu_all, on_stage)


def abstained_as_background(labels: list[np.ndarray]) -> list[np.ndarray]:
    """The stage-2 ablation: pixels a method abstains on (-1) trained as background instead of ignored."""
    return [np.where(y < 0, 0, y) for y in labels]


def stage2(
    args: argparse.Namespace,
    record: dict[str, Any],
    labels_of: dict[str, list[np.ndarray]],
    split: dict[str, list[Any]],
    t_all: float,
    cpu_all: float,
    on_stage: Any,
) -> dict[str, Any]:
    """The UNet trained on every set of train-tile labels, scored on the test and val tiles, per seed."""
    seeds = [0] if args.quick else list(range(args.seeds))
    epochs = 1 if args.quick else args.epochs
    sets = {"full": [c.gts[0] for c in split["train"] if c.gts is not None], **labels_of}
    for name in list(labels_of):  # ablation: what the abstention is worth downstream
        if name.partition("_tau")[0] in ABSTAINING:
            sets[f"{name}_bg"] = abstained_as_background(labels_of[name])
    record["epochs"] = epochs
    pairs = pairs_of(list(sets))
    all_fg = {s: all_fg_dice(split[s]) for s in ("test", "val")}  # the every-pixel-foreground reference
    patients = {s: [c.meta["patient_id"] for c in split[s]] for s in ("test", "val")}
    for key, s in (("trivial_fg_dice", "test"), ("trivial_fg_dice_val", "val")):
        record[key] = dict(zip(("mean", "lo", "hi"), mean_ci(all_fg[s], patients[s]), strict=True))
    scores: dict[str, dict[str, dict[int, tuple[list[float], list[float]]]]] = {
        s: {k: {} for k in sets} for s in ("test", "val")
    }
    runs = []
    for seed in seeds:
        for name, targets in sets.items():
            got, secs = train_and_test(
                split["train"], targets, {s: split[s] for s in ("test", "val")}, epochs, seed, args.quick
            )
            for s, (cls_d, fg_d) in got.items():
                scores[s][name][seed] = (cls_d, fg_d)
            (cls_d, fg_d), (v_cls, v_fg) = got["test"], got["val"]
            runs.append({"set": name, "seed": seed, "class_dice": float(np.mean(cls_d)),
                         "fg_dice": float(np.mean(fg_d)), "val_class_dice": float(np.mean(v_cls)),
                         "val_fg_dice": float(np.mean(v_fg)), "cpu_seconds": round(secs, 1)})  # fmt: skip
            print(f"segmenter {name} seed {seed}: val class Dice {np.mean(v_cls):.3f}, fg {np.mean(v_fg):.3f}; "
                  f"test class Dice {np.mean(cls_d):.3f}, fg {np.mean(fg_d):.3f}", flush=True)  # fmt: skip
        record |= {"seeds": seeds[: seeds.index(seed) + 1], "runs": runs}
        record["segmenter"], record["paired"] = summarise(scores["test"], split["test"], pairs, all_fg["test"])
        record["segmenter_val"], record["paired_val"] = summarise(scores["val"], split["val"], pairs, all_fg["val"])
        record |= {"seconds": round(time.time() - t_all, 1), "cpu_seconds": round(time.process_time() - cpu_all, 1)}
        if on_stage is not None:
            on_stage(record)
    return record


def all_fg_dice(tiles: list[Any]) -> list[float]:
    """Per tile, the foreground Dice of calling every pixel foreground (the trivial reference)."""
    from medwss.eval.overlap import dice

    return [dice(np.ones_like(g), g, ignore=None) for g in ((c.gts[0] > 0).astype(np.int64) for c in tiles)]


def save_labels(path: Path, cases: list[Any], labels: list[np.ndarray]) -> None:
    """One method's train-tile labels (int8, -1 = abstained) by case id, written atomically."""
    from medwss.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        arrays: dict[str, Any] = {c.case_id: y.astype(np.int8) for c, y in zip(cases, labels, strict=True)}
        np.savez_compressed(f, **arrays)


def load_labels(
    folder: Path, cases: list[Any], names: list[str] | tuple[str, ...] = METHODS
) -> dict[str, list[np.ndarray]]:
    """Stage 1's saved labels of every set in `names`, in the order of `cases`; a missing file or tile stops the run."""
    out: dict[str, list[np.ndarray]] = {}
    for method in names:
        path = folder / f"{method}.npz"
        if not path.is_file():
            raise SystemExit(f"{path}: no stage-1 labels (run --stage 1 with this --work first)")
        with np.load(path) as z:
            missing = [c.case_id for c in cases if c.case_id not in z.files]
            if missing:
                raise SystemExit(f"{path}: no labels for {len(missing)} train tiles (e.g. {missing[0]}); rerun stage 1")
            out[method] = [z[c.case_id].astype(np.int64) for c in cases]
    return out


def stage1_record(path: Path) -> dict[str, Any]:
    """The stage-1 part (pseudo-label tables, ablation, configs) of an earlier run's results file."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: cannot read the stage-1 results ({e}); run --stage 1 first") from None
    if not rec.get("pseudo"):
        raise SystemExit(f"{path}: no stage-1 pseudo-label table in it; run --stage 1 first")
    return {k: rec[k] for k in ("pseudo", "ablation", "configs", "skipped", "cam_tau") if k in rec}


def summarise(
    scores: dict[str, dict[int, tuple[list[float], list[float]]]],
    tiles: list[Any],
    pairs: list[tuple[str, str]] | None = None,
    all_fg: list[float] | None = None,
) -> tuple[dict, dict]:
    """Per set: seed-averaged per-tile scores → patient mean, CI, sd over seeds; paired differences
    ``a - b`` for each (a, b) of `pairs` (default: every set against ``cam``), and with `all_fg` (per
    tile, the every-pixel-foreground Dice) each set's foreground Dice minus it (``<set>-all_fg``)."""
    patients = [c.meta["patient_id"] for c in tiles]
    out: dict[str, Any] = {}
    mean_of: dict[str, dict[str, np.ndarray]] = {}
    for name, by_seed in scores.items():
        if not by_seed:
            continue
        row: dict[str, Any] = {}
        for j, key in enumerate(("class_dice", "fg_dice")):
            per_seed = np.array([by_seed[s][j] for s in sorted(by_seed)])
            avg = per_seed.mean(axis=0)
            mean_of.setdefault(name, {})[key] = avg
            m, lo, hi = mean_ci(list(avg), patients)
            sd = float(np.std(per_seed.mean(axis=1))) if len(by_seed) > 1 else None
            row |= {key: m, f"{key}_lo": lo, f"{key}_hi": hi, f"{key}_sd": sd}
        out[name] = row
    paired: dict[str, Any] = {}
    for a, b in pairs if pairs is not None else [(n, "cam") for n in out if n != "cam"]:
        if a not in mean_of or b not in mean_of:
            continue
        for key in ("class_dice", "fg_dice"):
            d = mean_of[a][key] - mean_of[b][key]
            m, lo, hi = mean_ci(list(d), patients)
            paired.setdefault(f"{a}-{b}", {})[key] = {"diff": m, "lo": lo, "hi": hi}
    for a in mean_of if all_fg is not None else []:
        m, lo, hi = mean_ci(list(mean_of[a]["fg_dice"] - np.asarray(all_fg)), patients)
        paired[f"{a}-all_fg"] = {"fg_dice": {"diff": m, "lo": lo, "hi": hi}}
    return out, paired


def _f(v: float | None) -> str:
    """A figure to 3 decimals; n/a for a missing one (a class absent from a tiny quick split reads back as null)."""
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _ci(m: float | None, lo: float | None, hi: float | None, sd: float | None = None) -> str:
    if m is None or not math.isfinite(m):
        return "n/a"
    s = f"{m:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def _diff(p: dict[str, Any], key: str) -> str:
    return f"{p[key]['diff']:+.3f} [{p[key]['lo']:+.3f}, {p[key]['hi']:+.3f}]" if key in p else "—"


def _set_label(name: str) -> str:
    base = name.removesuffix("_bg")
    return f"{base}, abstained pixels as background (ablation)" if name.endswith("_bg") else name


def markdown(r: dict[str, Any]) -> str:
    n = r["n_tiles"]
    ct = r.get("cam_tau")
    lines = [
        f"# EBHI H&E tiles: pseudo-labels from tile tags ({'quick' if r['quick'] else 'full'} run)",
        "",
        f"Tiles train {n['train']} / val {n['val']} / test {n['test']} at {r['size']} × {r['size']} grey; "
        f"segmenter seeds {r['seeds']}; {r.get('cpu_seconds', 0):.0f} s CPU ({r.get('seconds', 0):.0f} s wall). "
        f"Skipped: {len(r['skipped'])}.",
    ]
    if ct:
        how = "chosen on the val tiles by the fusion sweep with no ignore band" if ct["chosen_on"] == "val" else "given"
        edge = " (the lowest point of the sweep's grid)" if ct.get("at_grid_edge") else ""
        lines += ["", f"cam_tau (threshold of cam, dhr, cpal, par and DuPL's initial labels) = {ct['tau']:g}, "
                  f"{how}{edge}; rows named `_tau<τ>` use that fixed τ instead (the comparison)."]  # fmt: skip
        if "sweep" in ct:
            sw = ct["sweep"]
            curve = ", ".join(f"{t:g}: {d:.3f}" for t, d in zip(sw["taus"], sw["dice"], strict=True))
            lines += ["", f"Val sweep (mean Dice incl. background of the thresholded CAMs against τ): {curve}."]
    lines += [
        "",
        "Pseudo-labels on the train tiles (classes background / benign / malignant; pixels a method abstains "
        "on left out of the IoU). Per-tile mIoU: mean over train patients [95% bootstrap CI]. Val mIoU: the "
        "same labels on the val tiles (pooled; the split cam_tau was chosen on).",
        "",
        "| method | mIoU benign+malignant (pooled) | IoU bg | IoU benign | IoU malignant | per-tile mIoU | coverage | τ "
        "| val mIoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m, q in r["pseudo"].items():
        tau = q.get("cam_tau", q.get("tau", q.get("final_tau")))
        val = _f(q["val"]["miou"]) if "val" in q else ""
        lines.append(
            f"| {m} | {_f(q['miou'])} | " + " | ".join(_f(q["iou"][c]) for c in NAMES)
            + f" | {_ci(q['tile_miou'], q['tile_miou_lo'], q['tile_miou_hi'])} | {q['coverage']:.3f} | "
            + ("" if tau is None else f"{tau:.2f}") + f" | {val} |"
        )  # fmt: skip
    lines += ["", "Ablation (one setting changed; pseudo-label mIoU on the train tiles):", "",
              "| method | change | mIoU (pooled) | per-tile mIoU | coverage |", "|---|---|---|---|---|"]  # fmt: skip
    for a in r["ablation"]:
        lines.append(f"| {a['method']} | {a['change']} | {_f(a['miou'])} | "
                     f"{_ci(a['tile_miou'], a['tile_miou_lo'], a['tile_miou_hi'])} | {a['coverage']:.3f} |")  # fmt: skip
    if r["segmenter"]:
        val = r.get("segmenter_val", {})
        lines += ["", "UNet trained on each set's train-tile labels, scored on the val and the test tiles: mean over "
                  "seeds ± sd [95% bootstrap CI over patients]. Class Dice = Dice of the tile's own class; Δ = paired "
                  "difference (test) to the set's CAM baseline (`cam` for the chosen τ, `cam_tau<τ>` for that τ).", "",
                  "| trained on | pseudo-label mIoU | val class Dice | val fg Dice | test class Dice | test fg Dice "
                  "| class Dice Δ | fg Dice Δ | test fg Dice − all-foreground |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, s in r["segmenter"].items():
            base = name.removesuffix("_bg")
            miou = "1 (masks)" if name == "full" else _f(r["pseudo"][base]["miou"]) if base in r["pseudo"] else ""
            ref = baseline_of(name)
            p = r["paired"].get(f"{name}-{ref}", {})
            v = val.get(name)
            vcols = [
                _ci(v[k], v[f"{k}_lo"], v[f"{k}_hi"], v[f"{k}_sd"]) if v else "—" for k in ("class_dice", "fg_dice")
            ]
            lines.append(
                f"| {_set_label(name)} | {miou} | {vcols[0]} | {vcols[1]} | "
                f"{_ci(s['class_dice'], s['class_dice_lo'], s['class_dice_hi'], s['class_dice_sd'])} | "
                f"{_ci(s['fg_dice'], s['fg_dice_lo'], s['fg_dice_hi'], s['fg_dice_sd'])} | "
                f"{_diff(p, 'class_dice')} | {_diff(p, 'fg_dice')} | "
                f"{_diff(r['paired'].get(f'{name}-all_fg', {}), 'fg_dice')} |"
            )
        twins = [k for k in r["paired"] if "_tau" in k.split("-", 1)[1] and "_tau" not in k.split("-", 1)[0]]
        if twins:
            lines += ["", "Chosen τ against the fixed τ, same method (paired, per patient): val and test.", "",
                      "| method | val class Dice Δ | val fg Dice Δ | test class Dice Δ | test fg Dice Δ |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for k in twins:
                pv, pt = r.get("paired_val", {}).get(k, {}), r["paired"][k]
                lines.append(f"| {k.replace('-', ' − ')} | {_diff(pv, 'class_dice')} | {_diff(pv, 'fg_dice')} | "
                             f"{_diff(pt, 'class_dice')} | {_diff(pt, 'fg_dice')} |")  # fmt: skip
        for key, split in (("trivial_fg_dice_val", "val"), ("trivial_fg_dice", "test")):
            if key in r:
                t = r[key]
                lines += ["", f"Trivial reference ({split}): every pixel foreground, foreground Dice "
                          f"{_ci(t['mean'], t['lo'], t['hi'])} (the last column: each set's paired difference to it)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def stem_of(args: argparse.Namespace) -> str:
    """Results file stem: ``pseudo_ebhi[_<tag>][_quick]``."""
    return "pseudo_ebhi" + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real"), help="folder holding histo/ebhi/")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few tiles at 32 px, one epoch, one seed")
    ap.add_argument("--seeds", type=int, default=3, help="segmenter seeds 0..n-1 (default 3)")
    ap.add_argument("--size", type=int, default=64, help="tile side (default 64)")
    ap.add_argument("--epochs", type=int, default=6, help="UNet epochs (default 6)")
    ap.add_argument("--stage", choices=("1", "2", "all"), default="all",
                    help="1: pseudo-labels only (saved under WORK/labels); 2: segmenters from those labels and "
                    "the stage-1 tables of the results file; all (default): both")  # fmt: skip
    ap.add_argument("--cam-tau", default="val",
                    help="threshold of cam/dhr/cpal/par and DuPL's initial labels: 'val' (default; the fusion sweep "
                    "with no ignore band on the val tiles picks it) or a number")  # fmt: skip
    ap.add_argument("--compare-tau", default="0.5",
                    help="also run those five methods at this fixed τ (rows '<method>_tau<τ>'); 'none': skip")  # fmt: skip
    ap.add_argument("--tag", default="", help="results file pseudo_ebhi_<tag>.{json,md} (default: pseudo_ebhi)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    ap.add_argument("--work", help="work folder for tiles, models and labels (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.stage == "2" and not args.work:
        ap.error("--stage 2 needs --work, the folder of the stage-1 run")
    from medwss.runinfo import write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem_of(args)

    def save(record: dict[str, Any]) -> None:  # after stage 1 and every seed: an interrupted run keeps its tables
        write_results(out, stem, record, markdown(record), echo=False)

    record = run(args, on_stage=save)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
