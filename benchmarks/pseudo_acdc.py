"""AGMM pseudo-labels from the real ACDC scribbles against partial CE on the scribbles alone.

Usage:
    python benchmarks/pseudo_acdc.py [--data DIR] [--quick] [--seeds 3] [--out DIR] [--work DIR]
        [--iterations N] [--confidence C] [--resume RESULTS.json] [--no-test --tag NAME]
        [--settings pce agmm agmm_reach reach] [--reach-mm 20] [--dense-loss ce_dice|partial_ce]

Data: ``DIR/mri/acdc`` (default ``../shared/data/real``), read through its manifest (the same
loaders, splits and patients as ``benchmarks/scribble_acdc.py``): 120 short-axis cine volumes of 60
patients with dense labels (0 background, 1 RV, 2 myocardium, 3 LV) and the real scribbles of
Valvano et al. (-1 = not scribbled); train 40 patients (80 volumes), val 10 (20 volumes, epoch
selection only, as in the scribble benchmark), test 10 (20 volumes, never looked at while choosing
settings — the AGMM network settings in ``configs/pseudo_acdc_agmm.yaml`` were not tuned).

Settings, each with ``--seeds`` seeds (0..n-1), trained by the one scribble workflow
(`medwss.scribble.workflow.train_model` with ``configs/scribble_acdc_pce.yaml``: a 2D MONAI UNet
8/16/32/64 on every slice of the whole field of view resized to 128 × 128, 4 epochs), so its figures
compare with ``benchmarks/scribble_acdc.py``:

- ``pce``: the scribbles themselves (partial CE; the baseline). It is the very training of
  ``benchmarks/scribble_acdc.py`` (same config, split and seeds), so in full mode its per-volume
  scores are read from ``benchmarks/results/scribble_acdc.json`` when that run's pce config matches
  (``--retrain-pce`` trains it here);
- ``agmm``: the scribbles → ``medwss pseudo agmm`` (the registry method ``agmm``, config
  ``configs/pseudo_acdc_agmm.yaml`` with ``reach_mm`` off: a small network trained with pCE + the
  Gaussian-mixture term on the training volumes, argmax where its posterior reaches ``confidence``,
  -1 elsewhere) → dense pseudo-labels on the stored grid → the segmenter trained on them with
  ``--dense-loss`` (default ``ce_dice``, the loss of full supervision; abstained pixels ignored);
- ``agmm_reach``: the same AGMM network (shared per seed), its labels with every pixel farther than
  ``--reach-mm`` (default the config's ``reach_mm``, 20) from the slice's foreground scribbles set to
  background (`medwss.pseudo.agmm.within_reach`): ACDC's background scribbles lie within ~15 px of
  the heart, so the far field is unsupervised and bright tissue there took the LV's label;
- ``reach`` (ablation, no AGMM): the scribbles with the same far-field background, on the stored
  grid, trained with ``--dense-loss`` — does the gain come from AGMM or from the spatial prior?

The reach (10 / 20 / 30 mm) and the dense loss were chosen with ``--no-test`` on seed 0's val Dice
(20 and 30 tied for ``agmm_reach``; 20 was better for ``reach``); partial CE on the AGMM labels
(the earlier protocol, results ``pseudo_acdc_v1``) collapsed to background.

Also reported: the AGMM pseudo-labels' own quality on the training volumes (per-class Dice/IoU where
labelled, coverage; `medwss.pseudo.metrics`), and, for reference, the ``full`` / ``size`` rows of
``benchmarks/results/scribble_acdc.json`` when that file is there (same split, size, epochs and
seeds; a different run). Test scores: per volume and class, `medwss.eval.overlap` Dice on the stored
grid; mean over seeds ± sd and a 95 % bootstrap interval over the 10 test patients (each patient's
two volumes averaged) of the seed-averaged scores; the paired difference agmm − pce likewise.

``--resume FILE`` keeps the seeds an earlier run of the same configs finished (their rows are
copied, nothing retrained; a config that differs stops the run naming the field), so a run cut
short by the shared CPU goes on where it stopped. ``--no-test --tag NAME`` is for choosing
settings: it trains as usual and reports only the val Dice of the scribble workflow's epoch
selection and the pseudo-labels' quality on the training volumes, never touching the test volumes
(results ``pseudo_acdc_NAME``); ``--iterations`` / ``--confidence`` override the AGMM config.

What was cut to fit a shared CPU: everything the scribble benchmark cuts (128 × 128, small UNet, 4
epochs, one split), and the AGMM network trains on slices resized to 64 × 64 (``--agmm-size``,
its labels are pasted back onto the stored grid) for ``iterations`` steps of 4 slices.
``--quick`` (smoke test): 2 training, 1 val and 2 test volumes, AGMM at 32 × 32 for 3 steps, the
UNet at 64 × 64 (4/8/16) for one epoch, one seed. Results:
``benchmarks/results/pseudo_acdc[_quick].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTINGS = ("pce", "agmm", "agmm_reach", "reach", "reach_size")
CLASSES = ("RV", "myocardium", "LV")
KEYS = tuple(f"dice_{n}" for n in CLASSES) + ("dice_mean",)


def _scribble_bench() -> dict[str, Any]:
    """The scoring helpers of benchmarks/scribble_acdc.py (one copy of them)."""
    import runpy

    return runpy.run_path(str(ROOT / "benchmarks" / "scribble_acdc.py"))


def agmm_pseudo_labels(
    train: list[Any], cfg: Any, out: Path, seed: int, labels_dir: str = "labels"
) -> tuple[list[Any], dict[str, Any], list[str]]:
    """AGMM through the registry on the training cases; label files written; new cases point at them.

    The network trains from and to ``out`` (so ``agmm`` and ``agmm_reach`` of one seed share it:
    ``reach_mm`` only gates its labels); the labels go to ``out/labels_dir``."""
    from medwss.pseudo.methods import MethodOptions, run_method
    from medwss.pseudo.workflow import load_cases

    c = cfg.model_copy(update={"seed": seed})
    cases, failed = load_cases(train, c)
    labels, _ = run_method("agmm", cases, c, MethodOptions(out_dir=out))
    return written_labels(train, cases, labels, failed, out / labels_dir, len(c.classes()), c.classes())


def reach_labels(train: list[Any], out: Path, reach_mm: float) -> tuple[list[Any], dict[str, Any], list[str]]:
    """The ablation without AGMM: ``medwss pseudo reach`` (configs/pseudo_acdc_reach.yaml, `reach_mm`) on the
    stored in-plane grid: each scribble map with every pixel beyond `reach_mm` of the foreground ones background."""
    from medwss.config import load_config
    from medwss.pseudo.config import ReachPseudoConfig
    from medwss.pseudo.methods import MethodOptions, run_method
    from medwss.pseudo.workflow import load_cases

    c = load_config(ROOT / "configs" / "pseudo_acdc_reach.yaml", ReachPseudoConfig)
    c = c.model_copy(update={"reach_mm": reach_mm, "device": "cpu"})
    cases, failed = load_cases(train, c)
    labels, _ = run_method("reach", cases, c, MethodOptions())
    return written_labels(train, cases, labels, failed, out, len(c.classes()), c.classes())


def written_labels(
    train: list[Any], cases: list[Any], labels: list[Any], failed: list[str], folder: Path, k: int, names: Any
) -> tuple[list[Any], dict[str, Any], list[str]]:
    """Write each case's label slices onto its stored grid under `folder`; the cases pointing at them as
    their scribbles, the labels' quality against the masks (where labelled) and the failures."""
    from medwss.data.labels import save_label_map
    from medwss.pseudo.metrics import pseudo_label_metrics

    done = [(sc, labs) for sc, labs in zip(cases, labels, strict=True) if labs is not None and sc.gts is not None]
    failed += [f"{sc.case_id}: no pseudo-labels" for sc, labs in zip(cases, labels, strict=True) if labs is None]
    preds = [lab for _, labs in done for lab in labs]
    gts = [g for sc, _ in done for g in (sc.gts or [])]
    quality = pseudo_label_metrics(preds, gts, k, names)
    by_id = {sc.case_id: (sc, labs) for sc, labs in done}
    new_cases = []
    for case in train:
        if case.case_id not in by_id:
            continue
        sc, labs = by_id[case.case_id]
        path = folder / f"{case.case_id}.nii.gz"
        save_label_map(sc.to_source(labs), path, sc.affine)
        new_cases.append(replace(case, scribble=path))
    return new_cases, quality, failed


def run(args: argparse.Namespace, on_round: Any = None) -> dict[str, Any]:
    import torch

    from medwss.config import load_config
    from medwss.data.manifest import load_manifest
    from medwss.io import load_volume
    from medwss.pseudo.config import AgmmPseudoConfig
    from medwss.scribble.config import ScribbleConfig
    from medwss.scribble.workflow import predict_cases, train_model

    torch.set_num_threads(1)
    sb = _scribble_bench()
    src = Path(args.data) / "mri" / "acdc" / "manifest.csv"
    if not src.is_file():
        raise SystemExit(f"ACDC manifest not found: {src} (give --data DIR holding mri/acdc/)")
    manifest = load_manifest(src)
    train, val, test = manifest.split("train"), manifest.split("val"), manifest.split("test")
    seeds = [0] if args.quick else list(range(args.seeds))
    scfg = load_config(ROOT / "configs" / "scribble_acdc_pce.yaml", ScribbleConfig)
    pcfg = load_config(ROOT / "configs" / "pseudo_acdc_agmm.yaml", AgmmPseudoConfig)
    s_over: dict[str, Any] = {"device": "cpu"} | ({} if args.epochs is None else {"epochs": args.epochs})
    p_over: dict[str, Any] = {"device": "cpu", "slice_size": args.agmm_size}
    if args.iterations is not None:
        p_over["iterations"] = args.iterations
    if args.confidence is not None:
        p_over["confidence"] = args.confidence
    if args.quick:
        train, val, test = train[:2], val[:1], test[:2]
        s_over |= {"epochs": 1, "slice_size": 64, "channels": (4, 8, 16)}
        p_over |= {"slice_size": 32, "iterations": 3}
    size_cfg = load_config(ROOT / "configs" / "scribble_acdc_size.yaml", ScribbleConfig).model_copy(update=s_over)
    scfg, pcfg = scfg.model_copy(update=s_over), pcfg.model_copy(update=p_over)
    if args.reach_mm is None:
        args.reach_mm = pcfg.reach_mm if pcfg.reach_mm is not None else 20.0
    work = Path(args.work or tempfile.mkdtemp(prefix="pseudo_acdc_"))
    gts = {c.case_id: load_volume(c.mask).array.astype(np.int64) for c in test if c.mask is not None}
    per_case: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    cache: dict[str, Any] = {}
    t_all, cpu_all = time.time(), time.process_time()
    record: dict[str, Any] = {}
    reused = [] if args.quick or args.retrain_pce else reused_pce(scfg, seeds, {c.case_id for c in test}, args.pce_from)
    refs = [] if args.quick else reference_cases(args.pce_from, seeds, {c.case_id for c in test})
    per_case += reused
    kept = resumed(args, scfg, pcfg, seeds)
    if kept:
        print(f"seeds {kept['seeds']} kept from {args.resume}", flush=True)
        per_case = [r for r in per_case if r["seed"] not in kept["seeds"]] + kept["per_case"]
        runs, quality = kept["runs"], kept["pseudo_quality"]
    names = args.settings or SETTINGS
    for seed in seeds:
        for name in names if seed not in (kept or {}).get("seeds", []) else ():
            t0 = time.process_time()
            if name == "pce" and any(r["seed"] == seed for r in reused):
                rows = [r for r in reused if r["seed"] == seed]
                runs.append({"setting": name, "seed": seed, "cpu_seconds": None, "best_val_dice": None, "failed": [],
                             "dice_mean": sb["_mean"]([r["dice_mean"] for r in rows]), "from": str(args.pce_from)})  # fmt: skip
                continue
            cases, failed = train, list[str]()
            if name != "pce":
                cases, q, failed = made_labels(name, train, pcfg, work, seed, args.reach_mm)
                quality.append({"setting": name, "seed": seed, "cpu_seconds": round(time.process_time() - t0, 1), **q})
                print(f"{name} labels seed {seed}: mean Dice {q['mean_dice']:.3f}, coverage {q['coverage']:.3f}")
            out = work / name / f"seed_{seed}"
            if name == "reach_size":  # the size setting (its own loss + the size penalty) on the reach labels
                setting = size_cfg.model_copy(update={"seed": seed, "loss": args.size_loss})
            else:  # dense labels: the loss of full supervision
                setting = scfg.model_copy(
                    update={"seed": seed, "loss": scfg.loss if name == "pce" else args.dense_loss}
                )
            summary = train_model(manifest, setting, out, cases, val,
                                  progress=False, cache=cache)  # fmt: skip
            t_train = time.process_time() - t0
            if args.no_test:  # choosing settings: the val Dice of train_model only, the test volumes untouched
                runs.append({"setting": name, "seed": seed, "cpu_seconds": round(t_train, 1), "failed": failed,
                             "best_val_dice": summary["best_val_dice"], "dice_mean": float("nan")})  # fmt: skip
                print(f"{name} seed {seed}: best val Dice {summary['best_val_dice']:.3f}", flush=True)
                continue
            pred = predict_cases(manifest, test, [out / "model.pt"], out, progress=False, device="cpu")
            for case in test:
                p = out / "predictions" / f"{case.case_id}.nii.gz"
                if not p.exists() or case.case_id not in gts:
                    continue
                row = {"setting": name, "seed": seed, "case_id": case.case_id, "patient_id": case.patient_id}
                scores = sb["score_volume"](load_volume(p).array.astype(np.int64), gts[case.case_id])
                per_case.append(row | {k: scores[k] for k in KEYS})
            rows = [r for r in per_case if r["setting"] == name and r["seed"] == seed]
            runs.append(
                {"setting": name, "seed": seed, "cpu_seconds": round(t_train, 1),
                 "best_val_dice": summary["best_val_dice"], "failed": failed + pred["failed"],
                 "dice_mean": sb["_mean"]([r["dice_mean"] for r in rows])}
            )  # fmt: skip
            print(f"{name} seed {seed}: test Dice {runs[-1]['dice_mean']:.3f} ({t_train:.0f} s CPU)", flush=True)
        done = seeds[: seeds.index(seed) + 1]
        record = {
            "quick": args.quick, "data": str(src), "seeds": done, "seeds_planned": seeds, "n_train": len(train),
            "n_val": len(val), "n_test": len(test), "scribble_config": scfg.model_dump(mode="json"),
            "pseudo_config": pcfg.model_dump(mode="json"), "reach_mm": args.reach_mm, "dense_loss": args.dense_loss, "size_loss": args.size_loss, "runs": runs,
            "pseudo_quality": quality,
            "summary": summarise(sb, per_case, done), "paired": paired(sb, per_case + refs),
            "reference": [] if args.quick else reference_rows(args.pce_from), "per_case": per_case,
            "seconds": round(time.time() - t_all, 1), "cpu_seconds": round(time.process_time() - cpu_all, 1),
        }  # fmt: skip
        if on_round is not None:
            on_round(record)
    return record


PCE_FROM = ROOT / "benchmarks" / "results" / "scribble_acdc.json"


def made_labels(
    name: str, train: list[Any], pcfg: Any, work: Path, seed: int, reach_mm: float
) -> tuple[list[Any], dict[str, Any], list[str]]:
    """The training labels of setting `name` (agmm, agmm_reach, reach) for `seed`, written under `work`."""
    if name in ("reach", "reach_size"):
        return reach_labels(train, work / "reach_labels" / f"seed_{seed}", reach_mm)
    cfg = pcfg.model_copy(update={"reach_mm": reach_mm if name == "agmm_reach" else None})
    folder = "labels_reach" if name == "agmm_reach" else "labels"
    return agmm_pseudo_labels(train, cfg, work / "agmm_labels" / f"seed_{seed}", seed, folder)


def resumed(args: argparse.Namespace, scfg: Any, pcfg: Any, seeds: list[int]) -> dict[str, Any] | None:
    """With ``--resume FILE``: the seeds an earlier run of the same configs finished (kept, not retrained)."""
    if not args.resume:
        return None
    path = Path(args.resume)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: cannot read the run to resume ({e})") from None
    for key, cfg in (("scribble_config", scfg), ("pseudo_config", pcfg)):
        theirs, mine = rec.get(key, {}), cfg.model_dump(mode="json")
        diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k) and k != "device")
        if diff:
            raise SystemExit(f"{path}: its {key} differs from this run's in {', '.join(diff)}; not resumed")
    done = [s for s in rec.get("seeds", []) if s in seeds]
    return {
        "seeds": done,
        "per_case": [r for r in rec.get("per_case", []) if r["seed"] in done],
        "runs": [r for r in rec.get("runs", []) if r["seed"] in done],
        "pseudo_quality": [q for q in rec.get("pseudo_quality", []) if q["seed"] in done],
    }


def reused_pce(scfg: Any, seeds: list[int], test_ids: set[str], source: Path = PCE_FROM) -> list[dict[str, Any]]:
    """The pce per-volume test scores of benchmarks/scribble_acdc.py's run, when its pce config is ours.

    The baseline is the same training (same config, split, seeds), so it is read back instead of
    trained again (``--retrain-pce`` trains it); a seed missing there is trained here.
    """
    if not source.is_file():
        return []
    try:
        rec = json.loads(source.read_text())
    except (OSError, ValueError):
        return []
    theirs = rec.get("configs", {}).get("pce", {})
    mine = scfg.model_dump(mode="json")
    keys = ("slice_size", "epochs", "channels", "loss", "batch_size", "lr", "negative_slices", "augment")
    if any(theirs.get(k) != mine.get(k) for k in keys):
        print(f"{source}: its pce config differs from configs/scribble_acdc_pce.yaml; pce is retrained")
        return []
    rows = [r for r in rec.get("per_case", []) if r.get("setting") == "pce" and r.get("seed") in seeds]
    rows = [r | {"from": "scribble_acdc"} for r in rows if r["case_id"] in test_ids]
    return [{k: r[k] for k in ("setting", "seed", "case_id", "patient_id", *KEYS)} for r in rows]


def summarise(sb: dict[str, Any], per_case: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """Per setting: per-class and mean Dice, mean ± sd over seeds and CI over test patients."""
    out = []
    for name in SETTINGS:
        rows = [r for r in per_case if r["setting"] == name]
        if not rows:
            continue
        row: dict[str, Any] = {"setting": name}
        for k in KEYS:
            per_seed = [sb["_mean"]([r[k] for r in rows if r["seed"] == s]) for s in seeds]
            m, lo, hi = sb["patient_ci"](per_case, name, k)
            row |= {k: m, f"{k}_lo": lo, f"{k}_hi": hi, f"{k}_sd": float(np.std(per_seed)) if len(seeds) > 1 else None}
        out.append(row)
    return out


PAIRS = (("agmm", "pce"), ("agmm_reach", "pce"), ("reach", "pce"), ("agmm_reach", "reach"), ("agmm_reach", "agmm"),
         ("reach_size", "pce"), ("reach_size", "reach"), ("reach_size", "size"), ("reach", "size"),
         ("reach_size", "full"), ("reach", "full"), ("agmm_reach", "full"))  # fmt: skip
"""Paired differences reported when both settings ran; ``size`` and ``full`` are the reference run's volumes."""


def paired(sb: dict[str, Any], per_case: list[dict[str, Any]]) -> dict[str, Any]:
    """a − b mean Dice per test volume (seed-averaged), 95 % CI over patients, for the `PAIRS` both run."""
    from medwss.eval.metrics import paired_mean_ci

    out = {}
    for a, b in PAIRS:
        (ma, patient), (mb, _) = sb["seed_means"](per_case, a), sb["seed_means"](per_case, b)
        m, lo, hi, n = paired_mean_ci(ma, mb, patient)
        if not n:
            continue
        out[f"{a}-{b}"] = {"dice_mean_diff": m, "lo": lo, "hi": hi}
        if b == "full":
            common = sorted(set(ma) & set(mb))
            out[f"{a}/full"] = {"ratio": float(np.mean([ma[c] for c in common]) / np.mean([mb[c] for c in common]))}
    return out


def merge(paths: list[Path], pce_from: Path) -> dict[str, Any]:
    """One record from runs of other settings on the same seeds and test volumes (the first file's header)."""
    recs = [json.loads(Path(p).read_text()) for p in paths]
    base = recs[0]
    if any(r["seeds"] != base["seeds"] for r in recs):
        raise SystemExit(f"{', '.join(map(str, paths))}: the runs have different seeds; not merged")
    seen: set[tuple[str, int]] = set()
    keys = ("per_case", "runs", "pseudo_quality")
    rec = {**base, **{k: [] for k in keys}, "merged_from": [str(p) for p in paths]}
    for r in recs:
        new = {(x["setting"], x["seed"]) for x in r["runs"]} - seen
        for k in keys:
            rec[k] += [x for x in r[k] if (x.get("setting", "agmm"), x["seed"]) in new]
        seen |= new
    for k in ("reach_mm", "dense_loss", "size_loss", "cpu_seconds", "seconds"):
        vals = [r.get(k) for r in recs if r.get(k) is not None]
        rec[k] = sum(vals) if k in ("cpu_seconds", "seconds") else (vals[0] if vals else None)
    sb = _scribble_bench()
    ids = {x["case_id"] for x in rec["per_case"]}
    rec["summary"] = summarise(sb, rec["per_case"], rec["seeds"])
    rec["paired"] = paired(sb, rec["per_case"] + reference_cases(pce_from, rec["seeds"], ids))
    return rec


def reference_cases(path: Path, seeds: list[int], test_ids: set[str]) -> list[dict[str, Any]]:
    """The full / size per-volume test scores of a scribble_acdc results file (for paired differences)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    rows = [r for r in rec.get("per_case", []) if r.get("setting") in ("full", "size") and r.get("seed") in seeds]
    return [
        {k: r[k] for k in ("setting", "seed", "case_id", "patient_id", *KEYS)} for r in rows if r["case_id"] in test_ids
    ]


def reference_rows(path: Path = PCE_FROM) -> list[dict[str, Any]]:
    """The full / size rows of a scribble_acdc results file (another run), if present."""
    if not path.is_file():
        return []
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rec.get("summary", []) if r.get("setting") in ("full", "size")]


def _f(v: float | None) -> str:
    """A figure to 3 decimals; n/a for a missing one (NaN reads back from the JSON as null)."""
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{v:.3f}"


def markdown(record: dict[str, Any]) -> str:
    _cell = _scribble_bench()["_cell"]  # the scribble benchmark's cell: mean ± sd [CI]
    reach, loss = record.get("reach_mm"), record.get("dense_loss", "partial_ce")
    names = {"pce": "scribbles, partial CE (baseline)", "agmm": f"AGMM pseudo-labels, {loss}",
             "agmm_reach": f"AGMM pseudo-labels, background beyond {reach} mm of the scribbles, {loss}",
             "reach": f"scribbles + background beyond {reach} mm of them (no AGMM), {loss}",
             "reach_size": f"scribbles + background beyond {reach} mm, {record.get('size_loss')} + size (tag prior)"}  # fmt: skip
    ref = {"full": "full supervision (scribble_acdc run)", "pce": "scribbles, partial CE (scribble_acdc run)",
           "size": "scribbles, partial CE + size (scribble_acdc run)"}  # fmt: skip
    lines = [
        f"# ACDC: AGMM pseudo-labels from the real scribbles ({'quick' if record['quick'] else 'full'} run)",
        "",
        f"Train {record['n_train']} / val {record['n_val']} / test {record['n_test']} volumes; seeds "
        f"{record['seeds']} (of {record['seeds_planned']} planned); {record['cpu_seconds']:.0f} s CPU "
        f"({record['seconds']:.0f} s wall). Test Dice per volume on the stored grid; mean over seeds ± sd "
        "[95% bootstrap CI over test patients].",
        "",
        "| setting | Dice RV | Dice Myo | Dice LV | Dice mean |",
        "|---|---|---|---|---|",
    ]
    for r in record["summary"]:
        lines.append(f"| {names[r['setting']]} | " + " | ".join(_cell(r, k) for k in KEYS) + " |")
    for r in record.get("reference", []):
        lines.append(f"| {ref[r['setting']]} | " + " | ".join(_cell(r, k) for k in KEYS) + " |")
    for k, v in record["paired"].items():
        if "ratio" in v:
            lines += ["", f"Ratio {k} (mean Dice of the same test volumes): {100 * v['ratio']:.1f} %"]
            continue
        lines += ["", f"Paired {k} (mean Dice, seed-averaged, 95% CI over patients): "
                  f"{v['dice_mean_diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"]  # fmt: skip
    lines += ["", "Training labels on the training volumes (Dice/IoU where labelled, at the slice size they are made at):",
              "", "| labels | seed | Dice RV | Dice Myo | Dice LV | mean Dice (incl. background) | mIoU | coverage | CPU s |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for q in record["pseudo_quality"]:
        pc = q["per_class"]
        cells = [_f(pc[n]["dice"]) for n in CLASSES] + [_f(q["mean_dice"]), _f(q["miou"]), _f(q["coverage"])]
        lines.append(
            f"| {q.get('setting', 'agmm')} | {q['seed']} | " + " | ".join(cells) + f" | {q['cpu_seconds']:.0f} |"
        )
    lines += ["", "| setting | seed | test Dice | best val Dice | CPU s |", "|---|---|---|---|---|"]
    for r in record["runs"]:
        bv = r["best_val_dice"]
        cpu = "from scribble_acdc" if r["cpu_seconds"] is None else f"{r['cpu_seconds']:.0f}"
        lines.append(f"| {r['setting']} | {r['seed']} | {_f(r['dice_mean'])} | {_f(bv)} | {cpu} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real"), help="folder holding mri/acdc/")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few volumes, tiny networks, one seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 (default 3)")
    ap.add_argument("--agmm-size", type=int, default=64, help="slice side of the AGMM network (default 64)")
    ap.add_argument("--iterations", type=int, help="override the AGMM config's training steps")
    ap.add_argument("--confidence", type=float, help="override the AGMM config's confidence threshold")
    ap.add_argument("--resume", help="an earlier results JSON of the same configs: its finished seeds are kept")
    ap.add_argument("--no-test", action="store_true",
                    help="choose settings: train and report the val Dice only (results pseudo_acdc_<tag>)")  # fmt: skip
    ap.add_argument("--tag", help="results file stem suffix (pseudo_acdc_<tag>.json)")
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, help="only these settings (default: all)")
    ap.add_argument("--reach-mm", type=float,
                    help="agmm_reach / reach: background beyond this distance (mm) from the foreground scribbles "
                    "(default: the AGMM config's reach_mm)")  # fmt: skip
    ap.add_argument("--dense-loss", default="ce_dice", choices=("ce_dice", "partial_ce"),
                    help="loss of the segmenter trained on pseudo-labels (default ce_dice, as full supervision)")  # fmt: skip
    ap.add_argument("--size-loss", default="partial_ce", choices=("ce_dice", "partial_ce"),
                    help="reach_size: the loss beside the size penalty (default partial_ce, as scribble_acdc_size.yaml)")  # fmt: skip
    ap.add_argument("--merge", nargs="+", type=Path,
                    help="combine the settings of these result JSONs (same seeds and test volumes) into one and stop")  # fmt: skip
    ap.add_argument("--retrain-pce", action="store_true", help="train pce here, not read from --pce-from")
    ap.add_argument("--epochs", type=int, help="override the segmenter's epochs (4 in configs/scribble_acdc_pce.yaml)")
    ap.add_argument("--pce-from", type=Path, default=PCE_FROM,
                    help="scribble_acdc results whose pce (and full/size reference) rows are read back (same config)")  # fmt: skip
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    ap.add_argument("--work", help="work folder for models and labels (default: a temporary folder)")
    args = ap.parse_args(argv)
    from medwss.runinfo import write_results

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "pseudo_acdc_quick" if args.quick else "pseudo_acdc"
    if args.tag:
        stem += f"_{args.tag}"

    def save(record: dict[str, Any]) -> None:  # after every seed: an interrupted run keeps its tables
        write_results(out, stem, record, markdown(record), echo=False)

    if args.merge:
        record = merge(args.merge, args.pce_from)
        save(record)
        print(f"merged {len(args.merge)} files into {out / stem}.json and .md")
        return 0
    record = run(args, on_round=save)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
