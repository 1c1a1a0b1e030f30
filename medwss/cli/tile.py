"""`medwss tile MANIFEST --out DIR`: tissue detection and tiling of every case of a manifest.

Writes ``DIR/<case_id>.tiles.h5`` per case, QA images ``DIR/qa/<case_id>_tissue.png`` and
``DIR/qa/<case_id>_tiles.png``, ``DIR/failures.csv`` (cases that failed, one line each) and
``DIR/run.json``. Cases whose tile file exists are skipped (``--overwrite`` redoes them). Slides
(modality WSI) are tiled at a target mpp inside tissue; volumes by axial slice, 2.5D stack or 3D
patch inside the body, on their canonical RAS+ grid whatever the stored axis order (tile
coordinates are canonical voxels; the tile file records the source orientation), multi-channel
cases on the first channel's grid.

Scale out: ``--workers N`` tiles N cases at once in separate processes; ``--shard i/n`` (or, without
it, a SLURM job array: ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``) takes the i-th of n
round-robin shares of the sorted case ids; processes sharing one ``--out`` split the cases through
per-case claim files (``<case>.tiles.h5.claim``). The job is `medwss.embed.tiling_job.tile_manifest`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medwss.embed.config import TileConfig

_LAZY = (
    "SLIDE_TILE_SIZE", "VOLUME_TILE_SIZE", "magnification_mpp", "roi_mask", "stored_signature", "tile_case",
    "tile_manifest", "tile_signature", "tissue_geojson_path",
)  # fmt: skip
"""The names of `medwss.embed.tiling_job` that `medwss tile` has always offered, imported on first use."""


def __getattr__(name: str) -> Any:
    if name == "TileConfig":
        from medwss.embed.config import TileConfig

        return TileConfig
    if name in _LAZY:
        from medwss.embed import tiling_job

        return getattr(tiling_job, name)
    raise AttributeError(f"module 'medwss.cli.tile' has no attribute {name!r}")


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.embed.config import TileConfig

    p = sub.add_parser("tile", help=command_help("tile"), description=__doc__)
    p.add_argument("manifest", help="manifest CSV")
    p.add_argument("--out", required=True, help="output folder (tiles, qa/, failures.csv, run.json)")
    p.add_argument("--config", help="YAML config (configs/tile.yaml); flags given here override it")
    add_config_flags(p, TileConfig, flatten={"tissue": "tissue-"}, aliases={"channels": "--channel"})
    p.add_argument("--workers", type=int, default=1, help="cases tiled at once, each in its own process (default 1)")
    p.add_argument("--shard", metavar="I/N",
                   help="tile only the I-th of N round-robin shares of the sorted case ids (0-based; default: "
                   "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a job array, else every case)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo cases whose tile file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> TileConfig:
    """The config: TileConfig's defaults < the ``--config`` YAML < the flags given on the command line."""
    from medwss.cli.options import config_from_args
    from medwss.embed.config import TileConfig

    return config_from_args(TileConfig, args, getattr(args, "config", None))


def run(args: argparse.Namespace) -> int:
    from medwss.cli.batch import finish
    from medwss.data.manifest import load_manifest
    from medwss.embed.sharing import resolve_shard
    from medwss.jobs import JobSummary

    if getattr(args, "mag", None) is not None and getattr(args, "mpp", None) is not None:
        from medwss.errors import ConfigError

        raise ConfigError("give --mag or --mpp, not both")
    cfg = resolve(args)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    out = Path(args.out)
    from medwss.embed.tiling_job import tile_manifest

    stats = tile_manifest(
        manifest, out, cfg, progress=not getattr(args, "quiet", False), workers=getattr(args, "workers", 1) or 1,
        shard=resolve_shard(getattr(args, "shard", None), env=True), overwrite=getattr(args, "overwrite", False),
    )  # fmt: skip
    failed, redone = stats["failed"], stats["redone_stale"]
    note = f" (see {stats['failures']})" if failed else ""
    stale = f" ({redone} redone: made with other settings or inputs)" if redone else ""
    busy = f", {stats['busy']} left to another process" if stats["busy"] else ""
    where = f" [shard {stats['shard']}]" if stats["shard"] else ""
    print(
        f"tile{where}: {stats['done']} done{stale}, {stats['skipped']} skipped, {failed} failed{note}{busy}; "
        f"{stats['tiles']} tiles in {out}"
    )
    summary = JobSummary(stats["done"], stats["skipped"], stats["failed"], Path(stats["failures"]))
    return finish("tile", summary)
