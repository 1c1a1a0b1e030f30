"""`medwss al init|select|ingest|train|status|simulate`: slice-based active learning for annotation teams.

A project lives in a state folder. `init` builds the slice pool of a manifest's volumes; `select`
picks the next slices (contrastive Coreset by default) and exports them as 2D NIfTI with their
scanner geometry, PNG previews and a CSV; annotate them in ITK-SNAP or 3D Slicer (full masks, or
scribbles with -1 = unlabelled, 255 in uint8 files, or a value of your own given by --unlabelled);
`ingest` checks and stores the annotations (int16 NIfTI, -1 = unlabelled); `train` fits the
segmenter (CE + Dice on full masks, partial CE + size penalty on scribbles); `status` reports.
`simulate` runs whole learning curves with an oracle from ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.active.simulate import SimulateConfig
    from medwss.active.state import ALConfig
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags

    p = sub.add_parser("al", help=command_help("al"), description=__doc__)
    asub = p.add_subparsers(dest="al_command", metavar="SUBCOMMAND", required=True)
    i = asub.add_parser("init", help="build the slice pool of a manifest and a state folder")
    i.add_argument("manifest")
    i.add_argument("--state", required=True, help="state folder to create")
    i.add_argument("--config", help="YAML config (configs/al.yaml); flags override it")
    i.add_argument("--quiet", action="store_true")
    add_config_flags(i, ALConfig)
    i.set_defaults(func=run_init)
    s = asub.add_parser("select", help="choose the next slices and export them for annotation")
    s.add_argument("--state", required=True)
    s.add_argument("--budget", help="1%% of the pool (default) or a number of slices")
    s.add_argument("--strategy", help="random, entropy, margin, bald, coreset, contrastive_coreset, typiclust")
    s.add_argument("--out", help="export folder (default STATE/rounds/round_NNN)")
    s.add_argument("--allow-pending", action="store_true", help="select although earlier slices await annotation")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=run_select)
    g = asub.add_parser("ingest", help="read annotation files (NIfTI on the exported slices) into the state")
    g.add_argument("folder")
    g.add_argument("--state", required=True)
    g.add_argument("--kind", choices=("auto", "full", "scribble"), default="auto")
    g.add_argument(
        "--unlabelled",
        type=int,
        help="value meaning unlabelled in the files, besides -1 and 255 in uint8 files (default: the config's)",
    )
    g.set_defaults(func=run_ingest)
    t = asub.add_parser("train", help="train the segmenter on every annotated slice (resumes)")
    t.add_argument("--state", required=True)
    t.add_argument("--epochs", type=int)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)
    st = asub.add_parser("status", help="pool, rounds, annotations, model")
    st.add_argument("--state", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)
    sim = asub.add_parser("simulate", help="learning curves with an oracle annotator (ground truth)")
    sim.add_argument("manifest")
    sim.add_argument("--out", required=True)
    sim.add_argument("--config", help="YAML config (configs/al_simulate.yaml); flags override it")
    sim.add_argument("--quiet", action="store_true")
    add_config_flags(sim, SimulateConfig, aliases={"modes": "--mode"})
    sim.set_defaults(func=run_simulate)


def run_init(args: argparse.Namespace) -> int:
    from medwss.active.rounds import init_project
    from medwss.active.state import ALConfig
    from medwss.cli.options import config_from_args

    cfg = config_from_args(ALConfig, args, args.config)
    state, skipped = init_project(args.manifest, args.state, cfg, progress=not args.quiet)
    for msg in skipped:
        print(f"skipped {msg}", file=sys.stderr)
    vols = len({r.volume for r in state.pool.refs})
    print(f"pool: {len(state.pool)} slices of {vols} volumes; state: {state.folder}")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from medwss.active.rounds import select_round
    from medwss.active.state import ALState

    state = ALState(args.state)
    rec = select_round(state, args.budget, args.strategy, args.out, args.allow_pending, progress=not args.quiet)
    print(f"round {rec['round']}: {len(rec['selected'])} slices by {rec['strategy']} -> {rec['export']}")
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from medwss.active.rounds import ingest_annotations
    from medwss.active.state import ALState

    state = ALState(args.state)
    ids, rejected = ingest_annotations(state, args.folder, args.kind, args.unlabelled)
    for msg in rejected:
        print(f"medwss: rejected {msg}", file=sys.stderr)
    print(f"ingested {len(ids)} annotations; {len(state.pending_ids())} selected slices still pending")
    return 2 if rejected else 0


def run_train(args: argparse.Namespace) -> int:
    from medwss.active.rounds import train_model
    from medwss.active.state import ALState

    metrics = train_model(ALState(args.state), args.epochs, progress=not args.quiet)
    print(f"trained on {metrics['annotated']} slices ({', '.join(metrics['kinds'])}, {metrics['loss']})")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from medwss.active.rounds import project_status
    from medwss.active.state import ALState

    st = project_status(ALState(args.state))
    if args.json:
        print(json.dumps(st, indent=2, default=str))
        return 0
    print(f"pool: {st['pool']} slices of {st['volumes']} volumes")
    print(
        f"rounds: {st['rounds']}; selected {st['selected']}; annotated {st['annotated']} ({st['annotated_percent']:.1f}%)"
    )
    print(f"pending: {len(st['pending'])}; annotation kinds: {', '.join(st['kinds']) or '-'}")
    print(f"model: {st['model'] or 'not trained yet'}")
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from medwss.active.simulate import SimulateConfig, simulate_from_manifest
    from medwss.cli.options import config_from_args

    cfg = config_from_args(SimulateConfig, args, args.config)
    result = simulate_from_manifest(args.manifest, cfg, args.out, progress=not args.quiet)
    for row in result["summary"]:
        print(
            f"{row['mode']:8s} {row['strategy']:20s} "
            + "  ".join(f"{p:.1f}%:{d:.3f}" for p, d in zip(row["percent"], row["dice_mean"], strict=True))
        )
    print(f"curves: {result['plot']}")
    return 0
