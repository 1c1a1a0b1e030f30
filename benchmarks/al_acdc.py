"""Active learning on ACDC short-axis slices: learning curves of every strategy, full masks and real scribbles.

Usage:
    python benchmarks/al_acdc.py [--data DIR] [--quick] [--seeds 0 1 2] [--size 80] [--out DIR] [--work DIR]
        [--skip-ablation] [--skip-curves] [--ablation-seeds 0 1 2 3 4] [--tag TAG]

Data: ``DIR/mri/acdc`` (default ``../shared/data/real``): 120 cine volumes of 60 patients with
dense labels (1 RV, 2 myocardium, 3 LV) and the real scribbles of Valvano et al. (-1 = not
scribbled), split by patient as in ``benchmarks/scribble_acdc.py`` (the manifest's ``split``):
train 40 patients (80 volumes) = the pool, val 10 (ablations and settings only), test 10 (the curves).

Protocol (the one simulation loop, `medwss.active.simulate`, configured by ``configs/al_acdc.yaml``):
every volume is cropped to the central 75 % of each in-plane axis (it holds every labelled voxel)
and resized to ``--size`` × ``--size`` (default 48; images by area averaging,
dense labels by area-weighted vote, scribbles by "any scribbled pixel of the footprint", so thin
scribble lines survive), written to ``--work`` as NIfTI with a manifest. The pool is every slice of
the 80 training volumes; rounds grow the annotated set to 1, 2, 3, 4, 5 % and then 10 and 20 % of
it. After each round a fresh small 2D UNet (8/16/32 channels) is trained on every annotated slice
(full: CE + Dice; scribble: partial CE + the oracle size penalty, true size ±10 %) and scored by 3D
Dice (mean over RV, myocardium, LV) on the 20 test volumes at the resized grid. Scribble mode uses
the real ACDC scribbles of a picked slice (``weak_kind: manifest``). Strategies: random, coreset
(k-center on an untrained encoder), contrastive coreset (k-center in the learned metric), entropy,
margin, BALD, TypiClust; 3 seeds. Intervals: 95 % bootstrap over the 10 test patients of the
seed-averaged per-volume Dice (`medwss.eval.metrics.mean_ci`), and paired differences against
random and against plain coreset.

Diagnosis of the contrastive metric (never on test patients): with the pool as above, variants of
the metric (`ABLATIONS`: group positives off; intensity-preserving views; projection-head output;
32-d projection; 60 epochs; 48² thumbnails; temperature 0.1/0.2; every unrelated slice a negative;
adjacent-slice positives; group batches; fusion with the untrained encoder) are compared by what
their picks cover at 1–5 % (fraction of picked slices with foreground and with all three structures;
k-center radius in the untrained encoder's space) and by val Dice of the segmenter trained on the
picks (full masks), both averaged over ``--ablation-seeds``; ``--ablation-variants`` limits the
entries run, ``--val-variants`` those given val-Dice runs. On 5 seeds no variant separates from the
shipped metric, and fusing the untrained encoder (chosen earlier on seed 0 alone) did not help, so the
config uses the learned metric alone (``fuse: {}``).

What was cut to fit a shared CPU: 48 × 48 crops instead of 256 × 256 slices, a 3-level UNet of
8/16/32 channels trained a fixed ``min_steps`` (150) steps per round (too few for the 10–20 %
rounds), a 15-epoch metric on 32 × 32 thumbnails, evaluation at the resized grid (not the stored
one), the ablation's val Dice at 1/3/5 % only (``--val-budgets``). One full run is ~7 min of wall
time per curve on the loaded 2-core machine; split it over processes with ``--strategies``,
``--modes`` and ``--seeds`` into one ``--work`` and build the tables with ``--assemble``.
``--quick`` (smoke test, ~20 s CPU): 4 training, 2 val and 2 test volumes at 32 × 32, rounds of 1
and 2 slices, random + contrastive coreset + coreset, one seed, 1-epoch metric, 5 segmenter steps. Results:
benchmarks/results/al_acdc[_quick].json/.md and al_acdc[_quick].png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["random", "coreset", "contrastive_coreset", "entropy", "margin", "bald", "typiclust"]
BUDGETS = ["1%", "2%", "3%", "4%", "5%", "10%", "20%"]
ABLATION_BUDGETS = ["1%", "2%", "3%", "4%", "5%"]
CLASSES = ("RV", "myocardium", "LV")
CROP = 0.75
"""Central fraction of each in-plane axis kept: every labelled voxel of all 120 volumes lies in it
(their extent is 14–80 % of the field of view), so no structure is cut."""


def _resize_volume(arr: np.ndarray, size: int, kind: str) -> np.ndarray:
    """``(X, Y, Z)`` → ``(size, size, Z)``: image by area averaging, labels by area vote, scribbles by any-hit."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 2, 0)))  # (Z, X, Y)
    if kind == "image":
        out = F.interpolate(x[:, None].float(), size=(size, size), mode="area")[:, 0].round().to(torch.int16)
        return np.moveaxis(out.numpy(), 0, 2)
    onehot = torch.stack([(x == c).float() for c in range(4)], 1)  # (Z, 4, X, Y)
    if kind == "label":
        frac = F.interpolate(onehot, size=(size, size), mode="area")
        out = frac.argmax(1)
    else:  # scribble: a structure wins where any of its pixels fell (structures before background), else -1
        hit = F.adaptive_max_pool2d(onehot, (size, size))  # (Z, 4, size, size)
        order = torch.tensor([1.0, 4.0, 3.0, 2.0])  # priority: RV, LV, myocardium over background
        score = hit * order[None, :, None, None]
        out = torch.where(hit.amax(1) > 0, score.argmax(1), torch.full_like(score[:, 0], -1).long())
    return np.moveaxis(out.numpy().astype(np.int16), 0, 2)


def prepare(data: Path, work: Path, size: int, limit: dict[str, int] | None = None, crop: float = CROP) -> Path:
    """ACDC cropped to the central `crop` of each in-plane axis and resized to `size` (images, labels,
    scribbles) as NIfTI plus a manifest; reused when present."""
    from medwss.data.manifest import load_manifest, write_manifest
    from medwss.errors import MedwssError
    from medwss.io import load_volume, save_nifti
    from medwss.io.volume import Volume

    src = data / "mri" / "acdc" / "manifest.csv"
    if not src.is_file():
        raise SystemExit(f"ACDC manifest not found: {src} (give --data DIR holding mri/acdc/)")
    target = work / f"acdc{size}_c{round(100 * crop)}" / "manifest.csv"
    if target.is_file():
        return target
    rows: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    for case in load_manifest(src):
        split = case.split or ""
        if limit is not None and taken.get(split, 0) >= limit.get(split, 0):
            continue
        try:
            paths = {}
            for kind, path in (("image", case.image), ("label", case.mask), ("scribble", case.scribble)):
                if path is None:
                    raise MedwssError(f"{case.case_id}: no {kind} file in the manifest")
                vol = load_volume(path)
                (nx, ny), m = vol.shape[:2], (1.0 - crop) / 2
                x0, y0 = round(m * nx), round(m * ny)
                cut = np.asarray(vol.array)[x0 : nx - x0, y0 : ny - y0]
                arr = _resize_volume(cut, size, kind)
                shift = np.eye(4)
                shift[:2, 3] = (x0, y0)
                scale = np.diag([cut.shape[0] / size, cut.shape[1] / size, 1.0, 1.0])
                out = target.parent / f"{case.case_id}_{kind}.nii.gz"
                save_nifti(Volume(arr, vol.affine @ shift @ scale), out)
                paths[kind] = str(out)
        except (MedwssError, OSError, ValueError) as exc:  # one bad case is skipped and reported
            print(f"skipped {case.case_id}: {exc}", file=sys.stderr)
            continue
        taken[split] = taken.get(split, 0) + 1
        rows.append(
            {"case_id": case.case_id, "patient_id": case.patient_id, "site": "acdc", "modality": "MR",
             "image": paths["image"], "mask": paths["label"], "scribble": paths["scribble"], "split": split}
        )  # fmt: skip
    return write_manifest(rows, target)


def base_config(quick: bool, seeds: list[int], test_split: str) -> Any:
    """``configs/al_acdc.yaml`` with the benchmark's split, seeds and (``--quick``) tiny settings."""
    from medwss.active.simulate import SimulateConfig
    from medwss.config import load_config

    cfg = load_config(ROOT / "configs" / "al_acdc.yaml", SimulateConfig)
    al = cfg.al.model_copy(update={"device": "cpu"})
    update: dict[str, Any] = {"seeds": seeds, "test_splits": [test_split], "al": al}
    if quick:
        al = al.model_copy(
            update={
                "thumb_size": 16,
                "metric": al.metric.model_copy(update={"epochs": 1, "batch_size": 8}),
                "seg": al.seg.model_copy(update={"epochs": 1}),
                "min_steps": 5,
            }
        )
        update |= {"al": al, "budgets": ["1", "2"]}
    return cfg.model_copy(update=update)


def boot_summary(rows: list[dict[str, Any]], patients: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """Per mode, strategy and round: mean Dice with a 95 % bootstrap interval over test patients
    (per-volume Dice averaged over seeds, then the patient's volumes averaged)."""
    from medwss.eval.metrics import mean_ci

    out = []
    for mode, strategy in sorted({(r["mode"], r["strategy"]) for r in rows}):
        sel = [r for r in rows if r["mode"] == mode and r["strategy"] == strategy]
        rounds = sorted({r["round"] for r in sel})
        s: dict[str, Any] = {"mode": mode, "strategy": strategy, "seeds": sorted({r["seed"] for r in sel})}
        s |= {"percent": [], "annotated": [], "dice_mean": [], "dice_lo": [], "dice_hi": [], "dice_seed_sd": []}
        for rd in rounds:
            rr = [r for r in sel if r["round"] == rd]
            per_patient = _per_patient(rr, patients)
            m, lo, hi = mean_ci(per_patient, seed=seed)
            s["percent"].append(float(np.mean([r["percent"] for r in rr])))
            s["annotated"].append(int(rr[0]["annotated"]))
            s["dice_mean"].append(m)
            s["dice_lo"].append(lo)
            s["dice_hi"].append(hi)
            s["dice_seed_sd"].append(float(np.std([r["dice"] for r in rr])))
        out.append(s)
    return out


def _per_patient(rows: list[dict[str, Any]], patients: list[str]) -> np.ndarray:
    """Seed-averaged per-volume Dice, averaged per patient: ``(P,)`` in `patients` order."""
    vol = np.mean([r["dice_per_volume"] for r in rows], axis=0)  # (V,)
    return np.array([vol[[i for i, p in enumerate(patients) if p == q]].mean() for q in dict.fromkeys(patients)])


def paired(rows: list[dict[str, Any]], patients: list[str], a: str, b: str, seed: int = 0) -> list[dict[str, Any]]:
    """Per mode and round: Dice of `a` − `b` (patients resampled together) and its 95 % bootstrap interval;
    round 0 = the mean over the rounds up to 5 %."""
    from medwss.eval.metrics import mean_ci

    res = []
    for mode in sorted({r["mode"] for r in rows}):
        ra = [r for r in rows if r["mode"] == mode and r["strategy"] == a]
        rb = [r for r in rows if r["mode"] == mode and r["strategy"] == b]
        common = {r["seed"] for r in ra} & {r["seed"] for r in rb}  # paired on the seeds both have
        ra = [r for r in ra if r["seed"] in common]
        rb = [r for r in rb if r["seed"] in common]
        if not ra or not rb:
            continue
        diffs: dict[int, np.ndarray] = {}
        for rd in sorted({r["round"] for r in ra}):
            xa = _per_patient([r for r in ra if r["round"] == rd], patients)
            xb = _per_patient([r for r in rb if r["round"] == rd], patients)
            diffs[rd] = xa - xb
        low = [rd for rd in diffs if ra[[r["round"] for r in ra].index(rd)]["percent"] <= 5.5]
        if low:
            diffs[0] = np.mean([diffs[rd] for rd in low], axis=0)
        for rd, d in sorted(diffs.items()):
            m, lo, hi = mean_ci(d, seed=seed)
            res.append({"mode": mode, "a": a, "b": b, "round": rd, "diff": m, "lo": lo, "hi": hi,
                        "seeds": sorted(common)})  # fmt: skip
    return res


def coverage(picks: list[int], pool: Any, fg: np.ndarray, allc: np.ndarray, untrained: np.ndarray) -> dict[str, float]:
    """What a set of picked slices covers: foreground and all-structure fractions, k-center radius
    (max over the pool of the distance to the nearest pick) in the untrained encoder's space."""
    import torch

    u = torch.from_numpy(untrained)
    d = torch.cdist(u, u[picks]).amin(1)
    return {
        "picked": len(picks),
        "foreground_fraction": float(fg[picks].mean()),
        "all_structures_fraction": float(allc[picks].mean()),
        "kcenter_radius_untrained": float(d.max()),
        "mean_distance_untrained": float(d.mean()),
        "volumes_covered": len({pool.refs[i].volume for i in picks}),
    }


ABLATIONS: dict[str, dict[str, Any]] = {
    "shipped metric": {},
    "no group positives": {"volume_weight": 0.0, "patient_weight": 0.0},
    "intensity-preserving views": {"augment": {"brightness": 0.0, "contrast": 0.0, "gamma": 0.0}},
    "projection-head output": {"select_features": "projection"},
    "32-d projection": {"projection_dim": 32},
    "shipped metric fused with untrained features": {"fuse": {"untrained": 1.0}},
    "60 epochs": {"epochs": 60},
    "48² thumbnails": {"thumb_size": 48},
    "temperature 0.2": {"temperature": 0.2},
    "temperature 0.1": {"temperature": 0.1},
    "every unrelated slice a negative": {"exclude_groups_from_negatives": False},
    "adjacent-slice positives only": {
        "volume_weight": 0.0,
        "patient_weight": 0.0,
        "adjacent_weight": 1.0,
        "exclude_groups_from_negatives": False,
    },
    "temperature 0.2 fused with untrained features": {"temperature": 0.2, "fuse": {"untrained": 1.0}},
    "temperature 0.2, 60 epochs": {"temperature": 0.2, "epochs": 60},
    "group batches (8 slices of a volume)": {"slices_per_volume": 8},
    "group batches, adjacent-slice positives only": {
        "slices_per_volume": 8,
        "volume_weight": 0.0,
        "patient_weight": 0.0,
        "adjacent_weight": 1.0,
        "exclude_groups_from_negatives": False,
    },
    "group batches, temperature 0.2": {"slices_per_volume": 8, "temperature": 0.2},
}
"""Metric variants of the diagnosis: `MetricConfig` changes, plus ``fuse`` (the strategy's fused
features) and ``thumb_size`` (the pool's thumbnails), both popped before the metric is built."""


def _variant(spec: dict[str, Any], metric0: Any) -> tuple[Any, dict[str, float], int | None]:
    """A variant's metric config, fused features and thumbnail size (None: the config's)."""
    upd = dict(spec)
    fuse = upd.pop("fuse", {})
    thumb = upd.pop("thumb_size", None)
    if "augment" in upd:
        upd["augment"] = metric0.augment.model_copy(update=upd["augment"])
    return metric0.model_copy(update=upd), fuse, thumb


def _mean_coverage(per_seed: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Round by round, every coverage number averaged over seeds."""
    return [{k: float(np.mean([s[r][k] for s in per_seed])) for k in per_seed[0][r]} for r in range(len(per_seed[0]))]


def ablation(
    manifest: Path,
    cfg: Any,
    work: Path,
    quick: bool,
    on_coverage: Any = None,
    assemble: bool = False,
    val_budgets: list[str] | None = None,
    val_variants: list[str] | None = None,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Metric variants on the training pool: coverage of their picks (1–5 %) and val Dice (full masks),
    both averaged over `seeds` (default: the config's first); `on_coverage(record)` once the (cheap)
    coverage part is done. Val Dice at `val_budgets` (default: the coverage budgets), for the variants
    named in `val_variants` (default: all; ``random`` and ``coreset (untrained)`` name the baselines);
    `only`: the `ABLATIONS` entries run at all (default: every one)."""
    from medwss.active.features import feature_provider
    from medwss.active.pool import SliceReader
    from medwss.active.simulate import pools_from_manifest, round_targets, simulate
    from medwss.active.strategies import SelectionContext, get_strategy

    seeds = list(seeds or cfg.seeds[:1])
    cfg = cfg.model_copy(update={"seeds": seeds, "modes": ["full"], "test_splits": ["val"]})
    if not quick:
        cfg = cfg.model_copy(update={"budgets": ABLATION_BUDGETS})
    pool, val = pools_from_manifest(manifest, cfg, progress=False)
    pools = {cfg.al.thumb_size: pool}
    from medwss.data.manifest import load_manifest

    val_patients = [c.patient_id for c in load_manifest(manifest) if c.split == "val"]

    def pool_of(thumb: int | None) -> Any:
        if (thumb or cfg.al.thumb_size) not in pools:
            c = cfg.model_copy(update={"al": cfg.al.model_copy(update={"thumb_size": thumb})})
            pools[thumb] = pools_from_manifest(manifest, c, progress=False)[0]
        return pools[thumb or cfg.al.thumb_size]

    reader = SliceReader(cfg.al.window, cfg.al.label_spec)
    labels = [reader.label(r) for r in pool.refs]
    fg = np.array([(lab > 0).any() for lab in labels])
    allc = np.array([all((lab == c).any() for c in (1, 2, 3)) for lab in labels])
    metrics0 = {s: cfg.al.metric.model_copy(update={"seed": s, "device": "cpu"}) for s in seeds}
    untrained = {}
    for s in seeds:
        u = feature_provider(pool, metrics0[s], work / "features_untrained" / f"seed{s}", progress=False)("untrained")
        untrained[s] = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-8)
    targets = round_targets(cfg, len(pool))
    variants: list[dict[str, Any]] = []

    def picks_of(
        strategy: str, provider: Any, seed: int, fuse: dict[str, float] | None = None
    ) -> list[dict[str, float]]:
        labelled: list[int] = []
        out = []
        for r, t in enumerate(targets, start=1):
            ctx = SelectionContext(
                len(pool), list(labelled), provider, None, seed * 1000 + r, fuse=dict(fuse or {}), device="cpu"
            )
            labelled += get_strategy(strategy)(ctx, t - len(labelled))
            out.append(coverage(labelled, pool, fg, allc, untrained[seed]))
        return out

    def folder_of(name: str) -> Path:
        return work / "ablation" / name.replace(" ", "_").replace("(", "").replace(")", "").replace("²", "")

    for name, strategy in {"random": "random", "coreset (untrained)": "coreset"}.items():
        by_seed = [
            picks_of(strategy, feature_provider(pool, metrics0[s], work / "features_untrained" / f"seed{s}", False), s)
            for s in seeds
        ]
        variants.append({"variant": name, "strategy": strategy, "coverage": _mean_coverage(by_seed),
                         "coverage_by_seed": by_seed})  # fmt: skip
    for name, spec in list(ABLATIONS.items())[: 2 if quick else None]:
        if only is not None and name not in only:
            continue
        by_seed = []
        for s in seeds:
            metric, fuse, thumb = _variant(spec, metrics0[s])
            p = pool_of(thumb)
            provider = feature_provider(p, metric, folder_of(name) / f"seed{s}", progress=False)
            by_seed.append(picks_of("contrastive_coreset", provider, s, fuse))
        variants.append({"variant": name, "strategy": "contrastive_coreset", "metric": spec,
                         "coverage": _mean_coverage(by_seed), "coverage_by_seed": by_seed})  # fmt: skip
    record = {"targets": targets, "percent": [100.0 * t / len(pool) for t in targets], "variants": variants,
              "pool_slices": len(pool), "val_volumes": len(val), "seeds": seeds}  # fmt: skip
    if on_coverage is not None:
        on_coverage(record)
    if val_budgets:
        cfg = cfg.model_copy(update={"budgets": val_budgets})
        record["val_percent"] = [100.0 * t / len(pool) for t in round_targets(cfg, len(pool))]
    for v in variants:  # val Dice of each variant's picks (the same loop as the curves)
        if val_variants is not None and v["variant"] not in val_variants:
            continue
        al, p, contrastive = cfg.al, pool, v["strategy"] == "contrastive_coreset"
        folder = folder_of(v["variant"]) if contrastive else work / "ablation" / v["strategy"]
        if contrastive:
            spec = dict(ABLATIONS[v["variant"]])
            _, fuse, thumb = _variant(spec, cfg.al.metric)
            metric, _, _ = _variant({k: x for k, x in spec.items() if k not in ("fuse", "thumb_size")}, cfg.al.metric)
            al = al.model_copy(update={"fuse": fuse, "metric": metric, "thumb_size": thumb or cfg.al.thumb_size})
            p = pool_of(thumb)
        sim = folder / "sim"
        by_seed: dict[int, list[float]] = {}
        vol_rows: list[dict[str, Any]] = []
        for s in seeds:
            c = cfg.model_copy(update={"al": al, "strategies": [v["strategy"]], "seeds": [s]})
            if assemble and not (sim / "runs" / f"full_{v['strategy']}_seed{s}.json").exists():
                continue
            if contrastive:  # reuse the variant's trained metric
                src = folder / f"seed{s}" / "contrastive.npy"
                dst = sim / "features" / f"seed{s}" / "contrastive.npy"
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.exists() and not dst.exists():
                    dst.write_bytes(src.read_bytes())
            rows = simulate(p, val, c, sim, progress=False)["rows"]
            by_seed[s] = [float(r["dice"]) for r in sorted(rows, key=lambda r: r["round"])]
            vol_rows += rows
        if by_seed:
            v["val_dice_by_seed"] = {str(s): d for s, d in by_seed.items()}
            v["val_dice"] = np.mean(list(by_seed.values()), axis=0).tolist()
            v["val_dice_mean"] = float(np.mean(v["val_dice"]))
            rounds = sorted({r["round"] for r in vol_rows})  # per val patient: seed- and round-averaged Dice
            v["val_per_patient"] = np.mean(
                [_per_patient([r for r in vol_rows if r["round"] == rd], val_patients) for rd in rounds], axis=0
            ).tolist()
    record["val_paired"] = val_paired(variants)
    return record


def val_paired(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Val Dice (mean over the val rounds) of every variant minus random and minus the plain coreset:
    95 % bootstrap over val patients, on the seeds both ran."""
    from medwss.eval.metrics import mean_ci

    base = {v["variant"]: v for v in variants if v["variant"] in ("random", "coreset (untrained)")}
    out = []
    for v in variants:
        for name, b in base.items():
            if v is b or "val_per_patient" not in v or "val_per_patient" not in b:
                continue
            if sorted(v["val_dice_by_seed"]) != sorted(b["val_dice_by_seed"]):
                continue  # paired only on the same seeds
            d = np.array(v["val_per_patient"]) - np.array(b["val_per_patient"])
            m, lo, hi = mean_ci(d)
            out.append({"variant": v["variant"], "minus": name, "diff": m, "lo": lo, "hi": hi})
    return out


def curves(manifest: Path, cfg: Any, out: Path, strategies: list[str], assemble: bool = False) -> dict[str, Any]:
    """Every (mode, seed, strategy) curve on the test patients, with patient-bootstrap intervals.

    With `assemble`, only the runs already finished in ``out/runs`` are read (nothing is trained)."""
    from medwss.active.simulate import pools_from_manifest, round_targets, simulate_from_manifest
    from medwss.data.manifest import load_manifest

    cfg = cfg.model_copy(update={"strategies": strategies})
    t0 = time.perf_counter()
    if assemble:
        pool, test_refs = pools_from_manifest(manifest, cfg, progress=False)
        rows = [r for f in sorted((out / "runs").glob("*.json")) for r in json.loads(f.read_text())]
        rows = [r for r in rows if r["strategy"] in strategies and r["seed"] in cfg.seeds and r["mode"] in cfg.modes]
        res: dict[str, Any] = {"pool_slices": len(pool), "test_volumes": len(test_refs), "rows": rows,
               "annotated_per_round": round_targets(cfg, len(pool))}  # fmt: skip
    else:
        res = simulate_from_manifest(manifest, cfg, out, progress=False)
    test = [c for c in load_manifest(manifest) if c.split in cfg.test_splits]
    patients = [c.patient_id for c in test]  # pools_from_manifest keeps manifest order of the volumes
    res["boot_summary"] = boot_summary(res["rows"], patients)
    res["paired"] = [
        *paired(res["rows"], patients, "contrastive_coreset", "random"),
        *paired(res["rows"], patients, "contrastive_coreset", "coreset"),
        *paired(res["rows"], patients, "coreset", "random"),
    ]
    res["test_patients"] = len(set(patients))
    res["seconds"] = time.perf_counter() - t0
    return res


def _ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else f"{m:.3f}"


def _pair(ab: dict[str, Any], variant: str, minus: str) -> str:
    """The paired val difference of `variant` − `minus` with its CI, or – when not run."""
    for p in ab.get("val_paired", []):
        if p["variant"] == variant and p["minus"] == minus:
            return f"{p['diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}]"
    return "–"


def markdown(record: dict[str, Any]) -> str:
    q = record["quick"]
    lines = [f"## Active learning on ACDC slices{' (quick)' if q else ''}\n"]
    c = record.get("curves")
    if c:
        lines.append(
            f"Pool {c['pool_slices']} slices of the training volumes ({record['size']}²), test {c['test_volumes']} "
            f"volumes of {c['test_patients']} patients; 3D Dice (mean of RV, myocardium, LV), mean over seeds "
            f"{record['seeds']} [95% bootstrap CI over test patients]. Annotated per round: {c['annotated_per_round']}.\n"
        )
        for mode in ("full", "scribble"):
            rows = [s for s in c["boot_summary"] if s["mode"] == mode]
            if not rows:
                continue
            pct = rows[0]["percent"]
            lines += [f"\n### ACDC, {mode} annotations\n",
                      "| strategy | seeds | " + " | ".join(f"{p:.1f}%" for p in pct) + " | mean ≤ 5% |",
                      "|---|---|" + "---|" * (len(pct) + 1)]  # fmt: skip

            def low_mean(s: dict[str, Any], pct: list[float] = pct) -> float:
                return float(np.mean([d for d, p in zip(s["dice_mean"], pct, strict=True) if p <= 5.5]))

            for s in sorted(rows, key=lambda s: -low_mean(s)):
                low = low_mean(s)
                cells = [_ci(m, lo, hi) for m, lo, hi in zip(s["dice_mean"], s["dice_lo"], s["dice_hi"], strict=True)]
                seeds = ",".join(str(x) for x in s["seeds"])
                lines.append(f"| {s['strategy']} | {seeds} | " + " | ".join(cells) + f" | {low:.3f} |")
        lines += ["\nPaired differences (Dice of a − b, 95% bootstrap CI over test patients; `≤5%` = mean over the "
                  "rounds up to 5%):\n", "| mode | a − b | ≤5% | " + " | ".join(f"{a}" for a in c["annotated_per_round"]) + " |",
                  "|---|---|---|" + "---|" * len(c["annotated_per_round"])]  # fmt: skip
        keys = sorted({(p["mode"], p["a"], p["b"]) for p in c["paired"]})
        for mode, a, b in keys:
            ps = sorted(
                (p for p in c["paired"] if (p["mode"], p["a"], p["b"]) == (mode, a, b)), key=lambda p: p["round"]
            )
            cells = [f"{p['diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}]" for p in ps]
            seeds = ",".join(str(x) for x in ps[0]["seeds"])
            lines.append(f"| {mode} | {a} − {b} (seeds {seeds}) | " + " | ".join(cells) + " |")
    ab = record.get("ablation")
    if ab:
        lines += [
            f"\n### Diagnosis of the contrastive metric (pool {ab['pool_slices']} training slices; val Dice on "
            f"{ab['val_volumes']} val volumes, seeds {ab.get('seeds', [0])}, full masks; never the test patients)\n",
            "Coverage of the picks after the last round (" + f"{ab['percent'][-1]:.1f}% of the pool): fraction with "
            "foreground, with all three structures (and its mean over the rounds 1–5 %), volumes touched, k-center "
            "radius and mean distance to the nearest pick in the untrained encoder's (unit-norm) space; all means "
            "over the seeds; val Dice mean over the rounds "
            f"({', '.join(f'{p:.1f}%' for p in ab.get('val_percent', ab['percent']))}; – = not run); − random, "
            "− coreset: its paired difference (95% bootstrap CI over val patients of the seed-averaged Dice).\n",
            "| picks from | foreground | all 3 structures | all 3, mean 1–5 % | volumes | radius (untrained) | mean dist. "
            "| val Dice per round | val Dice mean | − random | − coreset |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v in ab["variants"]:
            cv = v["coverage"][-1]
            v.setdefault("val_dice", [math.nan])
            v.setdefault("val_dice_mean", math.nan)
            name = v["variant"] if v["strategy"] != "contrastive_coreset" else f"contrastive coreset: {v['variant']}"
            lines.append(
                f"| {name} | {cv['foreground_fraction']:.2f} | {cv['all_structures_fraction']:.2f} | "
                f"{np.mean([c['all_structures_fraction'] for c in v['coverage']]):.2f} | "
                f"{cv['volumes_covered']} | {cv['kcenter_radius_untrained']:.3f} | {cv['mean_distance_untrained']:.3f} | "
                + ", ".join(f"{d:.3f}" if math.isfinite(d) else "–" for d in v["val_dice"])
                + (f" | {v['val_dice_mean']:.3f} |" if math.isfinite(v["val_dice_mean"]) else " | – |")
                + "".join(f" {_pair(ab, v['variant'], b)} |" for b in ("random", "coreset (untrained)"))
            )
    lines.append(f"\nWall time {record['seconds'] / 60:.1f} min ({record['cpu_seconds'] / 60:.1f} min CPU).\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "real"), help="folder holding mri/acdc/")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few volumes, tiny settings, one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=48, help="in-plane size of the cropped, resized slices")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--work", default=None, help="work folder (resized data, runs; finished runs are reused)")
    ap.add_argument("--skip-ablation", action="store_true")
    ap.add_argument("--skip-curves", action="store_true")
    ap.add_argument("--strategies", nargs="+", default=None, help="curve strategies (default: all seven)")
    ap.add_argument(
        "--scribble-strategies",
        nargs="+",
        default=None,
        help="strategies also run with scribbles (default: the same as --strategies)",
    )
    ap.add_argument("--modes", nargs="+", default=["full", "scribble"], choices=["full", "scribble"])
    ap.add_argument("--val-budgets", nargs="+", default=None, help="ablation: budgets of the val-Dice runs")
    ap.add_argument("--val-variants", nargs="+", default=None, help="ablation: variants given a val-Dice run")
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=None, help="ablation seeds (default: the first)")
    ap.add_argument("--skip-val-dice", action="store_true", help="ablation: coverage only")
    ap.add_argument("--ablation-variants", nargs="+", default=None, help="ablation: the ABLATIONS entries run")
    ap.add_argument("--tag", default=None, help="results name suffix: al_acdc_TAG.json/.md/.png")
    ap.add_argument("--assemble", action="store_true", help="tables from the runs finished in --work; train nothing")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from medwss.active.plot import plot_curves
    from medwss.io.atomic import write_json
    from medwss.runinfo import write_results

    torch.set_num_threads(1)
    q = args.quick
    name = ("al_acdc_quick" if q else "al_acdc") + (f"_{args.tag}" if args.tag else "")
    work = Path(args.work or tempfile.mkdtemp(prefix="al_acdc_"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.time(), time.process_time()
    size = 32 if q else args.size
    manifest = prepare(Path(args.data), work, size, {"train": 4, "val": 2, "test": 2} if q else None)
    seeds = args.seeds[:1] if q else args.seeds
    record: dict[str, Any] = {"quick": q, "size": size, "seeds": seeds, "data": str(Path(args.data) / "mri" / "acdc")}

    def save() -> None:
        record["seconds"] = time.time() - t0
        record["cpu_seconds"] = time.process_time() - cpu0
        write_results(out, name, record, markdown(record), echo=False)

    if not args.skip_ablation:

        def partial(ab: dict[str, Any]) -> None:
            write_json(out / f"{name}_coverage.json", ab)

        record["ablation"] = ablation(
            manifest, base_config(q, seeds, "val"), work / "ablation", q, partial, args.assemble,
            args.val_budgets, [] if args.skip_val_dice else args.val_variants, args.ablation_seeds,
            args.ablation_variants,
        )  # fmt: skip
        save()
    if not args.skip_curves:
        strategies = ["random", "coreset", "contrastive_coreset"] if q else (args.strategies or STRATEGIES)
        weak = args.scribble_strategies or strategies
        cfg = base_config(q, seeds, "test")
        picks = {"full": strategies, "scribble": weak}
        parts = [
            curves(manifest, cfg.model_copy(update={"modes": [m]}), work / "curves", picks[m], args.assemble)
            for m in args.modes
        ]
        res = parts[0] | {k: [x for p in parts for x in p[k]] for k in ("rows", "boot_summary", "paired")}
        res["seconds"] = sum(p["seconds"] for p in parts)
        record["config"] = cfg.model_dump(mode="json") | {"scribble_strategies": weak, "strategies": strategies}
        record["curves"] = {k: v for k, v in res.items() if k not in ("summary", "plot")}
        plot_curves(res["boot_summary"], out / f"{name}.png", res["pool_slices"], "ACDC slices")
    save()
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
