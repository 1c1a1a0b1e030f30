"""`medwss export nnunet` and `medwss manifest from-nnunet`: round trip with nnU-Net raw datasets.

`export nnunet SOURCE --out nnUNet_raw --dataset-id N --name NAME` writes
``nnUNet_raw/DatasetNNN_NAME/`` (imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz, dataset.json
with the ignore label for sparse labels) from a manifest's ``scribble`` or ``mask`` column, or from
the ingested slices of an active-learning state folder (SOURCE = the state folder, ``--labels
al-state``). `manifest from-nnunet DIR --out manifest.csv` reads an nnU-Net v2, v1 or MSD raw
dataset (dataset.json) back as a manifest, the ignore label as -1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help

    p = sub.add_parser("export", help=command_help("export"), description=__doc__)
    esub = p.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    n = esub.add_parser("nnunet", help="write an nnU-Net v2 raw dataset (DatasetNNN_NAME)")
    n.add_argument("source", help="manifest CSV, or an active-learning state folder (with --labels al-state)")
    n.add_argument("--out", required=True, help="nnU-Net raw folder (nnUNet_raw) to create DatasetNNN_NAME in")
    n.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1..999")
    n.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
    n.add_argument(
        "--labels",
        choices=("scribble", "mask", "al-state"),
        help="label source (default: al-state for a state folder, else scribble)",
    )
    n.add_argument("--classes", help="label spec name mapping the files' values to classes (e.g. acdc)")
    n.add_argument("--num-classes", type=int, help="classes including background (default: from the labels)")
    n.add_argument("--splits", help="comma-separated splits to export (default: all; test goes to imagesTs)")
    n.add_argument("--quiet", action="store_true")
    n.set_defaults(func=run_export)


def register_import(msub: argparse._SubParsersAction) -> None:
    """The ``from-nnunet`` subcommand of ``medwss manifest``."""
    f = msub.add_parser("from-nnunet", help="build a manifest from an nnU-Net (v1/v2) or MSD raw dataset folder")
    f.add_argument("root", help="dataset folder holding dataset.json")
    f.add_argument("--out", required=True, help="output manifest CSV (converted files go to <stem>_files/)")
    f.add_argument("--label-column", choices=("auto", "mask", "scribble"), default="auto",
                   help="auto: scribble when dataset.json declares an ignore label, else mask")  # fmt: skip
    f.add_argument("--split-channels", action="store_true", help="split 4D multi-channel images into one file each")
    f.add_argument("--modality", help="modality of every case (default: guessed from the channel names)")
    f.add_argument("--site", help="site of every case (default: the dataset's name)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=run_import)


def _report(skipped: list[str], done: int, what: str, log: Path | None = None) -> int:
    """One line per skipped case, then the batch summary line and exit code (`medwss.cli.batch.finish`)."""
    from medwss.cli.batch import finish
    from medwss.jobs import JobSummary

    for msg in skipped:
        print(f"medwss: skipped {msg}", file=sys.stderr)
    return finish(what, JobSummary(done, 0, len(skipped), log))


def run_export(args: argparse.Namespace) -> int:
    from medwss.io.nnunet import LabelSource, export_al_state, export_manifest

    source = Path(args.source)
    labels = args.labels or ("al-state" if source.is_dir() else "scribble")
    if labels == "al-state":
        result = export_al_state(source, args.out, args.dataset_id, args.name, progress=not args.quiet)
    else:
        splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
        result = export_manifest(
            source, args.out, args.dataset_id, args.name, cast(LabelSource, labels), args.classes, args.num_classes, splits,
            progress=not args.quiet,
        )  # fmt: skip
    ignore = f", ignore label {result.ignore}" if result.ignore is not None else ""
    print(
        f"{result.folder}: {len(result.training)} training, {len(result.test)} test cases, "
        f"{result.num_classes} classes{ignore}"
    )
    return _report(result.skipped, len(result.training) + len(result.test), "export nnunet", result.failures)


def run_import(args: argparse.Namespace) -> int:
    from medwss.io.nnunet import import_dataset

    path, skipped = import_dataset(
        args.root, args.out, args.label_column, args.split_channels, args.modality, args.site, not args.quiet
    )
    print(f"wrote {path}")
    from medwss.data.manifest import load_manifest

    return _report(skipped, len(load_manifest(path, check_files=False)), "manifest from-nnunet")
