"""The context benchmark: INSIGHT against every MIL baseline on bags where instance pooling fails.

Usage:
    python benchmarks/mil_context.py [--quick] [--seeds 0 1 2] [--sets default weak small] [--epochs N]
        [--phantom-seed S]
    python benchmarks/mil_context.py --merge run_a/mil_context.json run_b/mil_context.json

Data: `medwss phantom bags` (`medwss.data.phantoms.bags`): CLAM-layout feature bags (no images)
whose lesions are connected clusters of tumour-like tiles, while every case — negatives included —
also holds isolated look-alike tiles as strong as lesion tiles, and positives hold fewer of them so
the count of tumour-like tiles overlaps between the classes. The bags are written to disk and read
back through the bag-only manifest path (`load_manifest(images=False)` → `load_bags`).

Size: 160 cases per set on a 16×16 tile grid (`--n`, `--grid`; the phantom's own default is 240
on 20×20), cut to fit a 2-core CPU; a full run (3 sets, 3 seeds, ablations on default, 40 epochs)
is hours of CPU on the shared machine, INSIGHT runs being the slow part. `--epochs N` cuts the
shipped config's epochs (patience scaled with it); `--merge A.json B.json ...` pools runs made in
parallel (one process per seed or method) into one table. Ablations: ``--train-kwargs JSON``
(`MILTrainConfig` fields, e.g. ``'{"lr": 3e-4}'``) and ``--insight-kwargs JSON``, named apart with
``--suffix _lr3e-4``; each run keeps its per-epoch curve (``history``: train/val loss, val AUC). The run behind the README table is cut
(see README, "Context benchmark"). ``--phantom-seed S`` draws another phantom (default 0: the
evaluation draw): settings are chosen on ``--phantom-seed 1`` with model seeds 10–12 by their
validation curves (benchmarks/results/mil_context_selection.*), then run on seeds 0–2 of draw 0.

Sets (``--sets``; default, weak and small unless named; the ablations run on ``--ablation-sets``,
default only; each varies one axis of the default): ``default`` (signal 8, clusters of 6–16 tiles, 8–24
look-alikes), ``weak`` (signal 5: tumour-like tiles closer to the tissue), ``small`` (clusters of
3–6 tiles), ``noisy`` (feature noise 1.5); ``no_lookalikes`` (no isolated tumour-like tiles: a diagnosis of
INSIGHT's starting plateau, where instance pooling should work too).

Methods: INSIGHT as shipped (configs/mil_insight.yaml) and its ablations — no context module, no
spectral-decoupling penalty, the paper's block design (LayerNorm + GELU, replication padding, four
layers per module), Otsu gating of the heatmap (the same trained model, gated at inference) — and
ABMIL, CLAM-SB, TransMIL, mean and max pooling, all trained the same way (`medwss.mil.train.train`:
the engine, model selection on validation loss, the shipped training config).

Metrics per method and set: test case AUC (bootstrap 95% CI over cases, `classification_report`),
tile Dice of the heatmap at 0.5 on positive test cases (mean, bootstrap 95% CI over cases), seconds
of training. ≥ 3 seeds: the mean ± sd of the seeds, and the CI of seed 0.
Results: benchmarks/results/mil_context[_quick].json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "weak": {"signal": 5.0},
    "small": {"cluster": (3, 6)},
    "noisy": {"noise": 1.5},
    "no_lookalikes": {"lookalikes": (0, 0)},  # a diagnosis, not a benchmark set: without look-alikes max pooling works
}
PAPER = {"block": "paper", "detection_depth": 4, "context_depth": 4}
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "insight": ("insight", {}),
    "insight_paper": ("insight", PAPER),
    "insight_no_context": ("insight", {"use_context": False}),
    "insight_no_sd": ("insight", {"sd_weight": 0.0}),
    "abmil": ("abmil", {}),
    "clam_sb": ("clam_sb", {}),
    "transmil": ("transmil", {}),
    "mean": ("mean", {}),
    "max": ("max", {}),
}
GATED = "insight_gated"  # the shipped INSIGHT model, Otsu-gated at inference


def tile_dice(scores: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of ``scores >= threshold`` against the lesion tiles (1.0 when both are empty)."""
    p, t = scores >= threshold, truth.astype(bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (p & t).sum() / denom)


def _boot(values: list[float], seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% CI of the mean of per-case `values` (`medwss.eval.metrics.bootstrap_ci`)."""
    from medwss.eval.metrics import bootstrap_ci

    if not values:
        return float("nan"), float("nan")
    _, lo, hi = bootstrap_ci(lambda _y, v: float(np.mean(v)), np.zeros(len(values)), values, seed=seed, stratify=False)
    return lo, hi


def _shipped_config() -> tuple[dict[str, Any], dict[str, Any]]:
    """(training config fields, INSIGHT kwargs) from configs/mil_insight.yaml."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "mil_insight.yaml").read_text())
    kwargs = cfg.pop("aggregator_kwargs", {}) or {}
    cfg.pop("aggregator", None)
    return cfg, kwargs


def load_set(folder: Path) -> dict[str, list]:  # noqa: ANN001
    """The set's train/val/test `LabelledBag`s with their tile truth, through the bag-only manifest."""
    from medwss.data.manifest import load_manifest
    from medwss.data.phantoms.bags import load_truth
    from medwss.mil.data import load_bags, patient_split

    manifest = load_manifest(folder / "manifest.csv", images=False)
    split = patient_split(manifest, 0.0, 0)
    out = {}
    for name, cases in split.items():
        bags = load_bags(cases, 1)
        for lb in bags:
            lb.truth = load_truth(lb.case.features)  # type: ignore[attr-defined,arg-type]
        out[name] = bags
    return out


def run_method(
    aggregator: str, kwargs: dict[str, Any], train_cfg: dict[str, Any], data: dict[str, list], seed: int
) -> dict[str, Any]:
    """Train one method on one set with one seed; test AUC and tile Dice (and gated Dice for INSIGHT)."""
    import torch

    from medwss.eval.metrics import classification_report
    from medwss.mil.registry import create_aggregator
    from medwss.mil.train import MILTrainConfig, predict, train
    from medwss.train.device import seed_everything

    cfg = MILTrainConfig(**{**train_cfg, "aggregator": aggregator, "seed": seed, "device": "cpu"})
    seed_everything(seed)
    model = create_aggregator(aggregator, int(data["train"][0].bag.features.shape[1]), 1, **kwargs)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mil_context_{aggregator}_s{seed}_") as tmp:  # history.json to watch
        result = train(model, data["train"], data["val"], cfg, tmp, torch.device("cpu"), progress=False)
    seconds = time.perf_counter() - start

    def score(outs: list) -> dict[str, Any]:  # noqa: ANN001
        y = np.array([int(b.target[0]) for b in data["test"]])
        p = np.array([float(o.probs[0]) for o in outs])
        rep = classification_report(y, p)
        dices = [
            tile_dice(o.scores[:, 0].numpy(), b.truth)
            for b, o in zip(data["test"], outs, strict=True)
            if b.target[0] > 0.5
        ]
        lo, hi = _boot(dices, seed)
        return {"auc": rep["auc"], "auc_lo": rep["auc_lo"], "auc_hi": rep["auc_hi"],
                "dice": float(np.mean(dices)), "dice_lo": lo, "dice_hi": hi}  # fmt: skip

    history = [{k: r.get(k) for k in ("epoch", "train_loss", "val_loss", "val_auc")} for r in result["history"]]
    row = {**score(predict(model, data["test"], torch.device("cpu"))), "seconds": seconds,
           "best_epoch": result["best_epoch"], "epochs_run": len(history), "seed": seed,
           "history": history}  # fmt: skip
    if "restarts" in result:  # MILTrainConfig.restarts > 1: the restarts' best monitor values and the one kept
        row.update(restarts=result["restarts"], restart_chosen=result["restart_chosen"])
    if aggregator == "insight" and getattr(model, "use_context", False) and not gated_variant(kwargs):
        model.gate = True  # type: ignore[assignment]
        row["gated"] = score(predict(model, data["test"], torch.device("cpu")))
    return row


def gated_variant(kwargs: dict[str, Any]) -> bool:
    """True for INSIGHT ablations (their gated Dice is not reported; only the shipped model's is)."""
    _, shipped = _shipped_config()
    return any(kwargs.get(k) != v for k, v in kwargs.items() if k not in shipped) or any(
        kwargs.get(k) != shipped[k] for k in shipped
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("auc", "dice", "seconds"):
        v = np.array([r[key] for r in rows], dtype=float)
        out[key], out[f"{key}_sd"] = float(np.nanmean(v)), float(np.nanstd(v))
    out["seeds"] = [r.get("seed") for r in rows]
    first = rows[0]
    for key in ("auc_lo", "auc_hi", "dice_lo", "dice_hi"):
        out[key] = first.get(key)
    return out


def run(args: argparse.Namespace, save: Any = None) -> dict[str, Any]:
    import torch

    from medwss.data.phantoms.bags import BagPhantomConfig, generate_bags

    torch.set_num_threads(1)
    train_cfg, shipped = _shipped_config()
    if args.quick:
        train_cfg.update(epochs=4, min_epochs=2, patience=2)
    elif args.epochs:  # a cut run: fewer epochs, early stopping scaled with them
        train_cfg.update(epochs=args.epochs, min_epochs=min(train_cfg["min_epochs"], args.epochs),
                         patience=min(train_cfg["patience"], max(2, args.epochs // 3)))  # fmt: skip
    train_cfg.update(args.train_kwargs or {})  # an ablation of the training settings (named by --suffix)
    methods = {
        k + args.suffix: (a, {**shipped, **kw, **(args.insight_kwargs or {})} if a == "insight" else kw)
        for k, (a, kw) in METHODS.items()
        if k in args.methods
    }
    results: dict[str, Any] = {"config": {"train": train_cfg, "insight": shipped, "quick": args.quick,
                                          "seeds": args.seeds, "n": args.n, "phantom_seed": args.phantom_seed},
               "sets": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in args.sets:
            phantom = BagPhantomConfig(n=args.n, grid=args.grid, seed=args.phantom_seed, **SETS[set_name])
            folder = Path(tmp) / set_name
            generate_bags(folder, phantom, progress=False)
            data = load_set(folder)
            per: dict[str, list[dict[str, Any]]] = {}
            for name, (aggregator, kwargs) in methods.items():
                if name.removesuffix(args.suffix).startswith("insight_") and set_name not in args.ablation_sets:
                    continue
                for seed in args.seeds:
                    row = run_method(aggregator, kwargs, train_cfg, data, seed)
                    if "gated" in row:
                        per.setdefault(GATED + args.suffix, []).append(
                            {**row.pop("gated"), "seconds": row["seconds"], "seed": seed}
                        )
                    per.setdefault(name, []).append(row)
                    print(f"{set_name:8s} {name:20s} seed {seed}: AUC {row['auc']:.3f} Dice {row['dice']:.3f} "
                          f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
                results["sets"][set_name] = {
                    "phantom": phantom.model_dump(mode="json"),
                    "methods": {k: {"summary": _summary(v), "runs": v} for k, v in per.items()},
                }
                if save is not None:  # each finished method is on disk at once
                    save(results)
    return results


def merge(paths: list[Path]) -> dict[str, Any]:
    """One result from several runs' JSON files (e.g. one per seed or method, run in parallel).

    Runs of the same set and method are pooled and their summaries recomputed; the configs of
    the first file are kept, with the seeds of all files.
    """
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out: dict[str, Any] = {"config": {**parts[0]["config"], "merged_from": [str(p) for p in paths]}, "sets": {}}
    out["config"]["seeds"] = sorted({s for part in parts for s in part["config"]["seeds"]})
    for part in parts:
        for set_name, block in part["sets"].items():
            dst = out["sets"].setdefault(set_name, {"phantom": block["phantom"], "methods": {}})
            for name, entry in block["methods"].items():
                dst["methods"].setdefault(name, {"runs": []})["runs"].extend(entry["runs"])
    for block in out["sets"].values():
        for entry in block["methods"].values():
            entry["runs"].sort(key=lambda r: r.get("seed", 0))
            entry["summary"] = _summary(entry["runs"])
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results as README-style tables."""
    lines = ["# MIL context benchmark (phantom bags)", ""]
    cfg = results["config"]
    lines.append(f"Seeds {cfg['seeds']}, {cfg['n']} cases per set, phantom seed {cfg.get('phantom_seed', 0)}; "
                 "AUC and tile Dice: mean ± sd over seeds, [95% CI of the first seed].")  # fmt: skip
    for set_name, block in results["sets"].items():
        lines += [
            "",
            f"## {set_name}",
            "",
            "| method | seeds | test AUC | tile Dice | seconds |",
            "|---|---|---|---|---|",
        ]
        for name, entry in block["methods"].items():
            s = entry["summary"]
            lines.append(
                f"| {name} | {len(entry['runs'])} | {s['auc']:.3f} ± {s['auc_sd']:.3f} [{s['auc_lo']:.2f}, {s['auc_hi']:.2f}] "
                f"| {s['dice']:.3f} ± {s['dice_sd']:.3f} [{s['dice_lo']:.2f}, {s['dice_hi']:.2f}] | {s['seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sets, 1 seed, few epochs (smoke test)")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--sets", nargs="+", choices=tuple(SETS))
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    p.add_argument("--ablation-sets", nargs="+", default=["default"], help="sets on which the INSIGHT ablations run")
    p.add_argument("--n", type=int, help="cases per set (default 160; quick 24)")
    p.add_argument(
        "--phantom-seed",
        type=int,
        default=0,
        help="seed of the phantom draw (0: the evaluation draw; choose settings on another)",
    )
    p.add_argument("--epochs", type=int, help="cut the shipped config's epochs to this (patience scaled with it)")
    p.add_argument("--grid", type=int, help="tile grid side (default 16; quick 10)")
    p.add_argument("--train-kwargs", type=json.loads, help="JSON of MILTrainConfig overrides (an ablation)")
    p.add_argument("--insight-kwargs", type=json.loads, help="JSON of INSIGHT overrides (an ablation)")
    p.add_argument("--suffix", default="", help="appended to every method's name (to tell ablation runs apart)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--merge", nargs="+", type=Path, help="merge these result JSONs into --out/mil_context.* and stop")
    args = p.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.sets = args.sets or (["default"] if args.quick else ["default", "weak", "small"])
    args.n = args.n or (24 if args.quick else 160)
    args.grid = args.grid or (10 if args.quick else 16)
    if args.quick:
        SETS.update({k: {**v, "cluster": (3, 6), "lookalikes": (2, 6)} for k, v in SETS.items()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "mil_context_quick" if args.quick else "mil_context"
    from medwss.runinfo import write_results

    if args.merge:
        merged = merge(args.merge)
        write_results(out, name, merged, markdown(merged), echo=False)
        print(f"merged {len(args.merge)} files into {out / name}.json and .md")
        return 0

    def save(results: dict[str, Any]) -> None:
        write_results(out, name, results, markdown(results), echo=False)

    save(run(args, save))
    print(f"wrote {out / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
