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
The ``--config`` YAML of ``train-classifier`` may hold a ``slices:`` section (``labels``, ``lesion``,
``roi``, ``window``, ``size``, ``margin``: the slicing flags, which override it) and both training
configs a ``data:`` section (``sites``: train on these institutions only; ``train_split``), so one
shipped file runs a dataset: ``configs/coin_lgg_classifier.yaml`` and ``configs/coin_lgg.yaml``
run on the LGG brain MRI manifest. ``--sites`` restricts any command to some institutions.
Every command writes run.json beside its outputs. The two training commands run on the configured
``device`` (``auto``: the GPU when there is one) and checkpoint into ``--out`` (``classifier.ckpt``,
``generator.ckpt``): an interrupted run started again with the same settings resumes where it stopped
(a finished one with more ``--iterations`` continues); ``--restart`` starts afresh.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, Field

from medwss.config import StrictConfig

if TYPE_CHECKING:
    from medwss.counterfactual.classifier import ClassifierConfig
    from medwss.counterfactual.slices import SliceSpec
    from medwss.counterfactual.train import CoinConfig

_T = TypeVar("_T", bound=BaseModel)

_CLF_FLAGS = ("epochs", "batch_size", "lr", "seed")
_COIN_FLAGS = (
    "iterations",
    "batch_size",
    "lr",
    "lambda_adv",
    "lambda_kl",
    "lambda_rec",
    "lambda_cyc",
    "lambda_tv",
    "d_steps",
    "g_steps",
    "seed",
    "eval_every",
)


class DataSettings(StrictConfig):
    """The ``data:`` section of a COIN training config: which cases to train on."""

    sites: tuple[str, ...] | None = None
    """Institutions (manifest ``site``) to use; None: all."""
    train_split: str = "train"
    """Split to train on (``all``: every case)."""


class SliceSettings(StrictConfig):
    """The ``slices:`` section of a classifier config: the fields of `SliceSpec` (flags override them)."""

    labels: str | dict[str, list[int]] = "kidney_tumour"
    lesion: str = "tumour"
    roi: str | None = "kidney"
    """Class to crop around; ``none`` or null: whole slices."""
    window: str | tuple[float, float] | None = "soft_tissue"
    """A CT window name, ``[low, high]``, or ``auto``/null (per-volume 1st–99th percentiles)."""
    size: int = Field(64, ge=8)
    margin: int = Field(6, ge=0)


def _sections(path: str | Path | None, names: tuple[str, ...]) -> tuple[dict, dict[str, dict]]:
    """The YAML at `path` split into its top-level keys and the mapping sections `names` (empty without a path)."""
    from medwss.config import read_yaml
    from medwss.errors import ConfigError

    if not path:
        return {}, {n: {} for n in names}
    data = read_yaml(Path(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping of keys to values", Path(path))
    data = dict(data)
    out = {}
    for n in names:
        sec = data.pop(n, None) or {}
        if not isinstance(sec, dict):
            raise ConfigError(f"{n}: must be a mapping of keys to values", Path(path))
        out[n] = sec
    return data, out


def _validate(model: type[_T], values: dict, path: str | Path | None, prefix: str = "") -> _T:
    from pydantic import ValidationError

    from medwss.errors import ConfigError

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(str(x) for x in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(problems, Path(path) if path else None) from exc


def read_classifier_file(
    path: str | Path | None, flags: dict[str, object] | None = None
) -> tuple[ClassifierConfig, SliceSpec, DataSettings]:
    """Classifier settings, slicing spec and data selection of a classifier YAML (`flags` not None on top).

    Raises:
        ConfigError: Naming the file and every invalid key.
    """
    from medwss.counterfactual.classifier import ClassifierConfig
    from medwss.counterfactual.slices import SliceSpec
    from medwss.errors import ConfigError, InvalidDataError

    top, sec = _sections(path, ("slices", "data"))
    cfg = _validate(ClassifierConfig, {**top, **{k: v for k, v in (flags or {}).items() if v is not None}}, path)
    sl = _validate(SliceSettings, sec["slices"], path, "slices.")
    window = sl.window
    if isinstance(window, str) and window.lower() in ("auto", "none"):
        window = None
    roi = None if sl.roi is None or sl.roi.lower() in ("", "none") else sl.roi
    try:
        spec = SliceSpec(sl.labels, sl.lesion, roi, window, sl.size, sl.margin)
    except InvalidDataError as exc:
        raise ConfigError(f"slices: {exc}", Path(path) if path else None) from exc
    return cfg, spec, _validate(DataSettings, sec["data"], path, "data.")


def read_coin_file(path: str | Path | None, flags: dict[str, object] | None = None) -> tuple[CoinConfig, DataSettings]:
    """COIN settings and data selection of a COIN YAML (`flags` not None on top).

    Raises:
        ConfigError: Naming the file and every invalid key.
    """
    from medwss.counterfactual.train import CoinConfig

    top, sec = _sections(path, ("data",))
    cfg = _validate(CoinConfig, {**top, **{k: v for k, v in (flags or {}).items() if v is not None}}, path)
    return cfg, _validate(DataSettings, sec["data"], path, "data.")


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


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


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
    """The `SliceSpec` of the flags over `base` (the config's ``slices:``; default `SliceSpec()`).

    ``--tumour-labels`` / ``--roi-labels`` replace the values of the two classes.
    """
    from medwss.counterfactual.slices import SliceSpec
    from medwss.data.labels import label_spec

    base = base or SliceSpec()
    labels = _labels(args.labels) if args.labels is not None else base.labels
    lesion = args.lesion if args.lesion is not None else base.lesion
    roi = base.roi if args.roi is None else (None if args.roi.lower() in ("", "none") else args.roi)
    window = base.window if args.window is _UNSET else args.window
    size = args.size if args.size is not None else base.size
    margin = args.margin if args.margin is not None else base.margin
    if args.tumour_labels is not None or args.roi_labels is not None:
        classes = label_spec(labels).as_dict()
        if args.tumour_labels is not None:
            classes[lesion] = list(args.tumour_labels)
        if args.roi_labels is not None and not args.roi_labels:
            roi = None
        elif args.roi_labels is not None:
            roi = roi or "roi"
            classes[roi] = list(args.roi_labels)
        labels = classes
    return SliceSpec(labels, lesion, roi, window, size, margin)


_UNSET = object()
"""Default of ``--window`` (None already means per-volume percentiles)."""


def _mask_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=0.25, help="map threshold (default 0.25)")
    p.add_argument("--opening", type=int, default=0, help="radius of a binary opening (pixels, 0 = none)")
    p.add_argument("--closing", type=int, default=0, help="radius of a binary closing (pixels, 0 = none)")
    p.add_argument("--largest", action="store_true", help="keep the largest connected component per slice")
    p.add_argument("--scale", choices=("max", "range"), default="max", help="difference scaling: per-slice max or /2")
    p.add_argument("--split", help="only the cases of this split (train, val, test)")
    p.add_argument("--sites", type=_names, help="only the cases of these institutions, e.g. CS")
    p.add_argument("--quiet", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coin", help="COIN counterfactual inpainting and attribution baselines", description=__doc__)
    csub = p.add_subparsers(dest="coin_command", metavar="SUBCOMMAND", required=True)
    c = csub.add_parser("train-classifier", help="normal/abnormal slice classifier")
    c.add_argument("manifest", help="manifest CSV with image and mask columns")
    c.add_argument("--out", required=True, help="output folder (classifier.pt, run.json)")
    c.add_argument("--config", help="YAML (configs/coin_classifier.yaml); flags override it")
    c.add_argument(
        "--labels",
        help="label spec of the masks: a name (kidney_tumour, ct_phantom, lesion, ...) or 'kidney=2,3;tumour=4' "
        "(default: the config's slices.labels, else kidney_tumour)",
    )
    c.add_argument("--lesion", help="class of the label spec that makes a slice abnormal (default tumour)")
    c.add_argument("--roi", help="class to crop around ('none' = whole slices; default kidney)")
    c.add_argument("--tumour-labels", type=_ints, help="shorthand: mask values of the lesion class, e.g. 4 or 4,5")
    c.add_argument("--roi-labels", type=_ints, help="shorthand: mask values of the roi class ('' = whole slices)")
    c.add_argument(
        "--window",
        type=_window,
        default=_UNSET,
        help="CT window: a name (soft_tissue, abdomen, wide, ...), --window=LOW,HIGH, or auto (default soft_tissue)",
    )
    c.add_argument("--size", type=int, help="slice side in pixels (default 64)")
    c.add_argument("--margin", type=int, help="voxels around the organ box (default 6)")
    for flag, typ in (("--epochs", int), ("--batch-size", int), ("--lr", float), ("--seed", int)):
        c.add_argument(flag, type=typ)
    c.add_argument("--train-split", help="split to train on ('all' = every case; default: the config's, else train)")
    c.add_argument("--sites", type=_names, help="only cases of these institutions, e.g. DU,HT (default: the config's)")
    c.add_argument("--restart", action="store_true", help="delete OUT/classifier.ckpt and train afresh (else resume)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=run_train_classifier)
    t = csub.add_parser("train", help="train the counterfactual generator against a frozen classifier")
    t.add_argument("manifest")
    t.add_argument("--classifier", required=True, help="classifier.pt from train-classifier")
    t.add_argument("--out", required=True, help="output folder (generator.pt, history.json, run.json)")
    t.add_argument("--config", help="YAML (configs/coin.yaml); flags override it")
    for flag, typ in (
        ("--iterations", int),
        ("--batch-size", int),
        ("--lr", float),
        ("--lambda-adv", float),
        ("--lambda-kl", float),
        ("--lambda-rec", float),
        ("--lambda-cyc", float),
        ("--lambda-tv", float),
        ("--d-steps", int),
        ("--g-steps", int),
        ("--seed", int),
    ):
        t.add_argument(flag, type=typ)
    t.add_argument("--eval-every", type=int, help="iterations per history row and checkpoint (default 25)")
    t.add_argument("--train-split", help="split to train on ('all' = every case; default: the config's, else train)")
    t.add_argument("--sites", type=_names, help="only cases of these institutions, e.g. DU,HT (default: the config's)")
    t.add_argument("--restart", action="store_true", help="delete OUT/generator.ckpt and train afresh (else resume)")
    t.add_argument("--quiet", action="store_true")
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
    s.add_argument(
        "--format",
        action="append",
        choices=("nifti", "dicom-seg", "slicer"),
        help="mask outputs (repeatable; default nifti): nifti, slicer label map + colour table, dicom-seg",
    )
    s.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default 0.25)")
    _mask_flags(s)
    s.set_defaults(func=run_segment)
    b = csub.add_parser("baselines", help="attribution baselines (Grad-CAM, LayerCAM, ScoreCAM, RISE, occlusion)")
    b.add_argument("manifest")
    b.add_argument("--classifier", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--methods", default="gradcam,layercam,scorecam,rise,occlusion", help="comma-separated names")
    b.add_argument("--sweep-split", help="choose each method's threshold on the cases of this split (e.g. val)")
    _mask_flags(b)
    b.set_defaults(func=run_baselines)


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from medwss.counterfactual.segment import MaskSettings

    return MaskSettings(
        threshold=args.threshold, opening=args.opening, closing=args.closing, largest=args.largest, scale=args.scale
    )


def _cases(args: argparse.Namespace, sites: tuple[str, ...] | None = None) -> list:
    from medwss.data.manifest import load_manifest
    from medwss.errors import ConfigError, InvalidDataError

    if getattr(args, "input", None) and args.manifest:
        raise ConfigError(f"give a manifest or -i/--input DIR, not both (got {args.manifest} and -i {args.input})")
    if not args.manifest:
        raise ConfigError("give a manifest or -i/--input DIR (a folder of volumes)")
    cases = list(load_manifest(args.manifest))
    if getattr(args, "split", None):
        cases = [c for c in cases if c.split == args.split]
        if not cases:
            raise InvalidDataError(f"no case in split {args.split!r}", args.manifest)
    sites = getattr(args, "sites", None) or sites
    if sites:
        cases = [c for c in cases if c.site in sites]
        if not cases:
            raise InvalidDataError(f"no case of the sites {', '.join(sites)}", args.manifest)
    return cases


def _failures(metrics: dict) -> None:
    for line in metrics.get("failed", []):
        print(f"skipped {line}")


def run_train_classifier(args: argparse.Namespace) -> int:
    from medwss.counterfactual.workflow import classifier_step
    from medwss.runinfo import write_run_record

    cfg, base, data = read_classifier_file(args.config, {k: getattr(args, k) for k in _CLF_FLAGS})
    spec = _slice_spec(args, base)
    out = Path(args.out)
    split = args.train_split or data.train_split
    cases = _cases(args, data.sites)
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
    from medwss.counterfactual.workflow import coin_step
    from medwss.runinfo import write_run_record

    cfg, data = read_coin_file(args.config, {k: getattr(args, k) for k in _COIN_FLAGS})
    out = Path(args.out)
    split = args.train_split or data.train_split
    cases = _cases(args, data.sites)
    metrics = coin_step(cases, args.classifier, cfg, out, not args.quiet, split, args.restart)
    record = {**cfg.model_dump(), "classifier": str(args.classifier), "sites": sorted({c.site for c in cases})}
    write_run_record(out, "coin train", record | {"train_split": split}, cfg.seed, metrics)
    _failures(metrics)
    print(f"generator: {out / 'generator.pt'} (trained on {metrics['n_slices']} slices)")
    return 0


def run_segment(args: argparse.Namespace) -> int:
    from medwss.counterfactual.workflow import segment_step
    from medwss.io.folder import cases_from_input
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    s = _settings(args)
    formats = tuple(args.format or ("nifti",))
    if args.input:
        _, cases, skipped = cases_from_input(args.manifest, args.input, args.modality)
    else:
        cases, skipped = _cases(args), []
    metrics = segment_step(
        cases, args.classifier, args.generator, s, out, not args.quiet,
        formats=formats, folder="" if args.input else "masks", overlap=args.overlap,
    )  # fmt: skip
    metrics["failed"] = [f"{x['path']}: {x['error']}" for x in skipped] + list(metrics.get("failed", []))
    config = {**s.__dict__, "classifier": str(args.classifier), "generator": str(args.generator)}
    config |= {"input": args.input, "formats": list(formats), "overlap": args.overlap}
    write_run_record(out, "coin segment", config, None, metrics)
    _failures(metrics)
    line = f"masks for {metrics['n_cases']} case(s) in {out if args.input else out / 'masks'}"
    if "iou" in metrics:
        line += f"; IoU {metrics['iou']:.3f} [{metrics['iou_lo']:.3f}, {metrics['iou_hi']:.3f}], validity {metrics['validity']:.2f}"
    print(line)
    from medwss.cli.batch import finish, record_failures

    failed = list(metrics.get("failed", []))
    log = record_failures(out / "failures.csv", failed).path
    return finish("coin segment", metrics["n_cases"] + len(failed), len(failed), log)


def run_baselines(args: argparse.Namespace) -> int:
    from medwss.counterfactual.workflow import baselines_step
    from medwss.io.atomic import write_text
    from medwss.runinfo import write_run_record

    out = Path(args.out)
    s = _settings(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    tune = []
    if args.sweep_split:
        from medwss.data.manifest import load_manifest

        tune = [c for c in load_manifest(args.manifest) if c.split == args.sweep_split]
    res = baselines_step(_cases(args), args.classifier, methods, s, out, not args.quiet, tune)
    write_text(out / "baselines.json", json.dumps(res, indent=1) + "\n")
    write_run_record(
        out, "coin baselines", {**s.__dict__, "methods": methods, "sweep_split": args.sweep_split}, None, res
    )
    _failures(res)
    for name, r in res["methods"].items():
        print(f"{name}: threshold {r['threshold']:.2f}" + (f", IoU {r['iou']:.3f}" if "iou" in r else ""))
    return 0
