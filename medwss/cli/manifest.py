"""`medwss manifest check|build`: validate manifests and build them from public dataset layouts."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help

    p = sub.add_parser("manifest", help=command_help("manifest"), description=__doc__)
    msub = p.add_subparsers(dest="manifest_command", metavar="SUBCOMMAND", required=True)
    c = msub.add_parser("check", help="report every problem of a manifest; exit 1 if there is any")
    c.add_argument("manifest", help="manifest CSV")
    c.add_argument("--no-files", action="store_true", help="do not check that files exist")
    c.set_defaults(func=check)
    b = msub.add_parser("build", help="build a manifest from a local copy of a public dataset")
    b.add_argument("dataset", help="dataset name (camelyon16, picai, prostate158, mosmed, kits, acdc)")
    b.add_argument("root", help="folder holding the dataset as distributed")
    b.add_argument("--out", required=True, help="output manifest CSV")
    b.set_defaults(func=build)
    from medwss.cli.nnunet import register_import

    register_import(msub)  # medwss manifest from-nnunet


def check(args: argparse.Namespace) -> int:
    from medwss.data.manifest import check_manifest, load_manifest

    problems = check_manifest(args.manifest, check_files=not args.no_files)
    if problems:
        for line in problems:
            print(f"{args.manifest}: {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    m = load_manifest(args.manifest, check_files=False, images=False)
    sites = sorted({c.site for c in m})
    splits = {s: len(m.split(s)) for s in ("train", "val", "test") if m.split(s)}
    labels = sorted({c.label for c in m if c.label is not None})
    print(
        f"{args.manifest}: OK, {len(m)} cases, {len({c.patient_id for c in m})} patients, "
        f"sites {', '.join(sites)}, channels {', '.join(m.channels) or '- (feature bags only)'}"
        + (f", labels {labels}" if labels else "")
        + (f", splits {splits}" if splits else "")
    )
    return 0


def build(args: argparse.Namespace) -> int:
    from medwss.data.builders import build_manifest

    out = build_manifest(args.dataset, args.root, args.out)
    print(f"wrote {out}")
    return 0
