"""`medwss coin train-classifier|train|segment|baselines`: tumour masks from image-level labels (COIN).

1. ``train-classifier``: axial slices of the manifest's volumes (named CT window, crop around the
   ``--roi`` class, resize), labelled abnormal where the mask holds the ``--lesion`` class of the
   ``--labels`` spec (default kidney_tumour: kidney = 2, 3, tumour = 4); a small MONAI ResNet → classifier.pt.
2. ``train``: the counterfactual generator learns to make the frozen classifier say "normal" with
   the smallest, most realistic change → generator.pt, history.json.
3. ``segment``: ``|x − x_cf|`` scaled to [0, 1], thresholded (0.25) and cleaned → one mask per
   case on the source grid (NIfTI; ``--format slicer|dicom-seg`` too), PNG overlays, IoU/validity/realism
   when masks are known. ``-i DIR -o DIR`` takes a folder of volumes instead of a manifest.
4. ``baselines``: Grad-CAM, LayerCAM, ScoreCAM, RISE, occlusion under the same protocol.
Every setting is a key of the ``--config`` YAML and a flag (generated from the configs:
`ClassifierFile`, `CoinFile`, `SegmentConfig`, `BaselinesConfig`; flags given override the file).
The ``train-classifier`` YAML holds a ``slices:`` section (``labels``, ``lesion``, ``roi``,
``window``, ``size``, ``margin``: flags ``--labels`` ... ``--margin``) and both training configs a
``data:`` section (``sites``: train on these institutions only; ``train_split``: flags ``--sites``,
``--train-split``), so one shipped file runs a dataset: ``configs/coin_lgg_classifier.yaml`` and
``configs/coin_lgg.yaml`` run on the LGG brain MRI manifest. ``segment`` and ``baselines`` read
their mask settings (``threshold``, ``opening``, ``closing``, ``largest``, ``scale``, ``split``,
``sites``) from ``--config`` too. ``--sites`` restricts any command to some institutions.
Every command writes run.json beside its outputs. The two training commands run on the configured
``device`` (``auto``: the GPU when there is one) and checkpoint into ``--out`` (``classifier.ckpt``,
``generator.ckpt``): an interrupted run started again with the same settings resumes where it stopped
(a finished one with more ``--iterations`` continues); ``--restart`` starts afresh.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medwss.counterfactual.config import (
    BaselinesConfig,
    ClassifierFile,
    CoinFile,
    SegmentConfig,
)

if TYPE_CHECKING:
    from medwss.counterfactual.slices import SliceSpec


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _window(text: str) -> str | tuple[float, float] | None:
    """A CT window name, ``LOW,HIGH``, or ``auto`` (per-volume percentiles)."""
    if text.lower() in ("none", "auto"):
        return None
    if "," not in text:
        return text
    lo, hi = (float(v) for v in text.split(","))
    return (lo, hi)


def _labels(text: str) -> str | dict[str, list[int]]:
    """A label spec name, or ``class=values;class=values`` (e.g. ``kidney=2,3;tumour=4``)."""
    if "=" not in text:
        return text
    out: dict[str, list[int]] = {}
    for part in text.split(";"):
        if part.strip():
            name, _, values = part.partition("=")
            out[name.strip()] = list(_ints(values))
    return out


def _slice_spec(args: argparse.Namespace, base: SliceSpec | None = None) -> SliceSpec:
    """The `SliceSpec` of slicing values in `args` (``labels``, ``lesion``, ...; None: not given) over `base`."""
    from medwss.counterfactual.slices import SliceSpec

    base = base or SliceSpec()
    labels = _labels(args.labels) if getattr(args, "labels", None) is not None else base.labels
    lesion = getattr(args, "lesion", None) or base.lesion
    roi_flag = getattr(args, "roi", None)
    roi = base.roi if roi_flag is None else (None if roi_flag.lower() in ("", "none") else roi_flag)
    window: Any = getattr(args, "window", _UNSET)
    size, margin = getattr(args, "size", None), getattr(args, "margin", None)
    spec = SliceSpec(
        labels, lesion, roi, base.window if window is _UNSET else window,
        base.size if size is None else size, base.margin if margin is None else margin,
    )  # fmt: skip
    return _shorthands(spec, getattr(args, "tumour_labels", None), getattr(args, "roi_labels", None))


def _shorthands(
    spec: SliceSpec, tumour_labels: tuple[int, ...] | None, roi_labels: tuple[int, ...] | None
) -> SliceSpec:
    """``--tumour-labels`` / ``--roi-labels``: replace the mask values of the lesion / roi class (``''``: whole slices)."""
    from medwss.counterfactual.slices import SliceSpec

    if tumour_labels is None and roi_labels is None:
        return spec
    classes = spec.label_spec.as_dict()
    roi = spec.roi
    if tumour_labels is not None:
        classes[spec.lesion] = list(tumour_labels)
    if roi_labels is not None and not roi_labels:
        roi = None
    elif roi_labels is not None:
        roi = roi or "roi"
        classes[roi] = list(roi_labels)
    return SliceSpec(classes, spec.lesion, roi, spec.window, spec.size, spec.margin)


_UNSET = object()
"""Absent slicing window (None already means per-volume percentiles)."""


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags

    p = sub.add_parser("coin", help=command_help("coin"), description=__doc__)
    csub = p.add_subparsers(dest="coin_command", metavar="SUBCOMMAND", required=True)
    c = csub.add_parser("train-classifier", help="normal/abnormal slice classifier")
    c.add_argument("manifest", help="manifest CSV with image and mask columns")
    c.add_argument("--out", required=True, help="output folder (classifier.pt, run.json)")
    c.add_argument("--config", help="YAML (configs/coin_classifier.yaml); flags override it")
    c.add_argument("--tumour-labels", type=_ints, help="shorthand: mask values of the lesion class, e.g. 4 or 4,5")
    c.add_argument("--roi-labels", type=_ints, help="shorthand: mask values of the roi class ('' = whole slices)")
    c.add_argument("--restart", action="store_true", help="delete OUT/classifier.ckpt and train afresh (else resume)")
    c.add_argument("--quiet", action="store_true")
    add_config_flags(c, ClassifierFile, flatten={"slices": "", "data": ""}, converters={"slices.labels": _labels})
    c.set_defaults(func=run_train_classifier)
    t = csub.add_parser("train", help="train the counterfactual generator against a frozen classifier")
    t.add_argument("manifest")
    t.add_argument("--classifier", required=True, help="classifier.pt from train-classifier")
    t.add_argument("--out", required=True, help="output folder (generator.pt, history.json, run.json)")
    t.add_argument("--config", help="YAML (configs/coin.yaml); flags override it")
    t.add_argument("--restart", action="store_true", help="delete OUT/generator.ckpt and train afresh (else resume)")
    t.add_argument("--quiet", action="store_true")
    add_config_flags(t, CoinFile, flatten={"data": ""})
    t.set_defaults(func=run_train)
    s = csub.add_parser(
        "segment",
        help="COIN masks and overlays for every case of a manifest or of a folder (-i DIR -o DIR)",
        description="COIN masks on each source grid. Either MANIFEST --out OUT (masks in OUT/masks/) or, "
        "nnU-Net style, -i DIR -o DIR: every NIfTI file or DICOM series sub-folder of DIR is a case "
        "(whole axial slices: no organ mask to crop around); masks go straight into DIR_OUT.",
    )
    s.add_argument("manifest", nargs="?", help="manifest CSV (or use -i DIR)")
    s.add_argument("-i", "--input", help="folder of volumes instead of a manifest")
    s.add_argument("--classifier", required=True)
    s.add_argument("--generator", required=True, help="generator.pt from `medwss coin train`")
    s.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder")
    s.add_argument("--modality", help="modality of the -i cases (default: from the files)")
    s.add_argument("--config", help="YAML of the settings below; flags override it")
    s.add_argument("--quiet", action="store_true")
    add_config_flags(s, SegmentConfig, aliases={"formats": "--format"})
    s.set_defaults(func=run_segment)
    b = csub.add_parser("baselines", help="attribution baselines (Grad-CAM, LayerCAM, ScoreCAM, RISE, occlusion)")
    b.add_argument("manifest")
    b.add_argument("--classifier", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--config", help="YAML of the settings below; flags override it")
    b.add_argument("--quiet", action="store_true")
    add_config_flags(b, BaselinesConfig)
    b.set_defaults(func=run_baselines)


def _cases(
    manifest: str | None, split: str | None = None, sites: tuple[str, ...] | None = None, input_dir: str | None = None
) -> list:
    from medwss.data.manifest import load_manifest
    from medwss.errors import ConfigError, InvalidDataError

    if input_dir and manifest:
        raise ConfigError(f"give a manifest or -i/--input DIR, not both (got {manifest} and -i {input_dir})")
    if not manifest:
        raise ConfigError("give a manifest or -i/--input DIR (a folder of volumes)")
    cases = list(load_manifest(manifest))
    if split:
        cases = [c for c in cases if c.split == split]
        if not cases:
            raise InvalidDataError(f"no case in split {split!r}", manifest)
    if sites:
        cases = [c for c in cases if c.site in sites]
        if not cases:
            raise InvalidDataError(f"no case of the sites {', '.join(sites)}", manifest)
    return cases


def _failures(metrics: dict) -> None:
    for line in metrics.get("failed", []):
        print(f"skipped {line}")


def run_train_classifier(args: argparse.Namespace) -> int:
    from medwss.cli.options import config_from_args
    from medwss.counterfactual.workflow import classifier_step
    from medwss.runinfo import write_run_record

    cfg, spec, data = config_from_args(ClassifierFile, args, args.config).parts(args.config)
    spec = _shorthands(spec, args.tumour_labels, args.roi_labels)
    out = Path(args.out)
    split = data.train_split
    cases = _cases(args.manifest, None, data.sites)
    metrics = classifier_step(cases, spec, cfg, out, not args.quiet, split, args.restart)
    sites = sorted({c.site for c in cases})
    record = {**cfg.model_dump(), "spec": spec.as_dict(), "sites": sites, "train_split": split}
    write_run_record(out, "coin train-classifier", record, cfg.seed, metrics)
    _failures(metrics)
    auc = metrics.get("val_auc")
    print(
        f"classifier on {metrics['n_slices']} slices ({metrics['n_abnormal']} abnormal)"
        + (f", validation AUC {auc:.3f}" if auc is not None else "")
    )
    print(f"model: {out / 'classifier.pt'}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from medwss.cli.options import config_from_args
    from medwss.counterfactual.workflow import coin_step
    from medwss.runinfo import write_run_record

    cfg, data = config_from_args(CoinFile, args, args.config).parts()
    out = Path(args.out)
    split = data.train_split
    cases = _cases(args.manifest, None, data.sites)
    metrics = coin_step(cases, args.classifier, cfg, out, not args.quiet, split, args.restart)
    record = {**cfg.model_dump(), "classifier": str(args.classifier), "sites": sorted({c.site for c in cases})}
    write_run_record(out, "coin train", record | {"train_split": split}, cfg.seed, metrics)
    _failures(metrics)
    print(f"generator: {out / 'generator.pt'} (trained on {metrics['n_slices']} slices)")
    return 0


def run_segment(args: argparse.Namespace) -> int:
    from medwss.cli.batch import finish
    from medwss.cli.options import config_from_args
    from medwss.counterfactual.workflow import segment_step
    from medwss.io.folder import cases_from_input
    from medwss.jobs import Job
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    cfg = config_from_args(SegmentConfig, args, args.config)
    formats = tuple(cfg.formats)
    if args.input:
        _, cases, skipped = cases_from_input(args.manifest, args.input, args.modality)
    else:
        cases, skipped = _cases(args.manifest, cfg.split, cfg.sites), []
    job = Job(out / "failures.csv", fresh=True)
    for x in skipped:
        job.fail(Path(x["path"]).name, x["error"], "scan", x["path"])
    metrics = segment_step(
        cases, args.classifier, args.generator, cfg.settings(), out, not args.quiet,
        formats=formats, folder="" if args.input else "masks", overlap=cfg.overlap, job=job,
    )  # fmt: skip
    metrics["failed"] = [f"{x['path']}: {x['error']}" for x in skipped] + list(metrics.get("failed", []))
    config = {**cfg.model_dump(mode="json"), "classifier": str(args.classifier), "generator": str(args.generator)}
    config |= {"input": args.input}
    write_run_record(out, "coin segment", config, None, metrics)
    _failures(metrics)
    line = f"masks for {metrics['n_cases']} case(s) in {out if args.input else out / 'masks'}"
    if "iou" in metrics:
        line += f"; IoU {metrics['iou']:.3f} [{metrics['iou_lo']:.3f}, {metrics['iou_hi']:.3f}], validity {metrics['validity']:.2f}"
    print(line)
    return finish("coin segment", job.summary())


def run_baselines(args: argparse.Namespace) -> int:
    from medwss.cli.options import config_from_args
    from medwss.counterfactual.workflow import baselines_step
    from medwss.io.atomic import write_json
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    cfg = config_from_args(BaselinesConfig, args, args.config)
    tune = []
    if cfg.sweep_split:
        from medwss.data.manifest import load_manifest

        tune = [c for c in load_manifest(args.manifest) if c.split == cfg.sweep_split]
    cases = _cases(args.manifest, cfg.split, cfg.sites)
    res = baselines_step(cases, args.classifier, cfg.methods, cfg.settings(), out, not args.quiet, tune)
    write_json(out / "baselines.json", res, indent=1)
    write_run_record(out, "coin baselines", cfg.model_dump(mode="json"), None, res)
    _failures(res)
    for name, r in res["methods"].items():
        print(f"{name}: threshold {r['threshold']:.2f}" + (f", IoU {r['iou']:.3f}" if "iou" in r else ""))
    return 0
