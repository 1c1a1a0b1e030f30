"""`medwss evaluate MANIFEST --predictions DIR --out DIR`: Dice, HD95/ASSD/NSD, lesion detection and case AUROC (PI-CAI style).

Predictions are ``<case_id>.nii.gz`` probability maps on the grid of each case's mask. Writes
cases.csv (per case: Dice, HD95, ASSD and NSD in mm with the mask's voxel spacing, lesion
counts), detections.csv, failures.csv, summary.json and summary.md (per group, with bootstrap
intervals), pr_froc.png and run.json. A missing prediction or one on another grid is
reported for that case and the others are evaluated.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help
    from medwss.cli.options import add_config_flags
    from medwss.eval.runner import EvaluateConfig

    p = sub.add_parser("evaluate", help=command_help("evaluate"), description=__doc__)
    p.add_argument("manifest", help="manifest CSV whose mask column holds the ground truth")
    p.add_argument("--predictions", required=True, help="folder of <case_id>.nii.gz probability maps")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="YAML config (configs/evaluate.yaml); flags given here override it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, EvaluateConfig)
    p.set_defaults(func=run)


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value or abs(value) == float("inf") else f"{value:.3f}"


def _mm(value: float | None) -> str:
    text = _num(value)
    return text if text == "n/a" else f"{float(value):.2f} mm"  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medwss.cli.batch import finish
    from medwss.cli.options import config_from_args
    from medwss.data.manifest import load_manifest
    from medwss.errors import require_file
    from medwss.eval.runner import EvaluateConfig, evaluate_manifest, jsonable, write_outputs
    from medwss.jobs import JobSummary
    from medwss.runinfo import write_run_record

    cfg = config_from_args(EvaluateConfig, args, args.config)
    manifest = load_manifest(args.manifest, check_files=False)  # images are not needed; a missing mask fails its case
    require_file(args.predictions)
    rows, failures = evaluate_manifest(manifest, args.predictions, cfg, progress=not args.quiet)
    n_cases = len(rows) + len(failures)
    record = write_outputs(args.out, rows, failures, cfg, n_cases)
    overall = record["summary"][-1] if record["summary"] else {}
    metrics = {"n_cases": n_cases, "n_evaluated": len(rows), "n_failed": len(failures), **overall}
    write_run_record(
        args.out, "evaluate", {**cfg.model_dump(), "predictions": str(args.predictions)}, cfg.seed, jsonable(metrics)
    )
    for f in failures:
        print(f"failed: {f['case_id']}: {f['problem']}")
    if not rows:
        print(f"no case evaluated ({len(failures)} failed); see {args.out}/failures.csv")
        return finish("evaluate", JobSummary(len(rows), 0, len(failures), Path(args.out) / "failures.csv"))
    print(
        f"{len(rows)} case(s): Dice {overall['dice']:.3f}, HD95 {_mm(overall.get('hd95'))}, "
        f"NSD@{cfg.nsd_tolerance:g}mm {_num(overall.get('nsd'))}, AUROC {overall['auroc']:.3f}, AP {overall['ap']:.3f}, "
        f"ranking {overall['ranking']:.3f}; tables in {args.out}/summary.md"
    )
    return finish("evaluate", JobSummary(len(rows), 0, len(failures), Path(args.out) / "failures.csv"))
