"""`medwss scribble make|train|predict|shift`: weak labels in; probability or label maps and reports out.

``make`` simulates weak labels (circle scribbles, disks, skeletons, points, blocks, boxes) from a
manifest's masks (drawn on the canonical grid, written int16 on the mask grid, -1 = unlabelled);
``train`` trains one segmenter (or an ensemble) on weak or full labels with the size constraint (or
the dual-branch DMPLS method), for a binary lesion or K structures (``num_classes``), on any named
channels (``sequences``; empty = the manifest's own); ``predict`` writes
``<out>/predictions/<case_id>.nii.gz`` on each case's stored reference and mask grid (lesion
probability for a binary model, the input of ``medwss evaluate``; the label map for K classes), or,
with ``-i DIR -o DIR`` and no manifest, one map per image of a folder into ``-o``
(`medwss.io.folder.cases_from_folder`); ``shift`` trains on some sites and reports in- vs
out-of-domain, single vs ensemble, for several configs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_TRAIN_FLAGS = (
    "supervision",
    "weak_kind",
    "bounds",
    "size_weight",
    "size_warmup",
    "method",
    "network",
    "spatial_dims",
    "epochs",
    "seed",
    "device",
)


def _options(pairs: list[str] | None) -> dict[str, object]:
    from medwss.errors import ConfigError

    out: dict[str, object] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--option takes KEY=VALUE, got '{pair}'")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from medwss.data.weak import WEAK_KINDS

    p.add_argument("--config", help="YAML config (configs/scribble_*.yaml); flags override it")
    p.add_argument("--supervision", choices=["weak", "full"])
    p.add_argument("--weak-kind", choices=WEAK_KINDS)
    p.add_argument("--bounds", help="size bounds: tag, true, box, upper, none")
    p.add_argument("--size-weight", type=float)
    p.add_argument("--size-warmup", type=int, help="epochs without the size term first")
    p.add_argument(
        "--method", choices=["standard", "dmpls"], help="standard, or dmpls (dual-branch, mixed pseudo labels)"
    )
    p.add_argument("--network", help="unet or dynunet")
    p.add_argument("--spatial-dims", type=int, choices=[2, 3])
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda")


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.data.weak import WEAK_KINDS

    p = sub.add_parser(
        "scribble",
        help="scribble-supervised segmentation (lesions or structures) with size constraints",
        description=__doc__,
    )
    ssub = p.add_subparsers(dest="scribble_command", metavar="SUBCOMMAND", required=True)
    m = ssub.add_parser("make", help="simulate weak labels from the masks of a manifest")
    m.add_argument("manifest")
    m.add_argument("--out", required=True, help="folder for scribbles/ and manifest.csv (scribble column set)")
    m.add_argument("--kind", default="circle", choices=WEAK_KINDS, help="weak-label kind (default circle)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--no-background", action="store_true", help="no background marks")
    m.add_argument("--option", action="append", metavar="KEY=VALUE", help="generator option, e.g. arc=0.5 or radius=3")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=run_make)
    t = ssub.add_parser("train", help="train a segmenter (or an ensemble) on the train split")
    t.add_argument("manifest")
    t.add_argument("--out", required=True, help="output folder (model.pt, history.json, run.json)")
    _add_train_flags(t)
    t.add_argument("--ensemble", type=int, default=1, help="train K members (seeds seed..seed+K-1) into member_<i>/")
    t.add_argument("--sites", help="comma-separated sites to train on (default: all)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)
    pr = ssub.add_parser(
        "predict",
        help="lesion probability (or K-class label) maps for the cases of a manifest, or of a folder (-i DIR -o DIR)",
        description="Lesion probability maps (binary models) or label maps (K classes). Either MANIFEST --out OUT (maps in OUT/predictions/) or, "
        "nnU-Net style, -i DIR -o DIR: every NIfTI file, DICOM series sub-folder or nnU-Net channel "
        "group (case_0000.nii.gz, case_0001.nii.gz, ... = the model's sequences in order) of DIR is a case; "
        "maps go straight into DIR_OUT.",
    )
    pr.add_argument("manifest", nargs="?", help="manifest CSV (or use -i DIR)")
    pr.add_argument("-i", "--input", help="folder of images instead of a manifest (see the description)")
    pr.add_argument(
        "--model", required=True, nargs="+", help="model.pt file(s) or training folder(s); several: ensemble"
    )
    pr.add_argument(
        "-o", "--out", "--output", dest="out", required=True,
        help="output folder; maps go to OUT/predictions/<case_id>.nii.gz (with -i: OUT/<case_id>.nii.gz)",
    )  # fmt: skip
    pr.add_argument("--modality", help="modality of the -i cases (CT, MR, ...; default: from the files)")
    pr.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap of 3D models (default 0.25)")
    pr.add_argument("--device", default="auto", help="where the network runs: auto (default), cpu, cuda")
    pr.add_argument("--split", help="only cases of this split (default: all)")
    pr.add_argument("--sites", help="comma-separated sites (default: all)")
    pr.add_argument("--overwrite", action="store_true", help="redo existing predictions")
    pr.add_argument(
        "--format",
        action="append",
        choices=("nifti", "dicom-seg", "slicer"),
        help="outputs (repeatable): nifti probability map (always), slicer label map + colour table, dicom-seg",
    )
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=run_predict)
    s = ssub.add_parser("shift", help="train on some sites; compare in/out of domain, single vs ensemble")
    s.add_argument("manifest")
    s.add_argument("--out", required=True, help="output folder (report.html, report.md, report.json, cases.csv)")
    s.add_argument("--train-sites", required=True, help="comma-separated training sites")
    s.add_argument(
        "--setting", action="append", required=True, metavar="NAME=CONFIG.yaml", help="a named config (repeat)"
    )
    s.add_argument("--ensemble", type=int, default=3, help="members per setting (default 3)")
    s.add_argument("--epochs", type=int, help="override every setting's epochs")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=run_shift)


def resolve(args: argparse.Namespace):  # noqa: ANN201
    from medwss.config import merge_config
    from medwss.scribble.config import ScribbleConfig

    return merge_config(ScribbleConfig, args.config, {k: getattr(args, k, None) for k in _TRAIN_FLAGS})


def _sites(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def run_make(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.runinfo import write_run_record
    from medwss.scribble.annotate import write_weak_labels

    opts = _options(args.option)
    summary = write_weak_labels(
        load_manifest(args.manifest), args.out, args.kind, args.seed, not args.no_background, opts, not args.quiet
    )
    config = {"kind": args.kind, "background": not args.no_background, "options": opts}
    write_run_record(args.out, "scribble make", config, seed=args.seed, metrics=summary)
    print(f"weak labels for {summary['done']} case(s); manifest: {summary['manifest']}")
    for f in summary["failed"]:
        print(f"skipped {f['case_id']}: {f['error']}")
    return 0 if summary["done"] else 2


def run_train(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.runinfo import write_run_record
    from medwss.scribble.workflow import select, train_ensemble, train_model

    cfg = resolve(args)
    manifest = load_manifest(args.manifest)
    sites = _sites(args.sites)
    train, val = select(manifest.cases, ["train"], sites), select(manifest.cases, ["val"], sites)
    if args.ensemble > 1:
        paths = train_ensemble(manifest, cfg, args.out, args.ensemble, train, val, not args.quiet)
        metrics: dict = {"members": [str(p) for p in paths]}
    else:
        metrics = train_model(manifest, cfg, args.out, train, val, not args.quiet)
        paths = [Path(args.out) / "model.pt"]
    write_run_record(args.out, "scribble train", cfg.model_dump(mode="json") | {"sites": sites}, cfg.seed, metrics)
    best = metrics.get("best_val_dice")
    print(
        f"trained {len(paths)} model(s) in {args.out}"
        + (f"; best validation Dice {best:.3f}" if best is not None else "")
    )
    from medwss.cli.batch import finish

    failed = int(metrics.get("failed", 0))  # cases skipped (one member's count for an ensemble: same cases)
    return finish("scribble train", len(train) + len(val), failed, metrics.get("failures"))


def _model_paths(values: list[str]) -> list[Path]:
    from medwss.errors import FileNotFound

    paths: list[Path] = []
    for v in values:
        p = Path(v)
        if p.is_dir():
            found = sorted(p.glob("member_*/model.pt")) or ([p / "model.pt"] if (p / "model.pt").exists() else [])
            if not found:
                raise FileNotFound("no model.pt (or member_*/model.pt) in this folder", p)
            paths += found
        else:
            paths.append(p)
    return paths


def run_predict(args: argparse.Namespace) -> int:
    from medwss.io.folder import cases_from_input
    from medwss.runinfo import write_run_record
    from medwss.scribble.workflow import load_members, predict_cases, select

    if args.input and args.manifest:  # before any model is read
        cases_from_input(args.manifest, args.input)
    models = _model_paths(args.model)
    sequences = load_members(models[:1])[0][2].sequences if args.input else None
    manifest, cases, skipped = cases_from_input(args.manifest, args.input, args.modality, sequences)
    if manifest is not None:
        cases = select(cases, [args.split] if args.split else None, _sites(args.sites))
    formats = tuple(args.format or ("nifti",))
    summary = predict_cases(
        manifest, cases, models, args.out, args.overwrite, not args.quiet, formats,
        overlap=args.overlap, device=args.device, subdir="" if args.input else "predictions",
    )  # fmt: skip
    summary["failed"] = [{"case_id": Path(s["path"]).name, "error": s["error"]} for s in skipped] + summary["failed"]
    config = {"models": [str(m) for m in models], "split": args.split, "formats": list(formats)}
    config |= {"input": args.input, "overlap": args.overlap, "device": args.device}
    write_run_record(args.out, "scribble predict", config, None, summary)
    where = Path(args.out) if args.input else Path(args.out) / "predictions"
    print(f"predictions for {summary['done']} case(s) in {where} ({summary['skipped']} existing kept)")
    for f in summary["failed"]:
        print(f"skipped {f['case_id']}: {f['error']}")
    from medwss.cli.batch import finish, record_failures

    n_failed = len(summary["failed"])
    log = record_failures(Path(args.out) / "failures.csv", summary["failed"]).path
    return finish("scribble predict", summary["done"] + summary["skipped"] + n_failed, n_failed, log)


def run_shift(args: argparse.Namespace) -> int:
    from medwss.config import load_config
    from medwss.data.manifest import load_manifest
    from medwss.errors import ConfigError
    from medwss.runinfo import write_run_record
    from medwss.scribble.config import ScribbleConfig
    from medwss.scribble.report import write_shift_report
    from medwss.scribble.shift import run_shift as shift

    settings = {}
    for item in args.setting:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--setting takes NAME=CONFIG.yaml, got '{item}'")
        cfg = load_config(path, ScribbleConfig)
        settings[name] = cfg if args.epochs is None else cfg.model_copy(update={"epochs": args.epochs})
    manifest = load_manifest(args.manifest)
    record = shift(manifest, settings, args.out, _sites(args.train_sites) or [], args.ensemble, not args.quiet)
    html = write_shift_report(manifest, record, args.out)
    write_run_record(
        args.out, "scribble shift", {"settings": record["settings"], "k": args.ensemble}, None, record["counts"]
    )
    print(f"report: {html}")
    return 0
