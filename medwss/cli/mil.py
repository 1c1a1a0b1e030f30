"""`medwss mil train|predict|heatmap`: slide- or scan-level labels in; a classifier and heatmaps out.

Train on a manifest whose `features` column points at bags (from `medwss embed`, CLAM or TRIDENT)
and whose `label` column holds the case labels; `predict` scores new cases; `heatmap` writes the
per-tile scores and viewer files (PNG overlay, QuPath TIFF and GeoJSON, NIfTI for 3D Slicer).
A manifest of bags alone (``case_id,label,features``; no slides) works for all three: `heatmap`
then draws the scores on the bag's tile grid (PNG) and writes GeoJSON in level-0 pixels.
Training resumes from ``OUT/checkpoint.pt`` (same settings; more ``--epochs`` continue it) and
writes ``model.pt`` as the one model file (`medwss.train.load_model`). Scale out with
`torchrun --nproc-per-node N -m medwss mil train ...`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

_TRAIN_FLAGS = ("aggregator", "epochs", "lr", "seed", "folds", "device", "max_instances", "monitor")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mil", help="train and apply MIL aggregators (INSIGHT, ABMIL, ...)", description=__doc__)
    msub = p.add_subparsers(dest="mil_command", metavar="SUBCOMMAND", required=True)
    t = msub.add_parser("train", help="train an aggregator on labelled bags")
    t.add_argument("manifest", help="manifest CSV with label and features columns (an image column is optional)")
    t.add_argument("--out", required=True, help="output folder (model.pt, metrics.json, history.json)")
    t.add_argument("--config", help="YAML config (configs/mil_insight.yaml, ...); flags override it")
    t.add_argument("--aggregator", help="insight, abmil, clam_sb, transmil, mean, max")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--folds", type=int, help="patient-level k-fold cross-validation")
    t.add_argument("--device", help="auto (default), cpu, cuda")
    t.add_argument("--max-instances", type=int, help="subsample bags to this many instances while training")
    t.add_argument("--monitor", choices=("val_loss", "val_auc"), help="what selects the best epoch (default val_loss)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)
    pr = msub.add_parser("predict", help="case probabilities for the cases of a manifest")
    pr.add_argument("manifest")
    pr.add_argument("--model", required=True, help="model.pt from `medwss mil train`")
    pr.add_argument("--out", required=True, help="output CSV (metrics JSON beside it when labels are known)")
    pr.set_defaults(func=run_predict)
    h = msub.add_parser("heatmap", help="per-tile scores and heatmap files for every case")
    h.add_argument("manifest")
    h.add_argument("--model", required=True)
    h.add_argument("--out", required=True, help="output folder")
    h.add_argument("--threshold", type=float, default=0.5, help="contour threshold for GeoJSON (default 0.5)")
    h.add_argument("--quiet", action="store_true")
    h.set_defaults(func=run_heatmap)


def resolve(args: argparse.Namespace):  # noqa: ANN201
    from medwss.config import merge_config
    from medwss.mil.train import MILTrainConfig

    return merge_config(MILTrainConfig, args.config, {k: getattr(args, k) for k in _TRAIN_FLAGS})


def run_train(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.mil.workflow import train_from_manifest
    from medwss.runinfo import write_run_record
    from medwss.train.distributed import rank_info

    cfg = resolve(args)
    metrics = train_from_manifest(load_manifest(args.manifest, images=False), cfg, args.out, progress=not args.quiet)
    if rank_info().is_main:
        write_run_record(args.out, "mil train", cfg.model_dump(), seed=cfg.seed, metrics=metrics)
        val = metrics.get("val", {})
        if "auc" in val:
            print(f"{cfg.aggregator}: validation AUC {val['auc']:.3f} [{val['auc_lo']:.3f}, {val['auc_hi']:.3f}]")
        elif metrics.get("val_auc_mean") is not None:
            print(
                f"{cfg.aggregator}: {cfg.folds}-fold validation AUC {metrics['val_auc_mean']:.3f} ± {metrics['val_auc_sd']:.3f}"
            )
        print(f"model: {Path(args.out) / 'model.pt'}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.io.atomic import write_text
    from medwss.mil.data import load_bags
    from medwss.mil.workflow import case_metrics, predict_manifest

    manifest = load_manifest(args.manifest, images=False)
    cases, outs = predict_manifest(manifest, args.model)
    k = outs[0].probs.numel()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", "label"] + (["prob"] if k == 1 else [f"prob_{i}" for i in range(k)]))
    for c, o in zip(cases, outs, strict=True):
        w.writerow([c.case_id, "" if c.label is None else c.label] + [f"{v:.6f}" for v in o.probs.tolist()])
    write_text(args.out, buf.getvalue())
    labelled = [(c, o) for c, o in zip(cases, outs, strict=True) if c.label is not None]
    if labelled and len({c.label for c, _ in labelled}) > 1:
        bags = load_bags([c for c, _ in labelled], k)
        metrics = case_metrics(bags, [o for _, o in labelled])
        write_text(Path(args.out).with_suffix(".metrics.json"), json.dumps(metrics, indent=2))
        print(f"AUC {metrics['auc']:.3f} [{metrics['auc_lo']:.3f}, {metrics['auc_hi']:.3f}] on {len(labelled)} cases")
    print(f"wrote {args.out}")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.mil.heatmaps import write_heatmaps

    manifest = load_manifest(args.manifest, images=False)
    summary = write_heatmaps(manifest, args.model, args.out, threshold=args.threshold, progress=not args.quiet)
    print(
        f"heatmaps for {summary['done']} case(s) in {args.out}"
        + (f", {summary['failed']} failed" if summary["failed"] else "")
    )
    return 0 if summary["done"] else 2
