"""`medwss phantom wsi|ct|mri --out DIR`: seeded synthetic data with exact ground truth and a manifest."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="generate synthetic slides or volumes with ground truth", description=__doc__)
    p.add_argument("kind", choices=("wsi", "ct", "mri"), help="what to generate")
    p.add_argument("--out", required=True, help="output folder (manifest.csv is written there)")
    p.add_argument("--n", type=int, default=4, help="number of cases (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", type=float, default=1.0, help="image size multiplier (default 1.0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medwss.data.phantoms import generate

    if args.n < 1:
        raise SystemExit("medwss phantom: --n must be at least 1")
    path = generate(args.kind, args.out, n=args.n, seed=args.seed, scale=args.scale, progress=not args.quiet)
    print(f"wrote {path}")
    return 0
