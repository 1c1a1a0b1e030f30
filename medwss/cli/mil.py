"""`medwss mil train|predict|heatmap`: slide- or scan-level labels in; a classifier and heatmaps out.

Train on a manifest whose `features` column points at bags (from `medwss embed`, CLAM or TRIDENT)
and whose `label` column holds the case labels; `predict` scores new cases; `heatmap` writes the
per-tile scores and viewer files (PNG overlay, QuPath TIFF and GeoJSON, NIfTI for 3D Slicer).
A manifest of bags alone (``case_id,label,features``; no slides) works for all three: `heatmap`
then draws the scores on the bag's tile grid (PNG) and writes GeoJSON in level-0 pixels.
`predict` and `heatmap` also take ``-i DIR -o DIR`` instead of a manifest: a folder of bags (one
case per ``.h5``, the id its stem) or of slides/volumes, tiled and embedded into ``OUT/tiles`` and
``OUT/bags`` with the settings the model file records (`medwss.embed.images_to_bags.embedding_configs`).
Training resumes from ``OUT/checkpoint.pt`` (same settings; more ``--epochs`` continue it) and
writes ``model.pt`` as the one model file (`medwss.train.load_model`). Scale out with
`torchrun --nproc-per-node N -m medwss mil train ...`.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medwss.jobs import Job
    from medwss.mil.config import MILTrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.mil.config import MILTrainConfig

    p = sub.add_parser("mil", help=command_help("mil"), description=__doc__)
    msub = p.add_subparsers(dest="mil_command", metavar="SUBCOMMAND", required=True)
    t = msub.add_parser("train", help="train an aggregator on labelled bags")
    t.add_argument("manifest", help="manifest CSV with label and features columns (an image column is optional)")
    t.add_argument("--out", required=True, help="output folder (model.pt, metrics.json, history.json)")
    t.add_argument("--config", help="YAML config (configs/mil_insight.yaml, ...); flags override it")
    add_config_flags(t, MILTrainConfig)
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
    _add_input_flags(pr, exclude=("threshold",))
    pr.set_defaults(func=_applying(run_predict))
    h = msub.add_parser(
        "heatmap",
        help="per-tile scores and heatmap files for every case (of a manifest or a folder: -i DIR -o DIR)",
    )
    h.add_argument("manifest", nargs="?", help="manifest CSV (or use -i DIR)")
    h.add_argument("--model", required=True)
    h.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder")
    _add_input_flags(h)
    h.set_defaults(func=_applying(run_heatmap))


def _add_input_flags(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    from medwss.cli.options import add_config_flags
    from medwss.mil.config import MILApplyConfig

    p.add_argument("-i", "--input", help="folder of feature bags (.h5) or of slides/volumes, instead of a manifest")
    p.add_argument("--config", help="YAML config of these settings (configs/mil_apply.yaml); flags override it")
    note = "encoder to device: how the images of -i are embedded (none: as the model file records)."
    add_config_flags(p, MILApplyConfig, exclude=exclude, description=note)
    p.add_argument("--quiet", action="store_true")


def _applying(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`run` with the `MILApplyConfig` (defaults < ``--config`` YAML < flags) set onto `args`, bags read
    under its ``nan`` policy."""

    def resolved(args: argparse.Namespace) -> int:
        from medwss.cli.options import config_from_args
        from medwss.embed.store import bag_nan_policy
        from medwss.mil.config import MILApplyConfig

        cfg = config_from_args(MILApplyConfig, args, args.config)
        for key, value in cfg.model_dump().items():
            setattr(args, key, value)
        with bag_nan_policy(args.nan):
            return run(args)

    resolved.__name__ = run.__name__
    return resolved


def _folder_cases(args: argparse.Namespace, job: Job) -> list:
    """The cases of ``-i DIR`` (its bags, or its images tiled and embedded into ``-o``); the files
    skipped by the scan (stage ``scan``) and the cases that fail tiling or embedding go to `job`."""
    from medwss.io.folder import bags_from_folder, cases_from_folder, holds_bags

    if holds_bags(args.input):
        cases, skipped = bags_from_folder(args.input)
        for s in skipped:
            job.fail(Path(s["path"]).name, s["error"], "scan", s["path"])
    else:
        from medwss.embed.images_to_bags import embed_cases, embedding_configs
        from medwss.mil.train import load_model

        meta = load_model(args.model)[1]
        tile_cfg, embed_cfg = embedding_configs(
            meta, args.encoder, args.weights, args.tile_size, args.mpp, args.mode, args.device
        )  # before any image is read: a missing encoder fails here
        images, skipped = cases_from_folder(args.input, args.modality)
        for s in skipped:
            job.fail(Path(s["path"]).name, s["error"], "scan", s["path"])
        cases, _ = embed_cases(images, tile_cfg, embed_cfg, args.out, progress=not args.quiet, job=job)
    return cases


def _one_input(args: argparse.Namespace) -> None:
    from medwss.errors import ConfigError

    if args.input and args.manifest:
        raise ConfigError(f"give a manifest or -i/--input DIR, not both (got {args.manifest} and -i {args.input})")
    if not args.input and not args.manifest:
        raise ConfigError("give a manifest or -i/--input DIR (a folder of feature bags or images)")


def resolve(args: argparse.Namespace) -> MILTrainConfig:
    """The training config: MILTrainConfig's defaults < the ``--config`` YAML < the flags given."""
    from medwss.cli.options import config_from_args
    from medwss.mil.config import MILTrainConfig

    return config_from_args(MILTrainConfig, args, args.config)


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
    from medwss.cli.batch import finish
    from medwss.jobs import Job

    runs = metrics.get("folds") or [metrics]  # k-fold: every fold loads every bag
    failed = list({f["case_id"]: f for r in runs for f in r.get("failed", [])}.values())
    if not rank_info().is_main:
        return 0
    job = Job(Path(args.out) / "failures.csv", fresh=True)
    for f in failed:
        job.fail(f["case_id"], f.get("error", ""), "load", f.get("image"))
    summary = job.summary()
    summary.done = sum(runs[0].get("cases", {}).values())
    return finish("mil train", summary)


def run_predict(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.io.atomic import write_json, write_text
    from medwss.mil.data import load_bags
    from medwss.mil.workflow import case_metrics

    _one_input(args)
    if args.input:
        return _predict_folder(args)
    from medwss.cli.batch import finish
    from medwss.jobs import Job
    from medwss.mil.workflow import predict_cases

    manifest = load_manifest(args.manifest, images=False)
    job = Job(Path(args.out).with_suffix(".failures.csv"), fresh=True)
    cases, outs, _ = predict_cases(list(manifest.cases), args.model, job=job)  # a bad model fails the job
    k = outs[0].probs.numel() if outs else 1
    top = max(k - 1, 1)
    for c in cases:
        if c.label is not None and not 0 <= int(c.label) <= top:
            job.fail(c.case_id, f"label {c.label} is outside the model's classes 0..{top}", "predict", c.features)
    kept = [(c, o) for c, o in zip(cases, outs, strict=True) if not job.failed(c.case_id)]
    cases, outs = [c for c, _ in kept], [o for _, o in kept]
    if not outs:
        return finish("mil predict", job.summary())
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
        write_json(Path(args.out).with_suffix(".metrics.json"), metrics)
        print(f"AUC {metrics['auc']:.3f} [{metrics['auc_lo']:.3f}, {metrics['auc_hi']:.3f}] on {len(labelled)} cases")
    print(f"wrote {args.out}")
    return finish("mil predict", job.summary())


def _predict_folder(args: argparse.Namespace) -> int:
    """``predict -i DIR -o DIR``: ``OUT/predictions.csv`` (case_id, prob), ``OUT/failures.csv``, ``OUT/run.json``."""
    from medwss.cli.batch import finish
    from medwss.io.atomic import write_text
    from medwss.jobs import Job
    from medwss.mil.workflow import predict_cases
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    job = Job(out / "failures.csv", fresh=True)
    found = _folder_cases(args, job)
    cases, outs, _ = predict_cases(found, args.model, job=job)
    failed = job.summary().failures
    for f in failed:
        print(f"skipped {f['case_id']}: {f['message']}")
    if not outs:
        return finish("mil predict", job.summary())
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
    return finish("mil predict", job.summary())


def run_heatmap(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.mil.workflow import write_heatmaps

    _one_input(args)
    if args.input:
        from medwss.jobs import Job
        from medwss.mil.workflow import heatmaps_for_cases

        job = Job(Path(args.out) / "failures.csv")
        found = _folder_cases(args, job)
        for f in job.summary().failures:
            print(f"skipped {f['case_id']}: {f['message']}")
        summary = heatmaps_for_cases(
            found, args.model, args.out, threshold=args.threshold, progress=not args.quiet, job=job
        )
    else:
        manifest = load_manifest(args.manifest, images=False)
        summary = write_heatmaps(manifest, args.model, args.out, threshold=args.threshold, progress=not args.quiet)
    print(
        f"heatmaps for {summary['done']} case(s) in {args.out}"
        + (f", {summary['failed']} failed" if summary["failed"] else "")
    )
    from medwss.cli.batch import finish

    return finish("mil heatmap", summary["summary"])
