"""Bags for training: a manifest's cases with their feature bags and labels, as `Bag` tensors.

Bags written by other tools (CLAM, TRIDENT) carry only ``features`` and ``coords``; their tile
grid is inferred from the coordinates (the tile step is the most common gap between neighbouring
coordinates), so the grid-based aggregators work on them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medwss.data.manifest import Case, Manifest
from medwss.data.splits import kfold_cases, split_cases
from medwss.embed.store import FeatureBag, load_bag
from medwss.errors import InvalidDataError
from medwss.eval.heatmap import coordinate_step
from medwss.mil.base import Bag


def infer_grid(coords: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Grid index (N, D) and grid shape from tile coordinates on a regular lattice.

    For 2D slide coordinates (x, y) the index is (row, col) = (y, x) steps, matching medwss's tiles.
    """
    coords = np.asarray(coords, dtype=np.int64)
    index = np.zeros_like(coords)
    for axis in range(coords.shape[1]):
        step = coordinate_step(coords[:, axis]) or 1
        index[:, axis] = np.round((coords[:, axis] - coords[:, axis].min()) / step).astype(np.int64)
    if coords.shape[1] == 2:
        index = np.ascontiguousarray(index[:, ::-1])  # (x, y) -> (row, col)
    shape = tuple(int(v) + 1 for v in index.max(axis=0)) if len(index) else (0,) * coords.shape[1]
    return index, shape


def bag_tensors(fb: FeatureBag, tokens: bool = False) -> Bag:
    """A `Bag` (float32 tensors) from a stored feature bag, inferring the grid when the file has none."""
    grid_index, grid_shape = fb.grid_index, fb.grid_shape
    if (grid_index is None or grid_shape is None) and fb.coords is not None and len(fb):
        grid_index, grid_shape = infer_grid(fb.coords)
    as_t = lambda a, dt=torch.float32: None if a is None else torch.as_tensor(np.asarray(a), dtype=dt)  # noqa: E731
    return Bag(
        features=torch.as_tensor(np.asarray(fb.features), dtype=torch.float32),
        grid_index=as_t(grid_index, torch.long),
        grid_shape=tuple(int(v) for v in grid_shape) if grid_shape is not None else None,
        tokens=as_t(fb.tokens) if tokens else None,
        coords=as_t(fb.coords, torch.long),
    )


@dataclass
class LabelledBag:
    case: Case
    bag: Bag
    target: torch.Tensor  # (K,) float: 1 for the positive class (binary) or one-hot (K classes)


def n_outputs(labels: list[int], source: str | Path | None = None) -> int:
    """K: 1 for a binary task (labels 0/1), the number of classes otherwise.

    Raises:
        InvalidDataError: (naming `source`, the manifest) a negative label, or classes between 0 and
            the largest label that no case has (labels outside the task, e.g. 0, 1 and 7).
    """
    present = set(labels)
    if present and min(present) < 0:
        raise InvalidDataError(f"label {min(present)}: case labels must be 0/1 or 0..K-1", source)
    top = max(present, default=1)
    missing = sorted(set(range(top + 1)) - present)
    if top > 1 and missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise InvalidDataError(
            f"labels {sorted(present)}: no case has class {shown}; labels must be 0/1 or 0..K-1 (every class present)",
            source,
        )
    return 1 if top <= 1 else top + 1


def target_of(label: int, k: int) -> torch.Tensor:
    if k == 1:
        return torch.tensor([float(label)])
    t = torch.zeros(k)
    t[label] = 1.0
    return t


def load_bags(
    cases: list[Case],
    k: int,
    tokens: bool = False,
    require_label: bool = True,
    failures: list[dict[str, str]] | None = None,
) -> list[LabelledBag]:
    """Load every case's bag (manifest `features` column); a case without one is an error naming it.

    Args:
        failures: When given, a case whose bag cannot be used (missing, unreadable, NaN features,
            empty, or another feature width than the first bag) is appended here as
            ``{"case_id", "image", "error"}`` and left out, instead of failing the whole call.
    """
    from medwss.errors import MedwssError

    out: list[LabelledBag] = []
    for c in cases:
        try:
            if c.features is None:
                raise InvalidDataError(f"case {c.case_id} has no 'features' bag (run `medwss embed` first)", c.source)
            if require_label and c.label is None:
                raise InvalidDataError(f"case {c.case_id} has no label", c.features)
            fb = load_bag(c.features, tokens=tokens)
            if len(fb) == 0:
                raise InvalidDataError("bag holds no instances", c.features)
            if failures is not None and out and fb.features.shape[1] != out[0].bag.features.shape[1]:
                width = out[0].bag.features.shape[1]
                raise InvalidDataError(
                    f"bag has {fb.features.shape[1]} features per instance, others {width}", c.features
                )
            target = target_of(c.label, k) if c.label is not None else torch.full((k,), float("nan"))
        except MedwssError as exc:
            if failures is None:
                raise
            failures.append({"case_id": c.case_id, "image": str(c.features or ""), "error": str(exc)})
            continue
        out.append(LabelledBag(c, bag_tensors(fb, tokens), target))
    return out


def patient_split(manifest: Manifest, val_fraction: float, seed: int) -> dict[str, list[Case]]:
    """train/val/test cases: the manifest's `split` column when set, else a seeded patient-level split.

    Cases marked ``test`` stay out of training; without ``val`` cases, `val_fraction` of the training
    patients (stratified by the patients' highest label) become validation (`medwss.data.splits`).
    """
    cases = [c for c in manifest.cases if c.label is not None]
    test = [c for c in cases if c.split == "test"]
    val = [c for c in cases if c.split == "val"]
    train = [c for c in cases if c.split not in ("test", "val")]
    if not val and val_fraction > 0 and train:
        split_of = split_cases(train, (1.0 - val_fraction, val_fraction, 0.0), seed, stratify=("label",))
        val = [c for c in train if split_of[c.case_id] == "val"]
        train = [c for c in train if split_of[c.case_id] == "train"]
    return {"train": train, "val": val, "test": test}


def kfold_splits(manifest: Manifest, folds: int, seed: int) -> list[dict[str, list[Case]]]:
    """Patient-level k-fold stratified by label (`medwss.data.splits`): fold i validates on the i-th share of
    patients and trains on the rest; cases marked ``test`` are the test set of every fold."""
    cases = [c for c in manifest.cases if c.label is not None and c.split != "test"]
    test = [c for c in manifest.cases if c.split == "test" and c.label is not None]
    held = [{c.case_id for c in part} for part in kfold_cases(cases, folds, seed, stratify=("label",))]
    return [
        {
            "train": [c for c in cases if c.case_id not in ids],
            "val": [c for c in cases if c.case_id in ids],
            "test": test,
        }
        for ids in held
    ]
