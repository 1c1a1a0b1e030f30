"""`medwss pseudo box|cam|dhr|fuse|sweep|agmm|cpal|par|dupl|evaluate|predict`: pseudo-labels from cheap labels.

Input: a manifest of volumes (CT phantoms, real CT; 2D images work as one-slice volumes). Tags
(which classes a slice contains), boxes, scribbles and points are derived from the `mask` column
unless given (`--boxes` for a detector's CSV/JSON, the `scribble` column for scribbles). Output,
in `--out`: ``labels/<case>.nii.gz`` (int16 on the source grid, -1 = ignore), ``previews/<case>.png``,
``run.json`` and, where masks exist, ``metrics.csv``/``metrics.json`` (per-class Dice, mIoU,
coverage, minor-class recall).

Methods that train a network (``agmm``, ``dupl``, and the tag classifier of ``--cam-source tags``)
train on ``--device`` (default auto: the GPU when there is one), checkpoint into ``--out`` after
every epoch or step and resume from it when run again with the same settings (``checkpoint.pt``;
``cam_checkpoint.pt`` for DuPL's tag classifier), and save the network as the one model file
``model.pt`` (``cam_model.pt``), loadable with `medwss.train.load_model`. ``predict --model
model.pt -i DIR -o DIR`` applies an ``agmm``/``dupl`` network to a folder of volumes
(`medwss.pseudo.predict`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

_COMMON = ("labels", "downsample", "seed")
_TYPES: dict[str, Any] = {
    "downsample": int, "seed": int, "box_threshold": float, "ring": int, "cam_epochs": int, "cam_tau": float,
    "eps": float, "tau": float, "band": float, "iterations": int, "confidence": float, "contexts": int,
    "top_k": int, "alpha": float, "par_iter": int,
}  # fmt: skip
_FLAG_HELP = {
    "labels": "label spec of the masks (mask values -> classes): ct_phantom, totalseg, binary, ...",
    "downsample": "in-plane downsampling of the axial slices (1 = native)",
    "segmenter": "box, random_walker, chan_vese, otsu, sam, medsam",
    "checkpoint": "local SAM/MedSAM checkpoint (nothing is downloaded)",
    "ring": "ignore ring (pixels) around every mask boundary",
    "cam_source": "activation maps from points (default) or a tag classifier (tags)",
    "tau": "fusion threshold; omitted: chosen by a sweep on the val split",
    "prior": "DHR class prior: volume or uniform",
    "iterations": "training steps (agmm, dupl)",
    "device": "where networks train: auto (the GPU when there is one), cpu, cuda, cuda:1, ...",
    "confidence": "posterior below which the output abstains (-1)",
    "weak": "sparse labels derived from the masks when there is no scribble column: "
    "skeleton, point, block, box, circle, random_disk, centroid_disk",
}


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.pseudo.methods import PSEUDO_METHODS

    p = sub.add_parser("pseudo", help="pseudo-labels from tags, boxes, scribbles, points", description=__doc__)
    psub = p.add_subparsers(dest="pseudo_command", metavar="SUBCOMMAND", required=True)
    for name, method in PSEUDO_METHODS.items():  # every registered method is a subcommand
        s = psub.add_parser(name, help=method.help)
        s.add_argument("manifest", help="manifest CSV (image, and mask for tags/derived weak labels and metrics)")
        s.add_argument("--out", required=True, help="output folder")
        s.add_argument("--config", help="YAML config (configs/pseudo_*.yaml); flags override it")
        for flag in _flags(name):
            s.add_argument("--" + flag.replace("_", "-"), type=_TYPES.get(flag, str), help=_FLAG_HELP.get(flag))
        if name == "box":
            s.add_argument("--boxes", help="detector output (CSV/JSON); boxes from the masks if omitted")
        if name == "agmm":
            s.add_argument("--offline", action="store_true", help="GMM refiner on intensity/position, no training")
        s.add_argument("--quiet", action="store_true")
        s.set_defaults(func=run_method, method=name)
    e = psub.add_parser("evaluate", help="metrics of pseudo-label NIfTIs against the manifest's masks")
    e.add_argument("labels_dir", help="folder of <case_id>.nii.gz pseudo-labels")
    e.add_argument("manifest")
    e.add_argument("--out", required=True, help="output folder (metrics.csv, metrics.json, run.json)")
    e.add_argument("--config")
    e.add_argument("--labels", help="label spec of the manifest's masks (ct_phantom, totalseg, binary, ...)")
    e.add_argument("--downsample", type=int, help="in-plane downsampling used for the metrics")
    e.set_defaults(func=run_evaluate)
    pr = psub.add_parser(
        "predict",
        help="apply an agmm/dupl model.pt to a folder of volumes (-i DIR -o DIR)",
        description="Label maps from a network of `medwss pseudo agmm|dupl` (its model.pt) for every NIfTI/NRRD/MHA "
        "file or DICOM series sub-folder of DIR (`medwss.io.folder.cases_from_folder`), sliced as in training; "
        "<case_id>.nii.gz (int16, source grid) straight into -o, plus Slicer/DICOM SEG files with --format. "
        "Scribble segmenters predict with `medwss scribble predict`.",
    )
    pr.add_argument("--model", required=True, help="model.pt of `medwss pseudo agmm` or `dupl`")
    pr.add_argument(
        "-i", "--input", required=True, help="folder of volumes (NIfTI, NRRD, MHA, DICOM series sub-folders)"
    )
    pr.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder")
    pr.add_argument(
        "--format", action="append", choices=("nifti", "slicer", "dicom-seg"),
        help="outputs (repeatable): nifti label map (always), slicer colour table, dicom-seg (DICOM inputs)",
    )  # fmt: skip
    pr.add_argument("--modality", help="modality of the cases (CT, MR, ...; default: from the files)")
    pr.add_argument(
        "--confidence", type=float, default=0.0, help="top probability below which voxels are -1 (default 0)"
    )
    pr.add_argument("--device", default="auto", help="where the network runs: auto (default), cpu, cuda")
    pr.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=run_predict)


def _flags(method: str) -> tuple[str, ...]:
    """The config fields ``medwss pseudo <method>`` takes as flags (from the method's registration)."""
    from medwss.pseudo.methods import PSEUDO_METHODS

    if method not in PSEUDO_METHODS:
        return _COMMON
    entry = PSEUDO_METHODS.get(method)
    return tuple(dict.fromkeys(_COMMON + entry.flags + (("device",) if entry.trains else ())))


def resolve(args: argparse.Namespace):  # noqa: ANN201
    from medwss.config import merge_config
    from medwss.pseudo.config import PseudoConfig

    flags = _flags(getattr(args, "method", ""))
    return merge_config(PseudoConfig, args.config, {k: getattr(args, k, None) for k in flags})


def _compute(method: str, cases: list, cfg: Any, args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    from medwss.pseudo.methods import MethodOptions, run_method

    opts = MethodOptions(getattr(args, "boxes", None), getattr(args, "offline", False), not args.quiet, args.out)
    return run_method(method, cases, cfg, opts)


def run_method(args: argparse.Namespace) -> int:
    from medwss.cli.batch import finish, record_failures
    from medwss.data.manifest import load_manifest
    from medwss.io.atomic import write_text
    from medwss.pseudo.outputs import write_outputs
    from medwss.pseudo.workflow import load_cases, skipping_failed_cases
    from medwss.runinfo import write_run_record

    cfg = resolve(args)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    cases, failed = load_cases(manifest, cfg, progress=not args.quiet)
    for f in failed:
        print(f"skipped {f}")
    log = record_failures(Path(args.out) / "failures.csv", failed)
    if not cases:
        return finish(f"pseudo {args.method}", len(manifest.cases), len(failed), log.path)
    with skipping_failed_cases() as late:  # a case failing after loading is skipped too
        labels, extra = _compute(args.method, cases, cfg, args)
    metrics = write_outputs(cases, labels, args.out, cfg, failed=late)
    for f in late:
        print(f"skipped {f}")
    failed += late
    log = record_failures(Path(args.out) / "failures.csv", failed)
    if len(late) >= len(cases):
        return finish(f"pseudo {args.method}", len(manifest.cases), len(failed), log.path)
    if "sweep" in extra:
        write_text(Path(args.out) / "sweep.json", json.dumps(extra["sweep"], indent=2) + "\n")
    record = {
        "pooled": metrics["pooled"] if metrics else None,
        "failed": failed,
        **{k: v for k, v in extra.items() if k != "sweep"},
    }
    write_run_record(args.out, f"pseudo {args.method}", cfg.model_dump(), seed=cfg.seed, metrics=record)
    msg = f"pseudo {args.method}: {len(cases) - len(late)} case(s) -> {Path(args.out) / 'labels'}"
    if metrics:
        p = metrics["pooled"]
        msg += f"; Dice {p['mean_dice']:.3f}, coverage {p['coverage']:.3f}, minor recall {p['minor_recall']:.3f}"
    if "tau" in extra:
        msg += f"; tau {extra['tau']:.2f}"
    print(msg)
    return finish(f"pseudo {args.method}", len(manifest.cases), len(failed), log.path)


def run_evaluate(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.errors import InvalidDataError
    from medwss.pseudo.outputs import evaluate, metrics_csv, read_labels
    from medwss.pseudo.workflow import load_cases
    from medwss.runinfo import write_run_record

    cfg = resolve(args)
    cases, failed = load_cases(load_manifest(args.manifest), cfg)
    kept, labels, missing = read_labels(cases, args.labels_dir)
    failed += missing
    metrics = evaluate(kept, labels, cfg)
    if metrics is None:
        raise InvalidDataError("no case has both a pseudo-label file and a mask", args.labels_dir)
    from medwss.io.atomic import write_text

    write_text(Path(args.out) / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text(Path(args.out) / "metrics.csv", metrics_csv(metrics))
    write_run_record(
        args.out,
        "pseudo evaluate",
        cfg.model_dump(),
        seed=cfg.seed,
        metrics={"pooled": metrics["pooled"], "failed": failed},
    )
    p = metrics["pooled"]
    print(f"{len(kept)} case(s): Dice {p['mean_dice']:.3f}, mIoU {p['miou']:.3f}, coverage {p['coverage']:.3f}")
    from medwss.cli.batch import finish, record_failures

    log = record_failures(Path(args.out) / "failures.csv", failed)
    return finish("pseudo evaluate", len(kept) + len(failed), len(failed), log.path)


def run_predict(args: argparse.Namespace) -> int:
    from medwss.io.folder import cases_from_folder
    from medwss.pseudo.predict import load_pseudo_model, predict_volumes
    from medwss.runinfo import write_run_record

    load_pseudo_model(args.model)  # a wrong model file fails before the folder is read
    cases, skipped = cases_from_folder(args.input, args.modality)
    formats = tuple(args.format or ("nifti",))
    summary = predict_volumes(
        cases, args.model, args.out, formats, confidence=args.confidence, device=args.device,
        overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    summary["failed"] = [{"case_id": Path(s["path"]).name, "error": s["error"]} for s in skipped] + summary["failed"]
    config = {"model": str(args.model), "input": args.input, "formats": list(formats)}
    config |= {"confidence": args.confidence, "device": args.device}
    write_run_record(args.out, "pseudo predict", config, None, summary)
    print(f"label maps for {summary['done']} case(s) in {args.out} ({summary['skipped']} existing kept)")
    for n in summary["notes"]:
        print(f"{n['case_id']}: {n['note']}")
    for f in summary["failed"]:
        print(f"skipped {f['case_id']}: {f['error']}")
    from medwss.cli.batch import finish, record_failures

    log = Path(args.out) / "failures.csv"
    record_failures(log, summary["failed"])
    return finish(
        "pseudo predict", summary["done"] + summary["skipped"] + len(summary["failed"]), len(summary["failed"]), log
    )
