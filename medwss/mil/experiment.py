"""Phantom experiments shared by `medwss demo` and `benchmarks/mil_phantom.py`.

`prepare` makes one phantom set of `SETTINGS` (phantoms, tiles and bags, resuming whatever exists);
`evaluate` trains one aggregator with one seed and scores it on the held-out test split: case AUC
with a bootstrap CI, heatmap Dice on the positive test cases against the exact ground truth, FROC
on slides, and seconds per case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.manifest import Case, load_manifest
from medwss.io.atomic import write_json

CT_TUMOUR = (4,)  # kidney tumour in the CT phantoms' label maps (medwss.data.phantoms.CT_LABELS)

WSI_CONTEXT = {
    "lookalikes": [6, 20], "lookalike_um": [90.0, 140.0], "lookalike_balance": 0.5, "tumor_contrast": 0.6,
    "stain_shift": 0.3, "large_lesion_probability": 0.0, "small_lesion_um": [200.0, 400.0],
}  # fmt: skip
"""The context slides (configs/phantom_wsi_context.yaml): look-alike patches of about one 64 µm tile in
every slide, lesions of 3–6 tiles across, fainter tumour, a stain shift between the two sites."""

CT_ENHANCING = {"tumor_hu": 160.0, "tumor_spread_hu": 25.0, "tumor_radius_mm": [9.0, 16.0]}
"""The CT tumour of the MIL set: enhancing (brighter than every soft tissue, darker than bone)."""

CT_TILES = {"mode": "patch3d", "tile_mm": 12.0, "roi_labels": [2, 3], "min_tissue": 0.5}
"""`TileConfig` of the CT sets: 12 mm cubes inside the bounding box of both kidneys."""

SETTINGS: dict[str, dict[str, Any]] = {
    "wsi": {"kind": "wsi", "tile": {"mpp": 2.0, "tile_size": 64}, "positive_labels": None},
    "wsi_context": {"kind": "wsi", "options": WSI_CONTEXT, "tile": {"mpp": 2.0, "tile_size": 32}, "positive_labels": None},
    "ct": {"kind": "ct", "options": CT_ENHANCING, "positive_labels": CT_TUMOUR, "tile": CT_TILES, "epochs": 40,
           "train": {"insight": {"aggregator_kwargs": {"kernel": "2.5d", "hidden": 64}}}},
    "ct_original": {"kind": "ct", "positive_labels": CT_TUMOUR, "tile": CT_TILES,
                    "train": {"insight": {"aggregator_kwargs": {"kernel": "2.5d", "hidden": 64}}}},
}  # fmt: skip
"""Phantom sets by name: phantom `kind`, generator `options` (`WSIOptions`, `CTOptions`), `scale`, the
`TileConfig` fields (``tile``), the mask labels that are the lesion (None: the mask is binary), the
benchmark's ``epochs`` (absent: its 15-epoch cut) and per-aggregator `train` overrides of `MILTrainConfig`.
``ct`` tiles 12 mm cubes inside the bounding box of both kidneys (an organ ROI, as from an organ
segmenter; the same in every scan), gives INSIGHT in-plane (1×3×3) context convolutions of 64 channels
(the full 3×3×3 stack of 128 took ~1 s a step on a CPU) and trains the library's 40 epochs: in 15,
INSIGHT stayed untrained on 3 of 60 selection runs (phantom seeds 7–12; still at ln 2 when early
stopping kept epoch 0 or 1), in 40 on none (benchmarks/results/mil_phantom_ct_selection_epochs.md)."""


def prepare(
    setting: str, out: str | Path, n: int, seed: int, encoder: str = "stats", scale: float | None = None
) -> Path:
    """Phantoms → tiles (`tile_manifest`) → bags (`embed_manifest`) for the set `setting` (a key of `SETTINGS`).

    Returns the manifest with bags; finished steps are reused. `scale` overrides the set's own.
    """
    from medwss.data.phantoms import generate
    from medwss.embed.engine import EmbedConfig
    from medwss.embed.job import embed_manifest
    from medwss.embed.tiling_job import TileConfig, tile_manifest
    from medwss.errors import InvalidDataError

    spec = SETTINGS[setting]
    out = Path(out)
    manifest = out / setting / "manifest.csv"
    if not manifest.exists():
        size = spec.get("scale", 1.0) if scale is None else scale
        generate(spec["kind"], out / setting, n=n, seed=seed, scale=size, progress=False, options=spec.get("options"))
    tiles, bags = out / f"{setting}_tiles", out / f"{setting}_bags"
    cases = load_manifest(manifest)
    if tile_manifest(cases, tiles, TileConfig(**spec["tile"]), progress=False)["failed"]:
        raise InvalidDataError(f"tiling {setting} phantoms failed; see {tiles}/failures.csv", manifest)
    stats = embed_manifest(cases, tiles, bags, EmbedConfig(encoder=encoder), progress=False)
    if stats["failed"]:
        raise InvalidDataError(f"embedding {setting} phantoms failed; see {bags}/failures.csv", manifest)
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
    threshold: float = 0.5, train: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train `aggregator` with `seed` on the train/val split; test AUC (95% CI) and heatmap Dice on test positives.

    `train` overrides `MILTrainConfig` fields (e.g. ``aggregator_kwargs``); `SETTINGS` holds each set's.
    """
    import time

    from medwss.embed.store import load_bag
    from medwss.eval.froc import detections_from_heatmap, froc
    from medwss.eval.metrics import bootstrap_ci, classification_report, dice
    from medwss.mil.heatmaps import dense_heatmap
    from medwss.mil.train import MILTrainConfig
    from medwss.mil.workflow import predict_manifest, train_from_manifest

    m = load_manifest(manifest)
    cfg = MILTrainConfig(**{"aggregator": aggregator, "seed": seed, "epochs": epochs, **(train or {})})
    t0 = time.perf_counter()
    fit = train_from_manifest(m, cfg, out, progress=False)
    seconds = time.perf_counter() - t0
    history = out / "history.json"
    if history.exists():  # the training epochs' own time, also right when a finished run was resumed
        seconds = float(sum(h["seconds"] for h in json.loads(history.read_text())))
    test = [c for c in m.cases if c.split == "test"]
    test_m = type(m)(m.path, test)
    t1 = time.perf_counter()
    cases, outs = predict_manifest(test_m, out / "model.pt")
    predict_seconds = (time.perf_counter() - t1) / max(1, len(cases))
    n_train = sum(c.split == "train" for c in m.cases)
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
              "train_seconds": seconds, "train_seconds_per_case": seconds / max(1, n_train),
              "predict_seconds_per_case": predict_seconds, "best_epoch": fit.get("best_epoch"),
              "y": y.tolist(), "p": p.tolist()}  # fmt: skip
    write_json(out / "evaluation.json", result)
    return result
