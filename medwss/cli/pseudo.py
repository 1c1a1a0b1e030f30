"""`medwss pseudo box|cam|dhr|fuse|sweep|agmm|cpal|par|dupl|evaluate|predict`: pseudo-labels from cheap labels.

Input: a manifest of volumes (CT phantoms, real CT) or of 2D frames (PNG/JPEG, RGB or grey, e.g.
colonoscopy: `medwss.pseudo.frames`; box segmenters get the RGB frame). Tags (which classes a slice
contains), boxes, scribbles and points are derived from the `mask` column unless given (`--boxes`
for a detector's CSV/JSON, the `scribble` column for scribbles). Output, in `--out`:
``labels/<case>.nii.gz`` (int16 on the source grid, -1 = ignore; a frame's: ``labels/<case>.png``,
uint8 on its own grid, 255 = ignore), ``previews/<case>.png``, ``run.json``, ``failures.csv`` (cases
skipped) and, where masks exist, ``metrics.csv``/``metrics.json`` (per-class Dice, mIoU, coverage,
minor-class recall).

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medwss.pseudo.config import PseudoEvaluateConfig

if TYPE_CHECKING:
    from medwss.pseudo.config import PseudoConfig


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.pseudo.methods import PSEUDO_METHODS

    p = sub.add_parser("pseudo", help=command_help("pseudo"), description=__doc__)
    psub = p.add_subparsers(dest="pseudo_command", metavar="SUBCOMMAND", required=True)
    for name, method in PSEUDO_METHODS.items():  # every registered method is a subcommand
        s = psub.add_parser(name, help=method.help)
        s.add_argument("manifest", help="manifest CSV (image, and mask for tags/derived weak labels and metrics)")
        s.add_argument("--out", required=True, help="output folder")
        s.add_argument("--config", help="YAML config (configs/pseudo_*.yaml); flags override it")
        if name == "box":
            s.add_argument(
                "--boxes", help="detector output (CSV/JSON; a frame's in its pixels); boxes from the masks if omitted"
            )
        if name == "agmm":
            s.add_argument("--offline", action="store_true", help="GMM refiner on intensity/position, no training")
        s.add_argument("--quiet", action="store_true")
        add_config_flags(
            s,
            method.config,
            title=f"{name} settings ({method.config.__name__}; each is also a key of the --config YAML)",
        )
        s.set_defaults(func=run_method, method=name)
    e = psub.add_parser("evaluate", help="metrics of pseudo-label files against the manifest's masks")
    e.add_argument("labels_dir", help="folder of <case_id>.nii.gz pseudo-labels (a frame's: <case_id>.png)")
    e.add_argument("manifest")
    e.add_argument("--out", required=True, help="output folder (metrics.csv, metrics.json, run.json)")
    e.add_argument("--config", help="YAML config (a method's configs/pseudo_*.yaml: its method keys are not read)")
    add_config_flags(
        e, PseudoEvaluateConfig, exclude=("seed", "device", "amp"), title="slicing settings (keys of --config)"
    )
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


def resolve(args: argparse.Namespace) -> PseudoConfig:
    """The config of the (sub)command: its class's defaults < the ``--config`` YAML < the flags given.

    A method reads its registry entry's config class (a YAML key it does not read is an error naming
    the key); ``evaluate`` reads `PseudoEvaluateConfig`.
    """
    from medwss.cli.options import config_from_args
    from medwss.pseudo.methods import PSEUDO_METHODS

    method = getattr(args, "method", None)
    model = PSEUDO_METHODS.get(method).config if method else PseudoEvaluateConfig
    return config_from_args(model, args, args.config)


def _compute(method: str, cases: list, cfg: Any, args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    from medwss.pseudo.methods import MethodOptions, run_method

    opts = MethodOptions(getattr(args, "boxes", None), getattr(args, "offline", False), not args.quiet, args.out)
    return run_method(method, cases, cfg, opts)


def run_method(args: argparse.Namespace) -> int:
    from medwss.cli.batch import finish
    from medwss.data.manifest import load_manifest
    from medwss.io.atomic import write_json
    from medwss.jobs import Job
    from medwss.pseudo.outputs import write_outputs
    from medwss.pseudo.workflow import load_cases
    from medwss.runinfo import write_run_record

    cfg = resolve(args)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    job = Job(Path(args.out) / "failures.csv", fresh=True)
    cases, _ = load_cases(manifest, cfg, progress=not args.quiet, job=job)
    for f in job.summary().failures:
        print(f"skipped {f['case_id']}: {f['message']}")
    if not cases:
        return finish(f"pseudo {args.method}", job.summary())
    n_loaded = len(job.failures)
    with job.active():  # a case failing in a per-case step or while written is skipped too
        labels, extra = _compute(args.method, cases, cfg, args)
        metrics = write_outputs(cases, labels, args.out, cfg)
    late = list(job.failures.values())[n_loaded:]
    for f in late:
        print(f"skipped {f['case_id']}: {f['message']}")
    failed = [f"{f['case_id']}: {f['message']}" for f in job.failures.values()]
    if len(late) >= len(cases):
        return finish(f"pseudo {args.method}", job.summary())
    if "sweep" in extra:
        write_json(Path(args.out) / "sweep.json", extra["sweep"])
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
    return finish(f"pseudo {args.method}", job.summary())


def run_evaluate(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.errors import InvalidDataError
    from medwss.jobs import Job
    from medwss.pseudo.outputs import evaluate, metrics_csv, read_labels
    from medwss.pseudo.workflow import load_cases
    from medwss.runinfo import write_run_record

    cfg = resolve(args)
    job = Job(Path(args.out) / "failures.csv", fresh=True)
    cases, failed = load_cases(load_manifest(args.manifest), cfg, job=job)
    kept, labels, missing = read_labels(cases, args.labels_dir)
    for m in missing:
        case_id, _, message = m.partition(": ")
        job.fail(case_id, message, "read labels", args.labels_dir)
    failed += missing
    metrics = evaluate(kept, labels, cfg)
    if metrics is None:
        raise InvalidDataError("no case has both a pseudo-label file and a mask", args.labels_dir)
    from medwss.io.atomic import write_json, write_text

    write_json(Path(args.out) / "metrics.json", metrics)
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
    from medwss.cli.batch import finish

    return finish("pseudo evaluate", job.summary())


def run_predict(args: argparse.Namespace) -> int:
    from medwss.io.folder import cases_from_folder
    from medwss.jobs import Job
    from medwss.pseudo.predict import load_pseudo_model, predict_volumes
    from medwss.runinfo import write_run_record

    load_pseudo_model(args.model)  # a wrong model file fails before the folder is read
    cases, skipped = cases_from_folder(args.input, args.modality)
    job = Job(Path(args.out) / "failures.csv", fresh=True)
    for s in skipped:
        job.fail(Path(s["path"]).name, s["error"], "scan", s["path"])
    formats = tuple(args.format or ("nifti",))
    summary = predict_volumes(
        cases, args.model, args.out, formats, confidence=args.confidence, device=args.device,
        overwrite=args.overwrite, progress=not args.quiet, job=job,
    )  # fmt: skip
    summary["failed"] = job.summary().failures
    config = {"model": str(args.model), "input": args.input, "formats": list(formats)}
    config |= {"confidence": args.confidence, "device": args.device}
    write_run_record(args.out, "pseudo predict", config, None, summary)
    print(f"label maps for {summary['done']} case(s) in {args.out} ({summary['skipped']} existing kept)")
    for n in summary["notes"]:
        print(f"{n['case_id']}: {n['note']}")
    for f in summary["failed"]:
        print(f"skipped {f['case_id']}: {f['message']}")
    from medwss.cli.batch import finish

    return finish("pseudo predict", job.summary())
