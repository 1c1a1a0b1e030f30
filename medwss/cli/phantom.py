"""`medwss phantom wsi|ct|mri|bags --out DIR`: seeded synthetic data with exact ground truth and a manifest.

``bags`` writes feature-level context phantoms (CLAM-layout bags, no images; see
`medwss.data.phantoms.bags`): instance pooling fails on them by construction, context does not.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from pydantic import Field

from medwss.config import StrictConfig


class PhantomConfig(StrictConfig):
    """What `medwss phantom` generates (configs/phantom_*.yaml)."""

    kind: Literal["wsi", "ct", "mri"]
    n: int = Field(4, ge=1)
    seed: int = 0
    scale: float = Field(1.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific difficulty (wsi: `WSIOptions`, ct: `CTOptions` fields); empty for the original phantoms."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="generate synthetic slides or volumes with ground truth", description=__doc__)
    p.add_argument(
        "kind", nargs="?", choices=("wsi", "ct", "mri", "bags"), help="what to generate (or set it in --config)"
    )
    p.add_argument("--out", required=True, help="output folder (manifest.csv and run.json are written there)")
    p.add_argument("--config", help="YAML config (configs/phantom_*.yaml); flags given here override it")
    p.add_argument("--n", type=int, help="number of cases (default 4)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--scale", type=float, help="image size multiplier (default 1.0)")
    p.add_argument("--signal", type=float, help="bags: tumour signature amplitude (default 8)")
    p.add_argument("--noise", type=float, help="bags: feature noise standard deviation (default 1)")
    p.add_argument("--cluster", type=int, nargs=2, metavar=("LO", "HI"), help="bags: lesion size range in tiles")
    p.add_argument("--lookalikes", type=int, nargs=2, metavar=("LO", "HI"), help="bags: isolated look-alikes per case")
    p.add_argument("--balance", type=float, help="bags: look-alikes removed per lesion tile in positives (default 0.8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> PhantomConfig:
    """The config file's values, overridden by the flags given on the command line."""
    from medwss.config import merge_config
    from medwss.errors import ConfigError

    if args.kind is None and not args.config:
        raise ConfigError("say what to generate: medwss phantom wsi|ct|mri (or kind: in --config)")
    return merge_config(PhantomConfig, args.config, {k: getattr(args, k) for k in ("kind", "n", "seed", "scale")})


_BAG_FLAGS = ("n", "seed", "signal", "noise", "cluster", "lookalikes", "balance")


def run(args: argparse.Namespace) -> int:
    from medwss.data.phantoms import generate
    from medwss.runinfo import write_run_record

    if args.kind == "bags":
        return _run_bags(args)
    cfg = resolve(args)
    path = generate(
        cfg.kind, args.out, n=cfg.n, seed=cfg.seed, scale=cfg.scale, progress=not args.quiet, options=cfg.options
    )
    write_run_record(args.out, f"phantom {cfg.kind}", cfg.model_dump(), seed=cfg.seed)
    print(f"wrote {path}")
    return 0


def _run_bags(args: argparse.Namespace) -> int:
    from medwss.config import merge_config
    from medwss.data.phantoms.bags import BagPhantomConfig, generate_bags
    from medwss.runinfo import write_run_record

    cfg = merge_config(BagPhantomConfig, args.config, {k: getattr(args, k) for k in _BAG_FLAGS})
    path = generate_bags(args.out, cfg, progress=not args.quiet)
    write_run_record(args.out, "phantom bags", cfg.model_dump(), seed=cfg.seed)
    print(f"wrote {path}")
    return 0
