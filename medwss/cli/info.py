"""`medwss info PATH [PATH ...] [--json] [--check]`: what slides and volumes hold.

Several paths are described one after another; a file that fails is reported in one line and the
others go on (exit code 2 if any failed). `--check` also decodes pixels of slides (a tile at the
centre of level 0 and the thumbnail), which finds corrupt tile data that opening does not.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help

    p = sub.add_parser("info", help=command_help("info"), description=__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help="slide file, volume file, or DICOM folder")
    p.add_argument("--json", action="store_true", help="print JSON (keys documented in README)")
    p.add_argument("--mpp", type=float, default=None, help="microns per pixel, for slides without it")
    p.add_argument("--series", default=None, help="DICOM SeriesInstanceUID or SeriesNumber to read")
    p.add_argument("--check", action="store_true", help="also decode slide pixels to find corrupt tiles")
    p.set_defaults(func=run)


def _text(d: dict) -> str:
    if d["kind"] == "slide":
        lines = [
            f"slide      {d['path']}",
            f"reader     {d['reader']} ({d['vendor']})",
            f"mpp        {d['mpp'][0]:.4g} x {d['mpp'][1]:.4g} µm/px"
            if d["mpp"]
            else "mpp        unknown (pass --mpp)",
            f"objective  {d['objective_power']:g}x" if d["objective_power"] else "objective  unknown",
            "levels     " + ", ".join(f"{lv['width']}x{lv['height']} (/{lv['downsample']:.3g})" for lv in d["levels"]),
            "associated " + (", ".join(d["associated_images"]) or "none"),
        ]
    else:
        lo, hi = d["intensity_range"]
        lines = [
            f"volume      {d['path']}",
            f"reader      {d['reader']}",
            f"shape       {' x '.join(str(s) for s in d['shape'])}",
            f"spacing     {' x '.join(f'{s:.4g}' for s in d['spacing'])} mm",
            f"orientation {d['orientation']}",
            f"dtype       {d['dtype']}",
            f"intensity   {lo} .. {hi}",
            f"modality    {d['modality'] or 'unknown'}",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import sys

    from medwss.errors import MedwssError
    from medwss.io.info import describe

    results, failed = [], 0
    for path in args.paths:
        try:
            d = describe(path, mpp=args.mpp, series=args.series, check=args.check)
        except MedwssError as exc:
            if len(args.paths) == 1:
                raise
            failed += 1
            print(f"medwss: error: {exc}", file=sys.stderr)
            results.append({"path": path, "error": str(exc)})
            continue
        results.append(d)
        if not args.json:
            print(_text(d) + ("\n" if len(args.paths) > 1 else ""))
    if args.json:
        print(json.dumps(results[0] if len(args.paths) == 1 else results, indent=2))
    if failed:
        print(f"{failed} of {len(args.paths)} file(s) failed", file=sys.stderr)
    return 2 if failed else 0
