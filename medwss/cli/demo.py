"""`medwss demo --out DIR`: the main job on synthetic data (for now: phantoms, then `info` on a few)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on phantoms", description=__doc__)
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n", type=int, default=4, help="cases per phantom kind (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medwss.cli.info import _text
    from medwss.data.manifest import check_manifest, load_manifest
    from medwss.data.phantoms import generate
    from medwss.io.info import describe

    out = Path(args.out)
    summary = {}
    for kind in ("wsi", "ct", "mri"):
        manifest = generate(kind, out / kind, n=args.n, seed=args.seed)
        problems = check_manifest(manifest)
        cases = load_manifest(manifest).cases
        print(f"\n== {kind}: {len(cases)} cases in {manifest} ({problems or 'valid'})")
        first = cases[0]
        for path in list(first.images.values())[:3]:
            print(_text(describe(path)))
        summary[kind] = {"manifest": str(manifest), "cases": len(cases), "valid": not problems}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\ndemo finished: {out / 'demo_summary.json'}")
    return 0
