"""Pseudo-label toolkit on the real CT organ map and on CT phantoms; segmenters trained on each kind.

Usage:
    python benchmarks/pseudo_labels.py [--quick] [--out benchmarks/results] [--work DIR]

Data (2D axial slices):
  * ``real``: the TotalSegmentator example CT (122×101×30, 3 mm; in-plane downsampled ×2) with its
    organ map as ground truth (liver, spleen, right and left kidney). One volume, so slices are
    split in blocks of five: blocks 0, 2, 4 = train, 1 = val (threshold sweep, DHR prior),
    3, 5 = test (segmenter evaluation). Neighbouring blocks touch: an optimistic split.
  * ``phantom``: CT phantoms (`medwss phantom ct`, scale 0.5: 48×48×24) with liver, kidneys,
    spleen and kidney tumour (the minor class); the manifest's patient-level train/val/test splits.

Weak labels are derived from the ground truth (`medwss.data.weak.make_weak_label`): slice tags, 3
points per component (activation maps = intensity likelihood × closeness to the points), scribbles
(skeletons), one box per connected component. Stage 1 scores each method's pseudo-labels on the
train slices (Dice and mIoU over foreground classes on the pixels labelled, coverage, minor-class
recall) against the plain activation-map threshold and the raw box. Stage 2 trains the shared
`medwss.seg` U-Net (CE + soft Dice on the labelled pixels, ignore = -1 unsupervised, no flips) on
the train slices with each kind of pseudo-label and reports test Dice against the same network
trained on the full ground truth. Results: benchmarks/results/pseudo_labels[_quick].json/.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ROOT.parent / "shared" / "data" / "real" / "volumes"
STAGE2 = ("full", "cam", "box", "box+random_walker", "dhr", "fuse", "agmm_refine", "dupl")


def real_cases(cfg):  # noqa: ANN001, ANN201
    """The real CT as three SliceCases (train/val/test blocks of axial slices)."""
    from medwss.data.manifest import Case
    from medwss.pseudo.volumes import slice_case

    case = Case("real_ct", "p0", "ts", "CT", {"image": REAL / "example_ct_sm.nii.gz"}, mask=REAL / "example_seg.nii.gz")
    full = slice_case(case, cfg)
    blocks = {"train": [0, 2, 4], "val": [1], "test": [3, 5]}
    out = []
    for split, ids in blocks.items():
        ks = [k for b in ids for k in range(5 * b, 5 * b + 5) if k < len(full.images)]
        out.append(full.subset(ks, case_id=f"real_{split}", split=split))
    return out


def phantom_cases(cfg, work: Path, n: int, seed: int):  # noqa: ANN001, ANN201
    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms import generate
    from medwss.pseudo.workflow import load_cases

    manifest = generate("ct", work / "ct", n=n, seed=seed, scale=0.5, progress=False)
    cases, failed = load_cases(load_manifest(manifest), cfg)
    assert not failed, failed
    return cases


def method_configs(**values) -> dict:  # noqa: ANN003
    """Every registered method's own config from one pool of settings (each takes the keys it reads)."""
    from medwss.pseudo.methods import PSEUDO_METHODS, config_for

    return {m: config_for(m, values, only_read=True) for m in PSEUDO_METHODS}


def pseudo_labels(cases, cfgs, quick: bool) -> tuple[dict, dict]:  # noqa: ANN001
    """Every method's per-case, per-slice pseudo-labels (each with its config in `cfgs`) and the extras."""
    from medwss.pseudo import workflow as wf

    out: dict = {}
    extra: dict = {"seconds": {}}

    def timed(name, fn):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        out[name] = fn()
        extra["seconds"][name] = round(time.perf_counter() - t, 2)

    cams, feats = wf.compute_cams(cases, cfgs["cam"])  # the CAM settings are shared: one set of maps for all
    timed("cam", lambda: wf.cam_baseline(cams, cfgs["cam"]))
    box = cfgs["box"]
    for seg in ("box", "random_walker", "chan_vese", "otsu"):
        name = "box" if seg == "box" else f"box+{seg}"
        timed(
            name,
            lambda seg=seg: wf.run_box(
                cases, box.model_copy(update={"segmenter": seg, "ring": 0 if seg == "box" else box.ring})
            ),
        )
    timed("dhr", lambda: wf.run_dhr(cases, cams, cfgs["dhr"]))
    timed("fuse", lambda: wf.run_fuse(cases, cams, cfgs["fuse"])[0])
    extra["fuse_tau"] = float(wf.sweep(cases, cams, cfgs["fuse"])["best_tau"])  # type: ignore[arg-type]
    timed("par", lambda: wf.run_par(cases, cams, cfgs["par"]))
    timed("cpal", lambda: wf.run_cpal(cases, cams, feats, cfgs["cpal"]))
    timed("agmm_refine", lambda: wf.run_agmm(cases, cfgs["agmm"], offline=True))
    timed("agmm", lambda: wf.run_agmm(cases, cfgs["agmm"]))
    timed("dupl", lambda: wf.run_dupl(cases, cams, cfgs["dupl"])[0])
    return out, extra


def quality(cases, labels: dict, cfg) -> list[dict]:  # noqa: ANN001
    from medwss.pseudo.metrics import PseudoLabelMeter

    rows = []
    names = cfg.classes()
    for method, per_case in labels.items():
        meter = PseudoLabelMeter(len(names), names, cfg.minor_ids())
        for c, labs in zip(cases, per_case, strict=True):
            if c.split == "train":
                for p, g in zip(labs, c.gts, strict=True):
                    meter.update(p, g)
        r = meter.report()
        rows.append(
            {
                "method": method,
                "dice": r["mean_dice"],
                "miou": r["miou"],
                "coverage": r["coverage"],
                "minor_recall": r["minor_recall"],
                "per_class_dice": {k: v["dice"] for k, v in r["per_class"].items()},  # type: ignore[attr-defined]
            }
        )
    return rows


def train_and_test(cases, labels: dict, cfg, epochs: int, methods) -> list[dict]:  # noqa: ANN001
    """Stage 2: a U-Net per kind of pseudo-label, test Dice per class against the ground truth."""
    from medwss.pseudo.metrics import PseudoLabelMeter
    from medwss.seg import SegSample, SegTrainConfig, predict_probs, train_segmenter

    names = cfg.classes()
    scfg = SegTrainConfig(
        num_classes=len(names),
        channels=(16, 32, 64),
        loss="ce_dice",  # pseudo-label pixels only (ignore = -1), CE + soft Dice for the small organs
        epochs=epochs,
        batch_size=8,
        lr=3e-3,
        augment=False,  # no flips: left and right kidney are different classes
        device="cpu",
    )
    test = [(im, g) for c in cases if c.split == "test" for im, g in zip(c.images, c.gts, strict=True)]
    rows = []
    for method in methods:
        samples = []
        for i, c in enumerate(cases):
            if c.split != "train":
                continue
            targets = c.gts if method == "full" else labels[method][i]
            samples += [SegSample(im, t.astype(np.int64)) for im, t in zip(c.images, targets, strict=True)]
        t0 = time.perf_counter()
        model, _ = train_segmenter(samples, scfg, progress=False)
        probs = predict_probs(model, [im for im, _ in test], scfg)
        meter = PseudoLabelMeter(len(names), names, cfg.minor_ids())
        for p, (_, g) in zip(probs, test, strict=True):
            meter.update(p.argmax(0), g)
        r = meter.report()
        rows.append(
            {
                "labels": method,
                "test_dice": r["mean_dice"],
                "minor_recall": r["minor_recall"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    full = next((r["test_dice"] for r in rows if r["labels"] == "full"), None)
    for r in rows:
        r["of_full"] = r["test_dice"] / full if full else None
    return rows


def markdown(results: dict) -> str:
    lines = ["# Pseudo-label toolkit: quality and downstream segmentation", ""]
    for ds, res in results["datasets"].items():
        lines += [f"## {ds} ({res['description']})", "", "Pseudo-labels on the train slices:", ""]
        lines += ["| method | Dice | mIoU | coverage | minor recall | seconds |", "|---|---|---|---|---|---|"]
        for r in res["quality"]:
            sec = res["seconds"].get(r["method"], "")
            lines.append(
                f"| {r['method']} | {r['dice']:.3f} | {r['miou']:.3f} | {r['coverage']:.3f} | {r['minor_recall']:.3f} | {sec} |"
            )
        lines += ["", f"Fusion threshold chosen on the val slices: τ = {res['fuse_tau']:.2f}.", ""]
        lines += [
            "U-Net trained on each kind of label, test slices:",
            "",
            "| labels | test Dice | of full | minor recall |",
            "|---|---|---|---|",
        ]
        for r in res["segmenter"]:
            lines.append(f"| {r['labels']} | {r['test_dice']:.3f} | {r['of_full']:.2f} | {r['minor_recall']:.3f} |")
        lines.append("")
    lines.append(
        f"Total run time {results['seconds']:.0f} s ({'quick' if results['quick'] else 'full'} mode, 1 CPU thread)."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from medwss.runinfo import write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small settings (< 60 s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", help="scratch folder (a temporary one if omitted)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="pseudo_bench_"))
    iters = 15 if args.quick else 150
    base = {"iterations": iters, "seed": args.seed, "confidence": 0.6}
    sets = {
        "real": (
            method_configs(
                labels="totalseg", minor=("right_kidney", "left_kidney"), downsample=2, point_sigma=12.0, **base
            ),
            "real CT, 61×51 slices, liver/spleen/kidneys",
            2 if args.quick else 150,  # U-Net epochs: 15 train slices, about 300 steps
        ),
        "phantom": (
            method_configs(labels="ct_phantom", **base),
            "CT phantoms, 48×48 slices, + kidney tumour",
            2 if args.quick else 25,
        ),
    }
    results: dict = {"quick": args.quick, "seed": args.seed, "datasets": {}}
    for ds, (cfgs, desc, epochs) in sets.items():
        cfg = cfgs["cam"]  # the settings every method reads (slicing, classes) are the same in each
        if ds == "real" and not REAL.is_dir():
            print(f"skipping real CT: {REAL} not found")
            continue
        cases = real_cases(cfg) if ds == "real" else phantom_cases(cfg, work, 4 if args.quick else 8, args.seed)
        if args.quick and ds == "phantom":
            cases = [c.subset(range(6, 14)) for c in cases]
        labels, extra = pseudo_labels(cases, cfgs, args.quick)
        methods = ("full", "cam", "box+random_walker") if args.quick else STAGE2
        results["datasets"][ds] = {
            "description": desc,
            "config": {k: v for c in cfgs.values() for k, v in c.model_dump().items()},  # every method's settings
            "quality": quality(cases, labels, cfg),
            "segmenter": train_and_test(cases, labels, cfg, epochs, methods),
            **extra,
        }
        print(f"{ds}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    results["seconds"] = time.perf_counter() - t0
    write_results(args.out, "pseudo_labels_quick" if args.quick else "pseudo_labels", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
