"""`medwss embed MANIFEST --tiles DIR --out DIR --encoder NAME`: patch embeddings, one HDF5 bag per case.

Scale out with `torchrun --nproc-per-node N -m medwss embed ...` (or under SLURM, one task per
process): cases are shared across ranks, each rank writes its own bags. On a cluster without a
process group, `--shard i/n` (or, without it, a SLURM job array: ``SLURM_ARRAY_TASK_ID`` /
``SLURM_ARRAY_TASK_COUNT``) embeds the i-th of n round-robin shares of the sorted case ids, as
`medwss tile --shard` does; processes sharing one `--out` split the cases through per-case claim
files (``<case>.h5.claim``), each case embedded once.

Resume: a case whose bag was made by the same encoder (name, weights checksum or ``random init
seed N``) from the same tile file (its sha256) is skipped; any other bag is embedded again and the
reason printed. Without `--weights` the network is randomly initialised from `--seed` (default 0).

Foundation models: `--encoder uni|uni2-h|virchow2|h-optimus-0|h-optimus-1|phikon --weights FILE`
loads the released weights from a local `.pth`/`.bin`/`.safetensors` file, strict (nothing is
downloaded). `--tiles` also takes CLAM (`patches/<slide>.h5`) or TRIDENT (`<slide>_patches.h5`)
coordinate files, a folder of them or one file.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medwss.embed.config import EmbedConfig


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.embed.config import EmbedConfig

    p = sub.add_parser("embed", help=command_help("embed"), description=__doc__)
    p.add_argument("manifest", help="manifest CSV")
    p.add_argument(
        "--tiles",
        required=True,
        help="folder of <case_id>.tiles.h5 written by `medwss tile`, or of CLAM/TRIDENT coordinate .h5 files "
        "(named by case id or slide file stem), or one such file",
    )
    p.add_argument("--out", required=True, help="output folder for <case_id>.h5 bags")
    p.add_argument("--config", help="YAML config (configs/embed.yaml); flags given here override it")
    p.add_argument(
        "--encoder-option",
        action="append",
        metavar="KEY=VALUE",
        help="encoder keyword argument, repeatable (e.g. input_size=224, block=monai), added to the YAML's "
        "encoder_options",
    )
    add_config_flags(p, EmbedConfig, exclude=("encoder_options",))
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="embed only the I-th of N round-robin shares of the sorted case ids (0-based; default: "
        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT in a job array, else every case)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo every case, even those whose bag matches")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> EmbedConfig:
    """The config: EmbedConfig's defaults < the ``--config`` YAML < the flags given (``--encoder-option`` adds keys)."""
    from medwss.cli.options import config_from_args
    from medwss.embed.config import EmbedConfig

    cfg = config_from_args(EmbedConfig, args, args.config)
    if args.encoder_option:
        cfg = cfg.model_copy(update={"encoder_options": {**cfg.encoder_options, **_options(args.encoder_option)}})
    return cfg


def _options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs, each value read as YAML (numbers, booleans, lists)."""
    import yaml

    from medwss.errors import ConfigError

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--encoder-option {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from medwss.data.manifest import load_manifest
    from medwss.embed.job import embed_manifest
    from medwss.embed.sharing import resolve_shard
    from medwss.runinfo import write_run_record

    cfg = resolve(args)
    shard = resolve_shard(getattr(args, "shard", None), env=True)
    manifest = load_manifest(args.manifest, check_files=False)  # a missing image fails its case only
    stats = embed_manifest(
        manifest, args.tiles, args.out, cfg, overwrite=args.overwrite, progress=not args.quiet, shard=shard
    )
    if stats["rank"] == 0:
        write_run_record(args.out, "embed", cfg.model_dump(), metrics=stats)
        failed = stats.get("failures_total", stats["failed"])
        where = f"[shard {stats['shard']}] " if stats.get("shard") else ""
        print(
            f"{where}embedded {stats['done']} case(s) ({stats['tiles']} tiles, {stats['seconds']:.1f} s), "
            f"skipped {stats['skipped']} finished, "
            + (f"redid {stats['redone_stale']} stale (other encoder or tiles), " if stats.get("redone_stale") else "")
            + f"{failed} failed"
            + (f", {stats['busy']} left to another process" if stats.get("busy") else "")
            + (f" (see {args.out}/failures.csv)" if failed else "")
            + f"; manifest with features: {stats['manifest']}"
        )
    if stats["rank"] != 0:  # rank 0 prints the summary of the whole job
        return 2 if stats["done"] + stats["skipped"] == 0 and stats["failed"] else 0
    from pathlib import Path

    from medwss.cli.batch import finish
    from medwss.jobs import JobSummary

    skipped = stats["skipped"]  # every rank's failures are in the log; other ranks' done cases count as done
    done = max(stats["total"] - failed - skipped, 0)
    return finish("embed", JobSummary(done, skipped, failed, Path(args.out) / "failures.csv"))
