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
    """What to generate (the positional KIND; ``kind:`` in the YAML)."""
    n: int = Field(4, ge=1)
    """Number of cases."""
    seed: int = 0
    """Random seed."""
    scale: float = Field(1.0, gt=0)
    """Image size multiplier."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Kind-specific difficulty (wsi: `WSIOptions`, ct: `CTOptions` fields); empty for the original phantoms."""


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.data.phantoms.bags import BagPhantomConfig

    p = sub.add_parser("phantom", help=command_help("phantom"), description=__doc__)
    p.add_argument(
        "kind", nargs="?", choices=("wsi", "ct", "mri", "bags"), help="what to generate (or set it in --config)"
    )
    p.add_argument("--out", required=True, help="output folder (manifest.csv and run.json are written there)")
    p.add_argument("--config", help="YAML config (configs/phantom_*.yaml); flags given here override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, PhantomConfig, exclude=("kind",), title="wsi, ct, mri settings (keys of the --config YAML)")
    add_config_flags(
        p,
        BagPhantomConfig,
        exclude=("n", "seed"),
        title="bags settings (keys of the --config YAML)",
        description=f"Bags also take --n (default for bags: {BagPhantomConfig.model_fields['n'].default}) and --seed, "
        "not --scale or --options.",
    )
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> PhantomConfig:
    """The config file's values, overridden by the flags given on the command line."""
    from medwss.cli.options import config_from_args
    from medwss.errors import ConfigError

    if args.kind is None and not args.config:
        raise ConfigError("say what to generate: medwss phantom wsi|ct|mri (or kind: in --config)")
    _refuse(args, _bag_only(), "phantom wsi|ct|mri")
    return config_from_args(PhantomConfig, args, args.config, extra={"kind": args.kind} if args.kind else None)


def _bag_only() -> tuple[str, ...]:
    """Fields of `BagPhantomConfig` that only ``phantom bags`` has."""
    from medwss.data.phantoms.bags import BagPhantomConfig

    return tuple(f for f in BagPhantomConfig.model_fields if f not in PhantomConfig.model_fields)


def _refuse(args: argparse.Namespace, fields: tuple[str, ...], command: str) -> None:
    from medwss.errors import ConfigError

    given = [f"--{f.replace('_', '-')}" for f in fields if getattr(args, f, None) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: not a setting of {command}")


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
    from medwss.cli.options import config_from_args
    from medwss.data.phantoms.bags import BagPhantomConfig, generate_bags
    from medwss.runinfo import write_run_record

    _refuse(args, ("scale", "options"), "phantom bags")
    cfg = config_from_args(BagPhantomConfig, args, args.config)
    path = generate_bags(args.out, cfg, progress=not args.quiet)
    write_run_record(args.out, "phantom bags", cfg.model_dump(), seed=cfg.seed)
    print(f"wrote {path}")
    return 0
