"""`medwss info PATH [--json]`: what a slide or volume holds."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a slide or a volume", description=__doc__)
    p.add_argument("path", help="slide file, volume file, or DICOM folder")
    p.add_argument("--json", action="store_true", help="print JSON (keys documented in README)")
    p.add_argument("--mpp", type=float, default=None, help="microns per pixel, for slides without it")
    p.add_argument("--series", default=None, help="DICOM SeriesInstanceUID or SeriesNumber to read")
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
    from medwss.io.info import describe

    d = describe(args.path, mpp=args.mpp, series=args.series)
    print(json.dumps(d, indent=2) if args.json else _text(d))
    return 0
