"""Manifest-level COIN steps behind `medwss coin ...`: train the classifier, train COIN, segment, baselines.

The two training steps checkpoint into their output folder (``classifier.ckpt``, ``generator.ckpt``)
and resume from it when present; ``restart=True`` deletes it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medwss.counterfactual.classifier import (
    ClassifierConfig,
    load_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
)
from medwss.counterfactual.evaluate import seg_scores, sweep_threshold
from medwss.counterfactual.segment import MaskSettings, coin_masks, threshold_maps, volume_mask
from medwss.counterfactual.slices import SliceSet, SliceSpec, manifest_slices
from medwss.counterfactual.train import CoinConfig, counterfactuals, load_generator, save_generator, train_coin
from medwss.io.atomic import write_json
from medwss.jobs import Job


def pick(cases: Sequence, split: str | None = "train") -> list:
    """Cases of `split`; all cases when `split` is None or ``"all"``.

    Raises:
        ManifestError: No case is in `split` (pass ``"all"`` to use every case).
    """
    from medwss.data.manifest import select_cases
    from medwss.errors import ManifestError

    cases = list(cases)
    if not split or split == "all":
        return cases
    try:
        return select_cases(cases, split)
    except ManifestError as exc:
        raise ManifestError([f"{exc.problems[0]}; train on every case with split 'all'"], exc.path) from None


def classifier_step(
    cases: Sequence,
    spec: SliceSpec,
    cfg: ClassifierConfig,
    out: Path,
    progress: bool,
    split: str = "train",
    restart: bool = False,
) -> dict:
    """Train the slice classifier on the `split` cases; validation AUC when there are ``val`` cases.

    Resumes from ``out/classifier.ckpt`` when present (deleted first with `restart`).
    """
    from medwss.eval.metrics import roc_auc

    train, failures = manifest_slices(pick(cases, split), spec, progress)[0::2]
    model, history = train_classifier(
        train.images, train.labels, cfg, progress, _checkpoint(out, "classifier.ckpt", restart)
    )
    save_classifier(model, cfg, spec, out / "classifier.pt")
    metrics: dict = {"n_slices": len(train), "n_abnormal": int(train.labels.sum()), "loss": history, "failed": failures}
    val_cases = [c for c in cases if c.split == "val"] if split != "all" else []
    if val_cases:
        val = manifest_slices(val_cases, spec, progress)[0]
        p = predict_proba(model, val.images)
        metrics["val_auc"] = roc_auc(val.labels, p) if len(set(val.labels.tolist())) > 1 else None
        metrics["val_accuracy"] = float(((p >= 0.5) == val.labels).mean())
    return metrics


def coin_step(
    cases: Sequence,
    classifier_path: str | Path,
    cfg: CoinConfig,
    out: Path,
    progress: bool,
    split: str = "train",
    restart: bool = False,
) -> dict:
    """Train COIN on the `split` cases' slices against the frozen classifier.

    Resumes from ``out/generator.ckpt`` when present (deleted first with `restart`).
    """
    clf, _, spec = load_classifier(classifier_path)
    train, _, failures = manifest_slices(pick(cases, split), spec, progress, need_mask=False)
    labels = train.labels if train.masks.any() else None
    G, history = train_coin(clf, train.images, cfg, progress, labels, _checkpoint(out, "generator.ckpt", restart))
    save_generator(G, cfg, out / "generator.pt")
    write_json(out / "history.json", history, indent=1)
    return {"n_slices": len(train), "final": history[-1] if history else {}, "failed": failures}


def _checkpoint(out: Path, name: str, restart: bool) -> Path:
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if restart:
        path.unlink(missing_ok=True)
    return path


def _case_outputs(
    cases: Sequence,
    sl: SliceSet,
    geoms: dict,
    masks: np.ndarray,
    out: Path,
    folder: str,
    formats: Sequence[str] = ("nifti",),
    lesion: str = "lesion",
    job: Job | None = None,
) -> list[dict]:
    """Write one mask per case on its source grid (source affine) in `formats` and return per-case rows;
    a case whose files cannot be written fails in `job` (stage ``write``; default: the error propagates).

    ``nifti``: int16 ``<case_id>.nii.gz``; ``slicer`` adds a colour table; ``dicom-seg``
    ``<case_id>_seg.dcm`` for a DICOM source (`medwss.io.seg_export.write_outputs`).
    """
    from medwss.data.labels import label_spec
    from medwss.data.manifest import case_path
    from medwss.io.seg_export import write_outputs
    from medwss.io.volume import Volume

    rows = []
    ids = np.array(sl.case_ids)
    target = Path(out) / folder if folder else Path(out)

    def one(c: Any) -> dict:
        sel = ids == c.case_id
        geom = geoms[c.case_id]
        vol = volume_mask(masks[sel], geom)
        case_path(target, c.case_id)  # refuses an id that would leave the folder
        source = Volume(vol, geom.orientation.affine, {}, str(c.image))
        write_outputs(source, vol, label_spec({lesion: [1]}), target, formats, name=c.case_id)
        return {"case_id": c.case_id, "slices": int(sel.sum()), "mask_voxels": int(vol.sum())}

    todo = [c for c in cases if c.case_id in geoms]
    if job is None:
        return [one(c) for c in todo]
    rows = [r for r in job.run(todo, one, stage="write") if r is not None]
    return rows


def _overlays(
    sl: SliceSet, panels: dict[str, np.ndarray], masks: np.ndarray, score: np.ndarray, out: Path, n: int
) -> None:
    from medwss.counterfactual.overlays import panel_png

    ids = np.array(sl.case_ids)
    for cid in list(dict.fromkeys(sl.case_ids))[:n]:
        idx = np.where(ids == cid)[0]
        i = int(idx[np.argmax(score[idx])])
        has_truth = bool(sl.masks.any())
        panel_png(
            sl.images[i, 0],
            {k: v[i] for k, v in panels.items()},
            masks[i],
            out / f"{cid}_slice{int(sl.slice_index[i]):03d}.png",
            truth=sl.masks[i] if has_truth else None,
            title=f"{cid} slice {int(sl.slice_index[i])} p={score[i]:.2f}",
        )


def segment_step(
    cases: Sequence,
    classifier_path: str | Path,
    generator_path: str | Path,
    settings: MaskSettings,
    out: Path,
    progress: bool,
    n_overlays: int = 8,
    formats: Sequence[str] = ("nifti",),
    folder: str = "masks",
    overlap: float = 0.25,
    job: Job | None = None,
) -> dict:
    """COIN masks for every case: masks, PNG overlays, IoU/validity/realism when masks are known.

    The cases run through `job` (`medwss.jobs.Job`; default one without a log file): a case that
    cannot be sliced (stage ``load``) or whose mask cannot be written (``write``) is skipped and
    reported in ``metrics["failed"]`` (``"case_id: message"``).

    Masks go to ``out/<folder>/`` (``folder=""``: `out` itself, as ``segment -i -o`` writes) in
    `formats` (see `_case_outputs`). Counterfactuals come from sliding windows of the classifier's
    slice size (`counterfactuals`), overlapping by `overlap`.
    """
    from medwss.counterfactual.classifier import penultimate_features
    from medwss.counterfactual.metrics import frechet_distance, mmd_rbf, validity

    clf, _, spec = load_classifier(classifier_path)
    G = load_generator(generator_path)
    job = job if job is not None else Job(None)
    sl, geoms, _ = manifest_slices(cases, spec, progress, need_mask=False, job=job)
    p = predict_proba(clf, sl.images)
    dec = (p >= 0.5).astype(np.int64)
    x_cf = counterfactuals(G, sl.images, dec, roi_size=(spec.size, spec.size), overlap=overlap)
    maps, masks = coin_masks(sl.images, x_cf, dec, settings)
    rows = _case_outputs(cases, sl, geoms, masks, out, folder, formats, spec.lesion, job=job)
    failures = [f"{c.case_id}: {job.failures[c.case_id]['message']}" for c in cases if job.failed(c.case_id)]
    _overlays(sl, {"counterfactual": x_cf[:, 0], "|x - x_cf|": maps}, masks, p, out / "overlays", n_overlays)
    p_cf = predict_proba(clf, x_cf)
    metrics: dict = {"n_cases": len(rows), "n_slices": len(sl), "failed": failures, "validity": validity(p, p_cf)}
    if sl.masks.any():
        metrics.update(seg_scores(masks, sl.masks))
        normal = sl.labels == 0
        fake = dec.astype(bool) & (sl.labels == 1)
        if normal.sum() > 1 and fake.sum() > 1:
            fa, fb = penultimate_features(clf, x_cf[fake]), penultimate_features(clf, sl.images[normal])
            metrics["frechet"], metrics["mmd"] = frechet_distance(fa, fb), mmd_rbf(fa, fb)
    write_json(out / "cases.json", rows, indent=1)
    return metrics


def baselines_step(
    cases: Sequence,
    classifier_path: str | Path,
    methods: Sequence[str],
    settings: MaskSettings,
    out: Path,
    progress: bool,
    tune_cases: Sequence = (),
    n_overlays: int = 4,
) -> dict:
    """Attribution masks per method; each threshold is swept on `tune_cases` when given (else `settings`)."""
    from tqdm import tqdm

    from medwss.counterfactual.attribution import attribute

    clf, _, spec = load_classifier(classifier_path)
    sl, geoms, failures = manifest_slices(cases, spec, progress, need_mask=False)
    tune = manifest_slices(list(tune_cases), spec, False)[0] if tune_cases else None
    p = predict_proba(clf, sl.images)
    dec = p >= 0.5
    result: dict = {"failed": failures, "methods": {}}
    for name in tqdm(methods, desc="baselines", disable=not progress, leave=False):
        s = settings
        if tune is not None and tune.masks.any():
            t, _ = sweep_threshold(attribute(name, clf, tune.images), tune.masks, settings)
            s = replace(settings, threshold=t)
        maps = attribute(name, clf, sl.images)
        masks = threshold_maps(maps, s) & dec[:, None, None]
        _case_outputs(cases, sl, geoms, masks, out, f"masks/{name}")
        _overlays(sl, {name: maps}, masks, p, out / "overlays" / name, n_overlays)
        res = {"threshold": s.threshold}
        if sl.masks.any():
            res.update(seg_scores(masks, sl.masks))
        result["methods"][name] = res
    return result
