"""`medwss demo --out DIR`: the main job, end to end on phantoms, with an HTML report.

Phantom slides and phantom CT scans → tissue detection and tiles → embeddings (the weight-free
`stats` encoder, fast on a CPU) → INSIGHT, ABMIL and max pooling trained on the case labels only →
case predictions and heatmaps on the held-out test cases, scored against the exact ground truth →
``DIR/report.html`` (metrics with 95% CIs, ROC curves, heatmap overlays) plus every viewer file
(``DIR/heatmaps/<kind>_<aggregator>/``). Re-running resumes finished steps.

The phantom sets are those of `medwss.mil.experiment.SETTINGS`: ``wsi_context`` (slides where
every case, negatives included, holds isolated tumour-like patches, so one tumour-like tile says
nothing and the spatial context of a lesion does; max pooling fails there by construction) and
``ct`` (enhancing kidney tumours, 3D patches inside the kidneys' bounding box).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from medwss.cli.commands import command_help

    p = sub.add_parser("demo", help=command_help("demo"), description=__doc__)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--n-wsi", type=int, default=30, help="phantom slides (default 30)")
    p.add_argument("--n-ct", type=int, default=20, help="phantom CT scans (default 20; 0 to skip)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aggregators", default="insight,abmil,max", help="comma-separated (default insight,abmil,max)")
    p.add_argument(
        "--wsi-set", default="wsi_context", choices=("wsi_context", "wsi"), help="slide set (wsi: the easy one)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from medwss.data.manifest import Manifest, load_manifest
    from medwss.io.atomic import write_json
    from medwss.mil.experiment import SETTINGS, evaluate, prepare
    from medwss.mil.workflow import write_heatmaps
    from medwss.runinfo import write_run_record
    from medwss.viz.report import write_report

    t0 = time.perf_counter()
    out = Path(args.out)
    rows, rocs, overlays = [], {}, []
    sets = [(args.wsi_set, args.n_wsi)] + ([("ct", args.n_ct)] if args.n_ct > 0 else [])
    for name, n in sets:
        kind = SETTINGS[name]["kind"]
        print(f"== {name}: {n} phantom cases → tiles → stats embeddings")
        manifest = prepare(name, out / "data", n, args.seed)
        test = Manifest(manifest, [c for c in load_manifest(manifest).cases if c.split == "test"])
        for agg in args.aggregators.split(","):
            run_dir = out / "runs" / f"{kind}_{agg}"
            spec = SETTINGS[name]
            r = evaluate(
                manifest,
                agg,
                args.seed,
                run_dir,
                args.epochs,
                spec["positive_labels"],
                train=spec.get("train", {}).get(agg),
            )
            print(
                f"   {agg:8s} test AUC {r['auc']:.3f} [{r['auc_lo']:.3f}, {r['auc_hi']:.3f}]  heatmap Dice {r['dice']:.3f} ({r['n_dice']} positive test cases)"
            )
            rows.append(
                {
                    "data": kind,
                    "set": name,
                    "aggregator": agg,
                    **{
                        k: r[k]
                        for k in ("auc", "auc_lo", "auc_hi", "dice", "dice_lo", "dice_hi", "froc", "accuracy", "n_test")
                    },
                }
            )
            rocs[f"{kind} {agg}"] = (r["y"], r["p"])
            hm = write_heatmaps(test, run_dir / "model.pt", out / "heatmaps" / f"{kind}_{agg}", progress=False)
            positives = [
                c for c in hm["cases"] if any(tc.case_id == c["case_id"] and tc.label == 1 for tc in test.cases)
            ]
            for c in positives[:2]:
                overlays.append((f"{kind} · {agg} · {c['case_id']} (p = {c['prob'][-1]:.2f})", c["overlay"]))
    notes = (
        "Phantoms with exact ground truth; test cases held out by patient. Heatmap Dice: heatmap ≥ 0.5 against the "
        f"tumour mask on positive test cases. Total time {time.perf_counter() - t0:.0f} s."
    )
    report = write_report(out / "report.html", "medwss demo: weak labels in, heatmaps out", rows, rocs, overlays, notes)
    write_run_record(out, "demo", vars(args) | {"func": None}, seed=args.seed, metrics={"rows": rows})
    write_json(out / "demo_summary.json", rows)
    print(f"\nreport: {report}")
    return 0
