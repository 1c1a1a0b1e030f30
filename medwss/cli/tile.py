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

from medwss.embed.tiling_job import (  # noqa: F401 - the names `medwss tile` has always offered
    SLIDE_TILE_SIZE,
    VOLUME_TILE_SIZE,
    TileConfig,
    magnification_mpp,
    roi_mask,
    stored_signature,
    tile_case,
    tile_manifest,
    tile_signature,
    tissue_geojson_path,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tile", help="detect tissue and tile every case of a manifest", description=__doc__)
    p.add_argument("manifest", help="manifest CSV")
    p.add_argument("--out", required=True, help="output folder (tiles, qa/, failures.csv, run.json)")
    p.add_argument("--config", help="YAML config (configs/tile.yaml); flags given here override it")
    p.add_argument("--tile-size", type=int, help="tile side: pixels at --mpp (slides, 224) or voxels (volumes, 32)")
    p.add_argument("--mpp", type=float, help="slides: target microns per pixel (default 0.5)")
    p.add_argument(
        "--mag", type=float, help="slides: target magnification instead of --mpp (e.g. 20; from objective power/mpp)"
    )
    p.add_argument("--overlap", type=float, help="fraction of a tile shared with its neighbour (default 0)")
    p.add_argument("--min-tissue", type=float, help="keep tiles with at least this tissue fraction (default 0.25)")
    p.add_argument("--mode", choices=("axial2d", "stack25d", "patch3d"), help="volumes: tiling mode (default axial2d)")
    p.add_argument("--depth", type=int, help="volumes: slices per 2.5D stack (default 3)")
    p.add_argument("--tile-mm", type=float, help="volumes: patch side in mm instead of --tile-size voxels")
    p.add_argument("--mpp-override", type=float, help="slides: level-0 microns per pixel for files without it")
    p.add_argument("--roi-labels", type=lambda v: [int(x) for x in v.split(",")], help="volumes: organ ROI, e.g. 2,3")
    p.add_argument("--roi-margin-mm", type=float, help="volumes: margin around the organ ROI (default 10 mm)")
    p.add_argument(
        "--nan", choices=("raise", "fill"), help="volumes with NaN/inf voxels: fail the case (default) or fill"
    )
    p.add_argument("--force-mpp", action="store_true", default=None, help="slides: accept an implausible mpp")
    p.add_argument("--channel", dest="channels", action="append", metavar="NAME|INDEX",
                   help="multiplex slides: a channel to read (repeat for up to 3; default the first 3)")  # fmt: skip
    p.add_argument("--stain-norm", choices=("none", "macenko"), help="slides: stain normalisation of tiles")
    p.add_argument("--tissue-geojson", metavar="FILE|DIR",
                   help="slides: tissue polygons (e.g. qa/<case>_tissue.geojson edited in QuPath) instead of detection")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="cases tiled at once, each in its own process (default 1)")
    p.add_argument("--shard", metavar="I/N",
                   help="tile only the I-th of N round-robin shares of the sorted case ids (0-based; default: "
                   "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a job array, else every case)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo cases whose tile file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


_FLAGS = (
    "tile_size", "mpp", "mag", "overlap", "min_tissue", "mode", "depth", "tile_mm", "mpp_override", "roi_labels", "roi_margin_mm",
    "nan", "force_mpp", "channels", "stain_norm", "tissue_geojson",
)  # fmt: skip


def resolve(args: argparse.Namespace) -> TileConfig:
    """The config file's values, overridden by the flags given on the command line."""
    from medwss.config import merge_config

    return merge_config(TileConfig, getattr(args, "config", None), {k: getattr(args, k, None) for k in _FLAGS})


def run(args: argparse.Namespace) -> int:
    from medwss.cli.batch import finish
    from medwss.data.manifest import load_manifest
    from medwss.embed.sharing import resolve_shard

    if getattr(args, "mag", None) is not None and getattr(args, "mpp", None) is not None:
        from medwss.errors import ConfigError

        raise ConfigError("give --mag or --mpp, not both")
    cfg = resolve(args)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    out = Path(args.out)
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
    return finish("tile", stats["total"], failed, stats["failures"])
