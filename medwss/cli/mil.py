"""`medwss mil train|predict|heatmap`: slide- or scan-level labels in; a classifier and heatmaps out.

Train on a manifest whose `features` column points at bags (from `medwss embed`, CLAM or TRIDENT)
and whose `label` column holds the case labels; `predict` scores new cases; `heatmap` writes the
per-tile scores and viewer files (PNG overlay, QuPath TIFF and GeoJSON, NIfTI for 3D Slicer).
A manifest of bags alone (``case_id,label,features``; no slides) works for all three: `heatmap`
then draws the scores on the bag's tile grid (PNG) and writes GeoJSON in level-0 pixels.
`predict` and `heatmap` also take ``-i DIR -o DIR`` instead of a manifest: a folder of bags (one
case per ``.h5``, the id its stem) or of slides/volumes, tiled and embedded into ``OUT/tiles`` and
``OUT/bags`` with the settings the model file records (`medwss.mil.workflow.embedding_configs`).
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
    pr = msub.add_parser(
        "predict",
        help="case probabilities for the cases of a manifest, or of a folder (-i DIR -o DIR)",
        description="Case probabilities. Either MANIFEST --out FILE.csv or -i DIR -o DIR: DIR holds feature bags "
        "(.h5 from `medwss embed`, CLAM or TRIDENT; one case per file, the id its stem) or slides/volumes, tiled "
        "and embedded first as the model's training bags were (OUT/tiles, OUT/bags); OUT/predictions.csv.",
    )
    pr.add_argument("manifest", nargs="?", help="manifest CSV (or use -i DIR)")
    pr.add_argument("--model", required=True, help="model.pt from `medwss mil train`")
    pr.add_argument(
        "-o", "--out", "--output", dest="out", required=True,
        help="output CSV (metrics JSON beside it when labels are known); with -i: a folder (predictions.csv)",
    )  # fmt: skip
    _add_input_flags(pr)
    pr.set_defaults(func=run_predict)
    h = msub.add_parser(
        "heatmap",
        help="per-tile scores and heatmap files for every case (of a manifest or a folder: -i DIR -o DIR)",
    )
    h.add_argument("manifest", nargs="?", help="manifest CSV (or use -i DIR)")
    h.add_argument("--model", required=True)
    h.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder")
    h.add_argument("--threshold", type=float, default=0.5, help="contour threshold for GeoJSON (default 0.5)")
    _add_input_flags(h)
    h.set_defaults(func=run_heatmap)


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", help="folder of feature bags (.h5) or of slides/volumes, instead of a manifest")
    g = p.add_argument_group("embedding images of -i (default: as the model file records)")
    g.add_argument("--encoder", help="encoder of the training bags, when the model does not record it")
    g.add_argument("--weights", help="its weights file, as given to `medwss embed` (checked by sha256)")
    g.add_argument("--tile-size", type=int, help="tile side (default: recorded, else as `medwss tile`)")
    g.add_argument("--mpp", type=float, help="slides: microns per pixel of the tiles (default: recorded)")
    g.add_argument("--mode", choices=("axial2d", "stack25d", "patch3d"), help="volumes: tiling mode (default recorded)")
    g.add_argument("--modality", help="modality of the images (WSI, CT, MR, ...; default: from the files)")
    g.add_argument("--device", default="auto", help="where the encoder runs: auto (default), cpu, cuda")
    p.add_argument("--nan", choices=("raise", "keep"), default="raise", help="NaN/inf features: fail the case or keep")
    p.add_argument("--quiet", action="store_true")


def _folder_cases(args: argparse.Namespace) -> tuple[list, list[dict[str, str]]]:
    """The cases of ``-i DIR`` (its bags, or its images tiled and embedded into ``-o``) and the failures."""
    from medwss.io.folder import bags_from_folder, cases_from_folder, holds_bags

    if holds_bags(args.input):
        cases, skipped = bags_from_folder(args.input)
        failed = [{"case_id": Path(s["path"]).name, "error": s["error"]} for s in skipped]
    else:
        from medwss.mil.train import load_model
        from medwss.mil.workflow import embed_cases, embedding_configs

        meta = load_model(args.model)[1]
        tile_cfg, embed_cfg = embedding_configs(
            meta, args.encoder, args.weights, args.tile_size, args.mpp, args.mode, args.device
        )  # before any image is read: a missing encoder fails here
        images, skipped = cases_from_folder(args.input, args.modality)
        failed = [{"case_id": Path(s["path"]).name, "error": s["error"]} for s in skipped]
        cases, more = embed_cases(images, tile_cfg, embed_cfg, args.out, progress=not args.quiet)
        failed += more
    return cases, failed


def _one_input(args: argparse.Namespace) -> None:
    from medwss.errors import ConfigError

    if args.input and args.manifest:
        raise ConfigError(f"give a manifest or -i/--input DIR, not both (got {args.manifest} and -i {args.input})")
    if not args.input and not args.manifest:
        raise ConfigError("give a manifest or -i/--input DIR (a folder of feature bags or images)")


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
    from medwss.cli.batch import finish, record_failures

    runs = metrics.get("folds") or [metrics]  # k-fold: every fold loads every bag
    failed = list({f["case_id"]: f for r in runs for f in r.get("failed", [])}.values())
    if not rank_info().is_main:
        return 0
    log = record_failures(Path(args.out) / "failures.csv", failed).path
    return finish("mil train", sum(runs[0].get("cases", {}).values()) + len(failed), len(failed), log)


def run_predict(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.io.atomic import write_text
    from medwss.mil.data import load_bags
    from medwss.mil.workflow import case_metrics

    _one_input(args)
    if args.input:
        return _predict_folder(args)
    from medwss.cli.batch import finish, record_failures
    from medwss.mil.workflow import predict_cases

    manifest = load_manifest(args.manifest, images=False)
    log = Path(args.out).with_suffix(".failures.csv")
    cases, outs, failed = predict_cases(
        list(manifest.cases), args.model
    )  # a bad model fails the job, a bad bag its case
    k = outs[0].probs.numel() if outs else 1
    top = max(k - 1, 1)
    for c in cases:
        if c.label is not None and not 0 <= int(c.label) <= top:
            failed.append({"case_id": c.case_id, "error": f"label {c.label} is outside the model's classes 0..{top}"})
    bad = {f["case_id"] for f in failed}
    kept = [(c, o) for c, o in zip(cases, outs, strict=True) if c.case_id not in bad]
    cases, outs = [c for c, _ in kept], [o for _, o in kept]
    record_failures(log, failed)
    if not outs:
        return finish("mil predict", len(manifest.cases), len(failed), log)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", "label"] + (["prob"] if k == 1 else [f"prob_{i}" for i in range(k)]))
    for c, o in zip(cases, outs, strict=True):
        w.writerow([c.case_id, "" if c.label is None else c.label] + [f"{v:.6f}" for v in o.probs.tolist()])
    write_text(args.out, buf.getvalue())
    labelled = [(c, o) for c, o in zip(cases, outs, strict=True) if c.label is not None and o.probs.isfinite().all()]
    if labelled and len({c.label for c, _ in labelled}) > 1:
        bags = load_bags([c for c, _ in labelled], k)
        metrics = case_metrics(bags, [o for _, o in labelled])
        write_text(Path(args.out).with_suffix(".metrics.json"), json.dumps(metrics, indent=2))
        print(f"AUC {metrics['auc']:.3f} [{metrics['auc_lo']:.3f}, {metrics['auc_hi']:.3f}] on {len(labelled)} cases")
    print(f"wrote {args.out}")
    return finish("mil predict", len(manifest.cases), len(failed), log)


def _predict_folder(args: argparse.Namespace) -> int:
    """``predict -i DIR -o DIR``: ``OUT/predictions.csv`` (case_id, prob), ``OUT/failures.csv``, ``OUT/run.json``."""
    from medwss.cli.batch import finish, record_failures
    from medwss.io.atomic import write_text
    from medwss.mil.workflow import predict_cases
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    found, failed = _folder_cases(args)
    cases, outs, more = predict_cases(found, args.model)
    failed += more
    for f in failed:
        print(f"skipped {f['case_id']}: {f['error']}")
    log = out / "failures.csv"
    record_failures(log, failed)
    if not outs:
        return finish("mil predict", len(failed), len(failed), log)
    k = outs[0].probs.numel()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id"] + (["prob"] if k == 1 else [f"prob_{i}" for i in range(k)]))
    for c, o in zip(cases, outs, strict=True):
        w.writerow([c.case_id] + [f"{v:.6f}" for v in o.probs.tolist()])
    write_text(out / "predictions.csv", buf.getvalue())
    config = {"model": str(args.model), "input": args.input}
    write_run_record(out, "mil predict", config, None, {"done": len(outs), "failed": failed})
    print(f"wrote {out / 'predictions.csv'} ({len(outs)} case(s))")
    return finish("mil predict", len(outs) + len(failed), len(failed), log)


def run_heatmap(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.mil.workflow import write_heatmaps

    _one_input(args)
    if args.input:
        from medwss.mil.workflow import heatmaps_for_cases

        found, failed = _folder_cases(args)
        for f in failed:
            print(f"skipped {f['case_id']}: {f['error']}")
        summary = heatmaps_for_cases(
            found, args.model, args.out, threshold=args.threshold, progress=not args.quiet, skipped=failed
        )
    else:
        manifest = load_manifest(args.manifest, images=False)
        summary = write_heatmaps(manifest, args.model, args.out, threshold=args.threshold, progress=not args.quiet)
    print(
        f"heatmaps for {summary['done']} case(s) in {args.out}"
        + (f", {summary['failed']} failed" if summary["failed"] else "")
    )
    from medwss.cli.batch import finish

    failed = summary["failed"]
    return finish("mil heatmap", summary["done"] + failed, failed, Path(args.out) / "failures.csv")
