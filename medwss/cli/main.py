"""Entry point: `medwss [--debug] COMMAND ...`. A `MedwssError` prints one line and exits with code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medwss import __version__
from medwss.cli import al, coin, demo, embed, encoder, evaluate, info, manifest, mil, phantom, pseudo, scribble, tile
from medwss.errors import MedwssError

GROUPS = (info, manifest, phantom, tile, embed, encoder, mil, pseudo, evaluate, scribble, demo, al, coin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medwss",
        description="Weakly-supervised medical image analysis for CT, MRI and whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"medwss {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except MedwssError as exc:
        if args.debug:
            raise
        print(f"medwss: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medwss: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
