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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

    from medwss.scribble.config import ScribbleConfig


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


def _pairs(items: list[str] | None, flag: str, what: str) -> dict[str, str]:
    """``NAME=VALUE`` items of a repeatable flag, as ``{what.NAME: VALUE}`` keys merged into the YAML's section."""
    from medwss.errors import ConfigError

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} takes NAME=VALUE, got '{item}'")
        out[f"{what}.{name.strip()}"] = value
    return out


def _configured(
    run: Callable[[argparse.Namespace], int], model: type[BaseModel]
) -> Callable[[argparse.Namespace], int]:
    """`run` with the config of `model` (defaults < ``--config`` YAML < flags) in ``args.settings_config`` and
    each of its keys set onto `args`; ``--option KEY=VALUE`` / ``--setting NAME=CONFIG.yaml`` add keys to the
    YAML's ``options`` / ``settings``."""

    def resolved(args: argparse.Namespace) -> int:
        from medwss.cli.options import config_from_args

        extra: dict[str, object] = {}
        if getattr(args, "option", None):
            extra |= {f"options.{k}": v for k, v in _options(args.option).items()}
        if getattr(args, "setting", None):
            extra |= _pairs(args.setting, "--setting", "settings")
        cfg = config_from_args(model, args, getattr(args, "config", None), extra=extra)
        for key in type(cfg).model_fields:
            setattr(args, key, getattr(cfg, key))
        args.settings_config = cfg
        return run(args)

    resolved.__name__ = run.__name__
    return resolved


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.scribble.config import ScribbleMakeConfig, ScribblePredictConfig, ScribbleTrainJob, ShiftConfig

    p = sub.add_parser(
        "scribble",
        help=command_help("scribble"),
        description=__doc__,
    )
    ssub = p.add_subparsers(dest="scribble_command", metavar="SUBCOMMAND", required=True)
    m = ssub.add_parser("make", help="simulate weak labels from the masks of a manifest")
    m.add_argument("manifest")
    m.add_argument("--out", required=True, help="folder for scribbles/ and manifest.csv (scribble column set)")
    m.add_argument("--config", help="YAML config of these settings; flags override it")
    m.add_argument(
        "--option", action="append", metavar="KEY=VALUE",
        help="generator option (repeatable), e.g. arc=0.5 or radius=3, added to the YAML's options",
    )  # fmt: skip
    add_config_flags(m, ScribbleMakeConfig, exclude=("options",))
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=_configured(run_make, ScribbleMakeConfig))
    t = ssub.add_parser("train", help="train a segmenter (or an ensemble) on the train split")
    t.add_argument("manifest")
    t.add_argument("--out", required=True, help="output folder (model.pt, history.json, run.json)")
    t.add_argument("--config", help="YAML config (configs/scribble_*.yaml); flags override it")
    add_config_flags(t, ScribbleTrainJob)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_configured(run_train, ScribbleTrainJob))
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
    pr.add_argument("--config", help="YAML config of these settings; flags override it")
    add_config_flags(pr, ScribblePredictConfig, rename={"formats": "format"}, aliases={"formats": "--formats"})
    pr.add_argument("--overwrite", action="store_true", help="redo existing predictions")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_configured(run_predict, ScribblePredictConfig))
    s = ssub.add_parser("shift", help="train on some sites; compare in/out of domain, single vs ensemble")
    s.add_argument("manifest")
    s.add_argument("--out", required=True, help="output folder (report.html, report.md, report.json, cases.csv)")
    s.add_argument("--config", help="YAML config of these settings; flags override it")
    s.add_argument(
        "--setting", action="append", metavar="NAME=CONFIG.yaml",
        help="a named config (repeat), added to the YAML's settings",
    )  # fmt: skip
    add_config_flags(s, ShiftConfig, exclude=("settings",))
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_configured(run_shift, ShiftConfig))


def resolve(args: argparse.Namespace) -> ScribbleConfig:
    """The training config of ``scribble train``: defaults < the ``--config`` YAML < the flags given."""
    from medwss.scribble.config import ScribbleTrainJob

    job = getattr(args, "settings_config", None)
    if not isinstance(job, ScribbleTrainJob):
        from medwss.cli.options import config_from_args

        job = config_from_args(ScribbleTrainJob, args, getattr(args, "config", None))
    return job.run_config()


def _sites(value: str | Sequence[str] | None) -> list[str] | None:
    """Site names from a list or a comma-separated string (None or empty: every site)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [s.strip() for s in items if s.strip()] or None


def run_make(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.runinfo import write_run_record
    from medwss.scribble.annotate import write_weak_labels

    opts = dict(args.options)
    summary = write_weak_labels(
        load_manifest(args.manifest), args.out, args.kind, args.seed, args.background, opts, not args.quiet
    )
    config = {"kind": args.kind, "background": args.background, "options": opts}
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
    from medwss.jobs import JobSummary

    failed = int(metrics.get("failed", 0))  # cases skipped (one member's count for an ensemble: same cases)
    log = Path(metrics["failures"]) if metrics.get("failures") else Path(args.out) / "failures.csv"
    return finish("scribble train", JobSummary(max(len(train) + len(val) - failed, 0), 0, failed, log))


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
    formats = tuple(args.formats or ("nifti",))
    from medwss.jobs import Job

    job = Job(Path(args.out) / "failures.csv", fresh=True)
    for s in skipped:
        job.fail(Path(s["path"]).name, s["error"], "scan", s["path"])
    summary = predict_cases(
        manifest, cases, models, args.out, args.overwrite, not args.quiet, formats,
        overlap=args.overlap, device=args.device, subdir="" if args.input else "predictions", job=job,
        largest_component=args.largest_component,
    )  # fmt: skip
    summary["failed"] = job.summary().failures
    config = {"models": [str(m) for m in models], "split": args.split, "formats": list(formats)}
    config |= {"input": args.input, "overlap": args.overlap, "device": args.device}
    config["largest_component"] = args.largest_component
    write_run_record(args.out, "scribble predict", config, None, summary)
    where = Path(args.out) if args.input else Path(args.out) / "predictions"
    print(f"predictions for {summary['done']} case(s) in {where} ({summary['skipped']} existing kept)")
    for f in summary["failed"]:
        print(f"skipped {f['case_id']}: {f['message']}")
    from medwss.cli.batch import finish

    return finish("scribble predict", job.summary())


def run_shift(args: argparse.Namespace) -> int:
    from medwss.config import load_config
    from medwss.data.manifest import load_manifest
    from medwss.errors import ConfigError
    from medwss.runinfo import write_run_record
    from medwss.scribble.config import ScribbleConfig
    from medwss.scribble.report import write_shift_report
    from medwss.scribble.shift import run_shift as shift

    settings = {}
    if not args.settings:
        raise ConfigError("give at least one --setting NAME=CONFIG.yaml (or settings: in --config)")
    for name, path in args.settings.items():
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
