"""Train, predict and ensemble scribble-supervised segmenters (binary lesions or K structures) from a manifest.

Layout of a training folder: ``model.pt`` (the one model file, kind ``segmenter``, with the
`ScribbleConfig` in its metadata), ``checkpoint.pt`` (the engine's, written every epoch and resumed
from when a run is repeated with the same settings — any other setting, epochs included, is an error
naming it), ``history.json``, ``config.json``, ``failures.csv`` (cases skipped: the one failure log of
`medwss.jobs.Job`, stage ``load``, absent when none was) and ``run.json`` (written by the CLI). An
ensemble folder holds ``member_<i>/`` with seeds ``seed + i``. Predictions are
``<out>/predictions/<case_id>.nii.gz`` on the stored grid of the case's reference channel (the
configured ``reference``, else the first of ``sequences``; = its ``mask`` grid), with the stored
affine: for a binary model (``num_classes: 2``) the float32 lesion probability, zero outside the
crop — the input of `medwss evaluate`; for K > 2 classes the int16 label map (argmax of the class
probabilities, each resampled back; background outside the crop). 2D models see the axial slices of
the crop grid (built on the canonical grid, so axial whatever the stored axis order), cut and pasted
back by `medwss.data.slicer` (resized to ``slice_size`` when set). An ensemble averages the
members' probabilities. ``method: dmpls`` trains the dual-branch network of `medwss.scribble.dmpls`
and keeps its main branch, an ordinary segmenter. ``self_training: n`` trains the rounds before
it into ``round_<i>/`` (i < n; round 0 skipped when ``pseudo_model`` is given) and the last into
``out`` itself (`medwss.scribble.selftrain`).

3D models predict by sliding windows (`medwss.seg.inference.segment_probs`: Gaussian blending,
windows on the model's device, the volume on the host) of the training patch size, stored as
``patch_size`` in the model file's metadata (the padded size of the largest training crop; files
written before it: the crop in-plane and all slices, one window as before), overlapping by
``overlap``. `predict_cases` also takes cases without a manifest (`medwss.io.folder.cases_from_folder`)
and writes them straight into ``out`` with ``subdir=""``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.labels import LabelSpec, save_label_map
from medwss.data.manifest import Case, Manifest
from medwss.errors import InvalidDataError
from medwss.io import save_nifti
from medwss.io.atomic import write_json
from medwss.jobs import Job
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.dataset import build_samples, cached_case, slice_geometry
from medwss.scribble.mri_input import CaseInput, load_case, paste_back
from medwss.scribble.selftrain import Largest, largest_components
from medwss.seg.inference import padded_size, segment_probs
from medwss.seg.networks import size_multiple
from medwss.seg.train import SegTrainConfig, load_segmenter, predict_probs, save_segmenter, train_segmenter
from medwss.train.device import resolve_device

Member = tuple[torch.nn.Module, SegTrainConfig, ScribbleConfig, tuple[int, ...] | None]
"""Model, trainer config, scribble config and training patch size (None: unknown, one window in-plane crop)."""


def select(
    cases: Sequence[Case], splits: Sequence[str] | None = None, sites: Sequence[str] | None = None
) -> list[Case]:
    """Cases whose split is in `splits` and site in `sites` (None: any)."""
    return [c for c in cases if (splits is None or c.split in splits) and (sites is None or c.site in sites)]


def _root(manifest: Manifest | None) -> Path | None:
    return manifest.path.parent if manifest is not None and manifest.path is not None else None


def train_model(
    manifest: Manifest,
    cfg: ScribbleConfig,
    out: str | Path,
    train_cases: Sequence[Case] | None = None,
    val_cases: Sequence[Case] | None = None,
    progress: bool = True,
    cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one segmenter; the epoch of best validation Dice (full masks of `val_cases`) is kept.

    Args:
        manifest: The manifest (its folder resolves relative paths).
        cfg: Input, supervision and training settings.
        out: Output folder.
        train_cases: Cases to train on (default: split ``train``).
        val_cases: Cases with masks for model selection (default: split ``val``; empty: last epoch).
        progress: Show progress bars.
        cache: Loaded cases kept between calls (`medwss.scribble.dataset.build_samples`).

    Returns:
        Summary: sample counts, skipped cases, final and best validation Dice.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = _root(manifest)
    train_cases = manifest.split("train") if train_cases is None else list(train_cases)
    val_cases = manifest.split("val") if val_cases is None else list(val_cases)
    if train_cases:  # empty `sequences`: the first training case's channels, fixed in the model file
        cfg = cfg.with_sequences(list(train_cases[0].images))
    cache = {} if cache is None else cache
    labels_from = _previous_round(manifest, cfg, out, train_cases, val_cases, progress, cache)
    samples, failures = build_samples(train_cases, cfg, root, progress=progress, cache=cache)
    val, val_failures = build_samples(val_cases, cfg, root, validation=True, progress=progress, cache=cache)
    if labels_from is not None:  # self-training: the previous round's pseudo labels replace the targets
        from medwss.scribble.selftrain import pseudo_samples

        prepared = [p for c in train_cases if (p := cached_case(c, cfg, cache)) is not None]
        samples = pseudo_samples(prepared, cfg, labels_from[0], labels_from[1], resolve_device(cfg.device))
    failures += val_failures
    images = {c.case_id: next(iter(c.images.values()), "") for c in [*train_cases, *val_cases]}
    job = Job(out / "failures.csv", fresh=True)
    for f in failures:
        job.fail(f["case_id"], f["error"], "load", images.get(f["case_id"], ""), f.get("error_class"))
    log = job.summary().log
    if not samples:
        raise InvalidDataError(f"no training samples from {len(train_cases)} case(s) ({len(failures)} failed)")
    seg = cfg.seg_config()
    if labels_from is not None:
        seg = seg.model_copy(update={"loss": cfg.pseudo_loss})
    scribble = cfg.model_dump(mode="json")
    run_config = {f"scribble.{k}": v for k, v in scribble.items()}
    if cfg.method == "dmpls":
        from medwss.scribble.dmpls import train_dual_branch

        model, history = train_dual_branch(
            samples, seg, val or None, checkpoint=out / "checkpoint.pt", progress=progress,
            run_config=run_config, run_only=("scribble.device",), pseudo_weight=cfg.pseudo_weight,
        )  # fmt: skip
    else:
        model, history = train_segmenter(
            samples, seg, val or None, checkpoint=out / "checkpoint.pt", progress=progress,
            run_config=run_config, run_only=("scribble.device",),
        )  # fmt: skip
    multiple = size_multiple(seg.channels)
    patch = [padded_size(max(int(sm.target.shape[a]) for sm in samples), multiple) for a in range(seg.spatial_dims)]
    save_segmenter(model, seg, out / "model.pt", meta={"scribble": scribble, "patch_size": patch})
    write_json(out / "config.json", scribble)
    write_json(out / "history.json", history)
    dices = [h["val_dice"] for h in history if "val_dice" in h]
    return {
        "train_cases": len(train_cases),
        "train_samples": len(samples),
        "val_samples": len(val),
        "failed": len(failures),
        "failures": str(log) if failures else None,
        "final_loss": history[-1]["loss"],
        "best_val_dice": max(dices) if dices else None,
    }


def _previous_round(
    manifest: Manifest,
    cfg: ScribbleConfig,
    out: Path,
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    progress: bool,
    cache: dict[str, Any],
) -> tuple[torch.nn.Module, SegTrainConfig] | None:
    """Self-training: the model whose pseudo labels this round trains on (None: not self-training).

    Round n's labels come from round n − 1, trained into ``out/round_<n-1>`` with the same config
    (``self_training`` one less), or for the first round from ``pseudo_model`` when set.
    """
    if not cfg.self_training:
        return None
    prev = cfg.model_copy(update={"self_training": cfg.self_training - 1})
    if prev.self_training == 0 and cfg.pseudo_model:
        path = Path(cfg.pseudo_model)
    else:
        path = out / f"round_{prev.self_training}" / "model.pt"
        train_model(manifest, prev, path.parent, train_cases, val_cases, progress, cache)
    model, seg, _ = load_segmenter(path)
    return model, seg


def train_ensemble(
    manifest: Manifest,
    cfg: ScribbleConfig,
    out: str | Path,
    k: int,
    train_cases: Sequence[Case] | None = None,
    val_cases: Sequence[Case] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Train `k` members with seeds ``cfg.seed + i`` into ``out/member_<i>``; members already done are kept."""
    paths = []
    for i in range(k):
        member = Path(out) / f"member_{i}"
        if not (member / "model.pt").exists():
            train_model(
                manifest, cfg.model_copy(update={"seed": cfg.seed + i}), member, train_cases, val_cases, progress
            )
        paths.append(member / "model.pt")
    return paths


def load_members(paths: Sequence[str | Path]) -> list[Member]:
    """Models with their configs; all must share the input settings (sequences, crop, spacing, classes)."""
    members: list[Member] = []
    for p in paths:
        model, seg, meta = load_segmenter(p)
        if "scribble" not in meta:
            raise InvalidDataError("not a scribble model (no input settings in its metadata)", p)
        patch = tuple(int(v) for v in meta["patch_size"]) if meta.get("patch_size") else None
        members.append((model, seg, ScribbleConfig.model_validate(meta["scribble"]), patch))
    keys = ("sequences", "reference", "crop_mm", "spacing_mm", "use_zones", "num_classes")
    first = members[0][2] if members else None
    for _, _, c, _ in members[1:]:
        if first is not None and any(getattr(c, k) != getattr(first, k) for k in keys):
            raise InvalidDataError(
                "ensemble members differ in their input settings (sequences, reference, crop, spacing, classes)"
            )
    return members


def class_probs(
    members: Sequence[Member], ci: CaseInput, overlap: float = 0.25, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(K, X, Y, Z) class probabilities on the crop grid, averaged over members.

    2D members see the axial slices ``[..., z]`` of the crop, cut (and resized to their
    ``slice_size``) and pasted back by `medwss.data.slicer`; 3D members slide windows of their
    training patch size (`Member`) over the crop, overlapping by `overlap`, on `device`; the crop
    and the result stay on the host.
    """
    acc: np.ndarray | None = None
    for model, seg, cfg, patch in members:
        if seg.spatial_dims == 2:
            geom = slice_geometry(ci.grid, cfg)
            stack = geom.cut(np.moveaxis(ci.image, 0, -1))  # (N, C, H, W)
            probs = predict_probs(model, list(stack), seg, device=device)
            prob = np.moveaxis(geom.paste(np.stack(probs), label=False), -1, 0)  # (K, X, Y, Z)
        else:
            prob = segment_probs(model, ci.image, patch, overlap, multiple=size_multiple(seg.channels), device=device)
        acc = prob.astype(np.float32) if acc is None else acc + prob
    if acc is None:
        raise InvalidDataError("no model to predict with")
    return acc / len(members)


def lesion_prob(
    members: Sequence[Member], ci: CaseInput, overlap: float = 0.25, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(X, Y, Z) probability of class 1 (the lesion of a binary model) on the crop grid (see `class_probs`)."""
    return class_probs(members, ci, overlap, device)[1]


def case_prediction(
    members: Sequence[Member], ci: CaseInput, overlap: float = 0.25, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The prediction on the stored reference grid: lesion probability (binary) or int64 label map (K > 2)."""
    probs = class_probs(members, ci, overlap, device)
    if probs.shape[0] == 2:
        return paste_back(probs[1], ci.grid, ci.reference)
    back = np.stack([paste_back(p, ci.grid, ci.reference) for p in probs])  # 0 outside the crop
    return back.argmax(0).astype(np.int64)


def predict_cases(
    manifest: Manifest | None,
    cases: Sequence[Case],
    model_paths: Sequence[str | Path],
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    formats: Sequence[str] = ("nifti",),
    *,
    overlap: float = 0.25,
    device: str = "cpu",
    subdir: str = "predictions",
    job: Job | None = None,
    largest_component: Largest = "none",
) -> dict[str, Any]:
    """Write ``out/<subdir>/<case_id>.nii.gz`` for every case (members averaged); skip existing files.

    The map is the lesion probability of a binary model, the label map of a K-class one (module
    docstring). `formats` beyond ``nifti`` (that map, always written) add the label map
    (lesion probability >= 0.5, or the K-class labels) on the reference grid as ``<case_id>_labels.nii.gz`` with a Slicer colour
    table (``slicer``) and as ``<case_id>_labels_seg.dcm`` (``dicom-seg``, for a DICOM reference series),
    through `medwss.io.seg_export.write_outputs`.

    Args:
        manifest: The cases' manifest (its folder resolves ``meta_zones``); None for cases from a folder.
        overlap: Sliding-window overlap of 3D models.
        device: Where the networks run (``auto``: CUDA when present); volumes stay on the host.
        subdir: Folder under `out` for the maps (``""``: `out` itself, as ``predict -i -o`` writes).
        job: The `medwss.jobs.Job` the cases run through (stage ``predict``; default one without a
            log file).
        largest_component: Post-processing of K-class label maps: keep each class's largest
            connected component in the volume (``volume``) or in every slice of the stored last axis
            (``slice``), `medwss.scribble.selftrain.largest_components`; ``none`` (binary maps: always).

    Returns:
        ``{"done", "skipped", "failed"}``: counts of this call and its failure rows (`medwss.jobs.FIELDS`).
    """
    members = load_members(model_paths)
    cfg = members[0][2]
    dev = resolve_device(device)
    pred_dir = Path(out) / subdir if subdir else Path(out)
    pred_dir.mkdir(parents=True, exist_ok=True)
    job = job if job is not None else Job(None)
    root = _root(manifest)

    def one(case: Case) -> None:
        target = pred_dir / f"{case.case_id}.nii.gz"
        ci = load_case(case, cfg.sequences, cfg.crop_mm, cfg.spacing_mm, root, cfg.use_zones, cfg.reference)
        pred = case_prediction(members, ci, overlap, dev)
        binary = cfg.num_classes == 2
        if binary:
            save_nifti(ci.reference.with_array(pred), target)
        else:
            pred = largest_components(pred, cfg.num_classes, largest_component)
            save_label_map(pred, target, ci.reference.affine)
        if any(f != "nifti" for f in formats):
            from medwss.io.seg_export import write_outputs

            extra = [f for f in formats if f != "nifti"]
            labels = (np.asarray(pred) >= 0.5).astype(np.int64) if binary else pred
            spec = "lesion" if binary else LabelSpec.from_classes({n: c for c, n in enumerate(cfg.names()) if c})
            write_outputs(ci.reference, labels, spec, pred_dir, extra, name=f"{case.case_id}_labels")

    job.run(
        cases, one, stage="predict", image=lambda c: next(iter(c.images.values()), ""), progress=progress,
        is_done=lambda c: not overwrite and (pred_dir / f"{c.case_id}.nii.gz").exists(), desc="predict",
    )  # fmt: skip
    ids = {c.case_id for c in cases}
    done = sum(c.case_id in job.done_ids for c in cases)
    skipped = sum(c.case_id in job.skipped_ids for c in cases)
    failed = [row for cid, row in job.failures.items() if cid in ids]
    return {"done": done, "skipped": skipped, "failed": failed}
