"""Phantom experiments shared by `medwss demo` and `benchmarks/mil_phantom.py`.

`prepare` makes phantoms, tiles and bags (resuming whatever exists); `evaluate` trains one
aggregator with one seed and scores it on the held-out test split: case AUC with a bootstrap CI
and heatmap Dice on the positive test cases against the exact ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.manifest import Case, load_manifest
from medwss.io.atomic import write_text

CT_TUMOUR = (4,)  # kidney tumour in the CT phantoms' label maps (medwss.data.phantoms.CT_LABELS)

SETTINGS: dict[str, dict[str, Any]] = {
    "wsi": {"tile": ["--mpp", "2", "--tile-size", "64"], "positive_labels": None},
    "ct": {"tile": ["--tile-size", "12", "--mode", "axial2d", "--min-tissue", "0.5"], "positive_labels": CT_TUMOUR},
}


def prepare(kind: str, out: str | Path, n: int, seed: int, encoder: str = "stats", scale: float = 1.0) -> Path:
    """Phantoms → `medwss tile` → `medwss embed`; returns the manifest with bags (reuses finished steps)."""
    from medwss.cli.main import main
    from medwss.data.phantoms import generate

    out = Path(out)
    manifest = out / kind / "manifest.csv"
    if not manifest.exists():
        generate(kind, out / kind, n=n, seed=seed, scale=scale, progress=False)
    tiles, bags = out / f"{kind}_tiles", out / f"{kind}_bags"
    if main(["tile", str(manifest), "--out", str(tiles), "--quiet", *SETTINGS[kind]["tile"]]) != 0:
        raise RuntimeError(f"tiling {kind} phantoms failed; see {tiles}/failures.csv")
    if main(["embed", str(manifest), "--tiles", str(tiles), "--out", str(bags), "--encoder", encoder, "--quiet"]) != 0:
        raise RuntimeError(f"embedding {kind} phantoms failed; see {bags}/failures.csv")
    return bags / "manifest.csv"


def truth(
    case: Case, extent: tuple[int, ...], downsample: float | None, positive_labels: tuple[int, ...] | None
) -> np.ndarray:
    """The ground-truth lesion mask on the heatmap's grid."""
    if downsample is not None:
        from medwss.eval.heatmap import rasterize_gt

        gt_ds = float(case.meta.get("mask_downsample", 16))
        return rasterize_gt(case.mask, extent, downsample, gt_downsample=gt_ds)  # type: ignore[arg-type]
    from medwss.io.volumes import load_volume

    labels = load_volume(case.mask).array  # type: ignore[arg-type]
    return np.isin(labels, positive_labels) if positive_labels else labels > 0


def evaluate(
    manifest: Path, aggregator: str, seed: int, out: Path, epochs: int = 40, positive_labels: tuple[int, ...] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:  # fmt: skip
    """Train `aggregator` with `seed` on the train/val split; test AUC (95% CI) and heatmap Dice on test positives."""
    import time

    from medwss.embed.store import load_bag
    from medwss.eval.froc import detections_from_heatmap, froc
    from medwss.eval.metrics import bootstrap_ci, classification_report, dice
    from medwss.mil.heatmaps import dense_heatmap
    from medwss.mil.train import MILTrainConfig
    from medwss.mil.workflow import predict_manifest, train_from_manifest

    m = load_manifest(manifest)
    cfg = MILTrainConfig(aggregator=aggregator, seed=seed, epochs=epochs)
    t0 = time.perf_counter()
    fit = train_from_manifest(m, cfg, out, progress=False)
    seconds = time.perf_counter() - t0
    history = out / "history.json"
    if history.exists():  # the training epochs' own time, also right when a finished run was resumed
        seconds = float(sum(h["seconds"] for h in json.loads(history.read_text())))
    test = [c for c in m.cases if c.split == "test"]
    test_m = type(m)(m.path, test)
    cases, outs = predict_manifest(test_m, out / "model.pt")
    y = np.array([c.label for c in cases])
    p = np.array([float(o.probs[-1]) for o in outs])
    report = classification_report(y, p, seed=seed)
    dices, detections, lesions, lesion_ds = [], [], [], []
    for c, o in zip(cases, outs, strict=True):
        hm = dense_heatmap(c, load_bag(c.features), o.scores[:, -1].numpy())  # type: ignore[arg-type]
        filled = np.nan_to_num(hm.heatmap, nan=0.0)
        if hm.downsample is not None:  # slides: CAMELYON16-style lesion detection on every test slide
            detections.append(detections_from_heatmap(filled, hm.downsample, threshold=0.05, min_distance=2))
            lesions.append(truth(c, hm.extent, hm.downsample, positive_labels) if c.label == 1 and c.mask else None)
            lesion_ds.append(hm.downsample)
        if c.label != 1 or c.mask is None:
            continue
        gt = truth(c, hm.extent, hm.downsample, positive_labels)
        dices.append(dice(filled >= threshold, gt))
    froc_score = (
        float(froc(detections, lesions, lesion_ds).score) if any(m is not None for m in lesions) else float("nan")
    )
    d = np.array(dices)
    dice_ci = (
        bootstrap_ci(lambda yy, pp: float(np.mean(pp)), np.zeros(len(d)), d, seed=seed, stratify=False)
        if len(d)
        else (np.nan,) * 3
    )
    result = {"aggregator": aggregator, "seed": seed, "auc": report["auc"], "auc_lo": report["auc_lo"], "auc_hi": report["auc_hi"],
              "accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"], "dice": float(dice_ci[0]),
              "dice_lo": float(dice_ci[1]), "dice_hi": float(dice_ci[2]), "n_test": len(cases), "n_dice": len(d), "froc": froc_score,
              "train_seconds": seconds, "best_epoch": fit.get("best_epoch"),
              "y": y.tolist(), "p": p.tolist()}  # fmt: skip
    write_text(out / "evaluation.json", json.dumps(result, indent=2))
    return result
