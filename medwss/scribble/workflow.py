"""Train, predict and ensemble scribble-supervised lesion segmenters from a manifest.

Layout of a training folder: ``model.pt`` (the one model file, kind ``segmenter``, with the
`ScribbleConfig` in its metadata), ``checkpoint.pt`` (the engine's, written every epoch and resumed
from when a run is repeated with the same settings — any other setting, epochs included, is an error
naming it), ``history.json``, ``config.json``, ``failures.json`` (cases skipped) and ``run.json``
(written by the CLI). An
ensemble folder holds ``member_<i>/`` with seeds ``seed + i``. Predictions are
``<out>/predictions/<case_id>.nii.gz``: float32 lesion probability on the stored grid of the case's
reference channel (T2, else the first of ``sequences``; = its ``mask`` grid), zero outside the crop,
with the stored affine — the input of `medwss evaluate`. 2D models see the axial slices of the crop
grid (built on the canonical grid, so axial whatever the stored axis order). An ensemble averages the
members' probabilities.

3D models predict by sliding windows (`medwss.seg.inference.segment_probs`: Gaussian blending,
windows on the model's device, the volume on the host) of the training patch size, stored as
``patch_size`` in the model file's metadata (the padded size of the largest training crop; files
written before it: the crop in-plane and all slices, one window as before), overlapping by
``overlap``. `predict_cases` also takes cases without a manifest (`medwss.io.folder.cases_from_folder`)
and writes them straight into ``out`` with ``subdir=""``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medwss.data.manifest import Case, Manifest
from medwss.errors import InvalidDataError, MedwssError
from medwss.io import save_nifti
from medwss.io.atomic import write_text
from medwss.scribble.config import ScribbleConfig
from medwss.scribble.dataset import build_samples
from medwss.scribble.mri_input import CaseInput, load_case, paste_back
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
) -> dict[str, Any]:
    """Train one segmenter; the epoch of best validation Dice (full masks of `val_cases`) is kept.

    Args:
        manifest: The manifest (its folder resolves relative paths).
        cfg: Input, supervision and training settings.
        out: Output folder.
        train_cases: Cases to train on (default: split ``train``).
        val_cases: Cases with masks for model selection (default: split ``val``; empty: last epoch).
        progress: Show progress bars.

    Returns:
        Summary: sample counts, skipped cases, final and best validation Dice.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = _root(manifest)
    train_cases = manifest.split("train") if train_cases is None else list(train_cases)
    val_cases = manifest.split("val") if val_cases is None else list(val_cases)
    samples, failures = build_samples(train_cases, cfg, root, progress=progress)
    val, val_failures = build_samples(val_cases, cfg, root, validation=True, progress=progress)
    failures += val_failures
    write_text(out / "failures.json", json.dumps(failures, indent=2) + "\n")
    if not samples:
        raise InvalidDataError(f"no training samples from {len(train_cases)} case(s) ({len(failures)} failed)")
    seg = cfg.seg_config()
    scribble = cfg.model_dump(mode="json")
    model, history = train_segmenter(
        samples, seg, val or None, checkpoint=out / "checkpoint.pt", progress=progress,
        run_config={f"scribble.{k}": v for k, v in scribble.items()}, run_only=("scribble.device",),
    )  # fmt: skip
    multiple = size_multiple(seg.channels)
    patch = [padded_size(max(int(sm.target.shape[a]) for sm in samples), multiple) for a in range(seg.spatial_dims)]
    save_segmenter(model, seg, out / "model.pt", meta={"scribble": scribble, "patch_size": patch})
    write_text(out / "config.json", json.dumps(scribble, indent=2) + "\n")
    write_text(out / "history.json", json.dumps(history, indent=2) + "\n")
    dices = [h["val_dice"] for h in history if "val_dice" in h]
    return {
        "train_cases": len(train_cases),
        "train_samples": len(samples),
        "val_samples": len(val),
        "failed": len(failures),
        "final_loss": history[-1]["loss"],
        "best_val_dice": max(dices) if dices else None,
    }


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
    """Models with their configs; all must share the input settings (sequences, crop, spacing)."""
    members: list[Member] = []
    for p in paths:
        model, seg, meta = load_segmenter(p)
        if "scribble" not in meta:
            raise InvalidDataError("not a scribble model (no input settings in its metadata)", p)
        patch = tuple(int(v) for v in meta["patch_size"]) if meta.get("patch_size") else None
        members.append((model, seg, ScribbleConfig.model_validate(meta["scribble"]), patch))
    keys = ("sequences", "crop_mm", "spacing_mm", "use_zones")
    first = members[0][2] if members else None
    for _, _, c, _ in members[1:]:
        if first is not None and any(getattr(c, k) != getattr(first, k) for k in keys):
            raise InvalidDataError("ensemble members differ in their input settings (sequences, crop, spacing)")
    return members


def lesion_prob(
    members: Sequence[Member], ci: CaseInput, overlap: float = 0.25, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(X, Y, Z) lesion probability on the crop grid, averaged over members (2D models: per axial slice ``[..., z]``).

    3D members slide windows of their training patch size (`Member`) over the crop, overlapping by
    `overlap`, on `device`; the crop and the result stay on the host.
    """
    acc = np.zeros(ci.image.shape[1:], np.float32)
    for model, seg, _, patch in members:
        if seg.spatial_dims == 2:
            slices = [ci.image[..., z] for z in range(ci.image.shape[-1])]
            probs = predict_probs(model, slices, seg, device=device)
            acc += np.stack([p[1] for p in probs], axis=-1)
        else:
            acc += segment_probs(model, ci.image, patch, overlap, multiple=size_multiple(seg.channels), device=device)[
                1
            ]
    return acc / max(len(members), 1)


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
) -> dict[str, Any]:
    """Write ``out/<subdir>/<case_id>.nii.gz`` for every case (members averaged); skip existing files.

    `formats` beyond ``nifti`` (the probability map, always written) add the lesion label map
    (probability >= 0.5) on the reference grid as ``<case_id>_labels.nii.gz`` with a Slicer colour
    table (``slicer``) and as ``<case_id>_labels_seg.dcm`` (``dicom-seg``, for a DICOM reference series),
    through `medwss.io.seg_export.write_outputs`.

    Args:
        manifest: The cases' manifest (its folder resolves ``meta_zones``); None for cases from a folder.
        overlap: Sliding-window overlap of 3D models.
        device: Where the networks run (``auto``: CUDA when present); volumes stay on the host.
        subdir: Folder under `out` for the maps (``""``: `out` itself, as ``predict -i -o`` writes).

    Returns:
        ``{"done", "skipped", "failed": [{"case_id", "error"}]}``.
    """
    members = load_members(model_paths)
    cfg = members[0][2]
    dev = resolve_device(device)
    pred_dir = Path(out) / subdir if subdir else Path(out)
    pred_dir.mkdir(parents=True, exist_ok=True)
    done, skipped, failed = 0, 0, []
    for case in tqdm(cases, desc="predict", disable=not progress, leave=False):
        target = pred_dir / f"{case.case_id}.nii.gz"
        if target.exists() and not overwrite:
            skipped += 1
            continue
        try:
            ci = load_case(case, cfg.sequences, cfg.crop_mm, cfg.spacing_mm, _root(manifest), cfg.use_zones)
            prob = paste_back(lesion_prob(members, ci, overlap, dev), ci.grid, ci.reference)
            save_nifti(ci.reference.with_array(prob), target)
            if any(f != "nifti" for f in formats):
                from medwss.io.seg_export import write_outputs

                extra = [f for f in formats if f != "nifti"]
                lesion = (np.asarray(prob) >= 0.5).astype(np.int64)
                write_outputs(ci.reference, lesion, "lesion", pred_dir, extra, name=f"{case.case_id}_labels")
            done += 1
        except (MedwssError, OSError, ValueError) as exc:
            failed.append({"case_id": case.case_id, "error": str(exc)})
    return {"done": done, "skipped": skipped, "failed": failed}
