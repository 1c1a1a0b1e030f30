"""`medwss encoder pretrain MANIFEST --tiles DIR --encoder NAME --out weights.pt`: in-domain self-supervised pretraining.

Trains the encoder with NT-Xent (SimCLR; ``--positives group`` makes all tiles of a patient
positives, SupCon-style) on the tiles written by ``medwss tile`` (``DIR/<case_id>.tiles.h5``), and
writes it to ``--out`` as the one model file (load it with ``medwss embed --encoder NAME --weights OUT``
or `medwss.train.load_model`), ``run.json`` and ``history.json`` beside it, and a checkpoint
``OUT.ckpt`` every epoch that an interrupted run resumes from (with the same settings).
"""

from __future__ import annotations

import argparse

from medwss.embed.pretrain.config import PretrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags

    group = sub.add_parser("encoder", help=command_help("encoder"), description="Encoder training.")
    actions = group.add_subparsers(dest="encoder_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "pretrain",
        help="self-supervised contrastive pretraining",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", help="manifest CSV of the cases")
    p.add_argument("--tiles", required=True, help="folder of <case_id>.tiles.h5 files (medwss tile)")
    p.add_argument("--out", required=True, help="weights file to write (e.g. ssl_resnet18.pt)")
    p.add_argument("--config", help="YAML config (configs/pretrain.yaml); flags given here override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, PretrainConfig, exclude=("out",), aliases={"splits": "--split", "num_workers": "--workers"})
    p.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> PretrainConfig:
    """The config file's values, overridden by the flags given on the command line."""
    from medwss.cli.options import config_from_args

    return config_from_args(PretrainConfig, args, args.config, extra={"out": str(args.out)})


def run(args: argparse.Namespace) -> int:
    import torch

    from medwss.data.manifest import load_manifest
    from medwss.embed.encoders import create_encoder
    from medwss.embed.pretrain.trainer import pretrain, tile_dataset

    cfg = resolve(args)
    manifest = load_manifest(args.manifest)
    cases = [c for c in manifest if cfg.splits is None or c.split in cfg.splits]
    dataset, groups, skipped = tile_dataset(cases, args.tiles, cfg.max_tiles_per_case, cfg.group_by, cfg.seed)
    if cfg.augment.stain is None:  # stain jitter for H&E slides, never for CT/MR stacks that happen to have 3 channels
        stain = all(c.modality == "WSI" for c in cases)
        cfg = cfg.model_copy(update={"augment": cfg.augment.model_copy(update={"stain": stain})})
    first = dataset[0]  # (C, *S): the tiles decide the encoder's input
    torch.manual_seed(cfg.seed)
    encoder = create_encoder(
        cfg.encoder, spatial_dims=first.ndim - 1, in_channels=int(first.shape[0]), **cfg.encoder_kwargs
    )
    result = pretrain(encoder, dataset, cfg, groups=groups, progress=not args.quiet)
    loss = result["history"][-1]["loss"] if result["history"] else float("nan")
    print(
        f"pretrained {cfg.encoder} on {result['tiles']} tiles of {len(cases) - len(skipped)} cases "
        f"({len(skipped)} skipped), final loss {loss:.4f}; wrote {args.out} (sha256 {result['weights_checksum'][:12]})"
    )
    return 0
