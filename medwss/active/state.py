"""On-disk state of an active-learning project: the pool, the rounds, the annotations, the model.

Layout of a state folder (every file written atomically, so an interrupted command leaves either
the old or the new version, never half a file)::

    config.json          resolved ALConfig
    pool.csv             one row per slice (slice_id, case, patient, volume, index, image, label)
    pool_thumbs.npy      (N, 1, T, T) thumbnails for the metric encoder
    rounds.json          one record per selection round: strategy, budget, selected slice ids
    annotations.json     slice_id → round, kind (full | scribble), stored label file, source file, size bounds
    labels/<id>.nii.gz   ingested labels on the exported slice's grid (int16 NIfTI, -1 = unlabelled)
    features/            metric encoder weights and cached embeddings
    model/               segmenter.pt, training checkpoints, run.json

The image and label paths of ``pool.csv`` (and the manifest of ``source.json``) are stored
absolute, so commands work from any directory; a relative path (hand-made or moved folders, and
folders written before this rule, whose paths were relative to the directory of ``al init``) is
read relative to the state folder, else to the working directory. A state file that cannot be
read (bad JSON, wrong shape, missing columns) is refused with one line naming it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from medwss.active.metric import MetricConfig
from medwss.active.pool import SlicePool, SliceRef
from medwss.config import StrictConfig
from medwss.data.labels import LabelSpec, label_spec
from medwss.errors import ConfigError, InvalidDataError, require_file
from medwss.io.atomic import write_json
from medwss.seg.train import SegTrainConfig


class ALConfig(StrictConfig):
    """An active-learning project (configs/al.yaml)."""

    window: tuple[float, float] | str | None = "soft_tissue"
    """Intensity window mapped to [0, 1]: a name of `medwss.transforms.intensity.CT_WINDOWS`
    (``soft_tissue`` = -160..240 HU), ``(low, high)``, or None for per-volume 1st–99th percentiles."""
    thumb_size: int = Field(default=64, ge=8)
    """Side of the slice thumbnails the selection features are computed on."""
    classes: str | dict[str, list[int] | int] | list[list[int]] | None = None
    """How mask labels become classes: a `medwss.data.labels.LABEL_SPECS` name (``totalseg``), a
    mapping ``{kidney: [2, 3], tumour: 4}``, or value groups ``[[1], [2, 3], [7]]`` (class c + 1
    gathers ``classes[c]``); None: the masks' labels as they are."""
    num_classes: int = Field(default=2, ge=2)
    """Classes including background (must equal the label spec's when classes is given)."""
    unlabelled: int | None = None
    """A value meaning "unlabelled" in ingested annotation files, besides -1 (and 255 in uint8 files)."""
    splits: list[Literal["train", "val", "test"]] | None = None
    """Manifest splits whose volumes form the pool (None: all)."""
    strategy: str = "contrastive_coreset"
    """Default strategy: random, entropy, margin, bald, coreset, contrastive_coreset, typiclust."""
    budget: str = "1%"
    """Slices per round: a percentage of the pool (``1%``, at least one slice) or a count (``12``)."""
    fuse: dict[str, float] = Field(default_factory=dict)
    """Extra features fused into contrastive_coreset: ``untrained`` → weight."""
    mc_samples: int = Field(default=8, ge=2)
    """MC-dropout passes for BALD."""
    metric: MetricConfig = MetricConfig()
    """How the slice metric of contrastive_coreset is learned (a section of the YAML)."""
    seg: SegTrainConfig = SegTrainConfig(
        channels=(8, 16, 32), dropout=0.1, epochs=40, batch_size=4, lr=3e-3, loss="ce_dice"
    )
    """The 2D segmenter trained on the annotated slices (a section of the YAML)."""
    size_weight: float = Field(default=0.005, ge=0)
    """Size-penalty weight when training on scribbles."""
    size_upper_fraction: float = Field(default=0.5, gt=0, le=1)
    """Scribble bounds: a scribbled class covers at most this fraction of the slice (and at least its scribble)."""
    min_steps: int = Field(default=150, ge=0)
    """Segmenter training runs at least this many steps (more epochs when few slices are annotated)."""
    seed: int = 0
    """Seed of the selection and of training."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda, cuda:1, ..."""

    def model_post_init(self, __context: Any) -> None:
        from medwss.errors import MedwssError
        from medwss.transforms.intensity import resolve_window

        try:
            resolve_window(self.window)
            spec = self.label_spec
        except MedwssError as exc:
            raise ConfigError(exc.message) from exc
        if spec is not None and self.num_classes != spec.num_classes:
            raise ConfigError(
                f"num_classes is {self.num_classes} but classes has {spec.num_classes - 1} (+ background): "
                f"set num_classes: {spec.num_classes}"
            )

    @property
    def label_spec(self) -> LabelSpec | None:
        """`classes` as a `LabelSpec` (None: labels used as they are)."""
        if self.classes is None:
            return None
        if isinstance(self.classes, list):
            return LabelSpec.from_groups(self.classes)
        return label_spec(self.classes)


def parse_budget(budget: str | int, pool_size: int) -> int:
    """``"1%"`` → ceil(1% of the pool), at least 1; ``"12"`` → 12."""
    text = str(budget).strip()
    try:
        n = math.ceil(float(text[:-1]) / 100 * pool_size) if text.endswith("%") else int(text)
    except ValueError as exc:
        raise ConfigError(f"budget '{budget}' is neither a percentage (1%) nor a count (12)") from exc
    if n < 1:
        raise ConfigError(f"budget '{budget}' selects no slice from a pool of {pool_size}")
    return max(1, n)


def read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidDataError(f"not valid JSON ({exc})", path) from exc


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return "; ".join(lines[:3]) if lines else type(exc).__name__


def _absolute(ref: SliceRef) -> SliceRef:
    """`ref` with its image and label paths absolute (as given relative to the working directory)."""
    return replace(ref, image=os.path.abspath(ref.image), label=os.path.abspath(ref.label) if ref.label else "")


def _located(ref: SliceRef, folder: Path) -> SliceRef:
    """`ref` with relative paths resolved: against the state folder, else the working directory."""

    def where(p: str) -> str:
        if not p or os.path.isabs(p):
            return p
        inside = folder / p
        return str(inside.absolute()) if inside.exists() or not Path(p).exists() else os.path.abspath(p)

    return replace(ref, image=where(ref.image), label=where(ref.label))


def _check_records(rounds: Any, annotations: Any, folder: Path) -> None:
    """Refuse rounds/annotations files of the wrong shape, naming the file."""
    ok = isinstance(rounds, list) and all(
        isinstance(r, dict) and isinstance(r.get("selected"), list) and isinstance(r.get("round"), int) for r in rounds
    )
    if not ok:
        raise InvalidDataError(
            "not a list of rounds ({round: int, selected: [slice ids], ...})", folder / "rounds.json"
        )
    ok = isinstance(annotations, dict) and all(
        isinstance(a, dict) and isinstance(a.get("file"), str) for a in annotations.values()
    )
    if not ok:
        raise InvalidDataError("not a map of slice id -> {file, kind, ...}", folder / "annotations.json")


class ALState:
    """A state folder (see the module docstring); every mutation is written through at once."""

    def __init__(self, folder: str | Path) -> None:
        from pydantic import ValidationError

        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidDataError("not an active-learning state folder (al init writes one)", self.folder)
        cfg_path = require_file(self.folder / "config.json")
        raw = read_json(cfg_path, {})
        if not isinstance(raw, dict):
            raise InvalidDataError("not an active-learning config (a JSON object)", cfg_path)
        try:
            self.config = ALConfig.model_validate(raw)
        except (ValidationError, ConfigError) as exc:
            raise InvalidDataError(f"not a valid active-learning config: {_first_line(exc)}", cfg_path) from exc
        pool = SlicePool.load(self.folder)
        self.pool = SlicePool([_located(r, self.folder) for r in pool.refs], pool.thumbs)
        self.rounds: list[dict[str, Any]] = read_json(self.folder / "rounds.json", [])
        self.annotations: dict[str, dict[str, Any]] = read_json(self.folder / "annotations.json", {})
        _check_records(self.rounds, self.annotations, self.folder)

    @staticmethod
    def create(folder: str | Path, pool: SlicePool, config: ALConfig, source: str = "") -> ALState:
        """Write a new state folder (refuses to overwrite one that has rounds)."""
        folder = Path(folder)
        if (folder / "rounds.json").exists() and read_json(folder / "rounds.json", []):
            raise ConfigError("this state folder already has selection rounds; use another folder", folder)
        SlicePool([_absolute(r) for r in pool.refs], pool.thumbs).save(folder)
        write_json(folder / "config.json", {**config.model_dump(mode="json")})
        write_json(folder / "source.json", {"manifest": os.path.abspath(source) if source else "", "slices": len(pool)})
        return ALState(folder)

    # Sets of slices.
    def selected_ids(self) -> list[str]:
        return [s for r in self.rounds for s in r["selected"]]

    def pending_ids(self) -> list[str]:
        """Selected but not annotated yet."""
        return [s for s in self.selected_ids() if s not in self.annotations]

    def round_of(self, slice_id: str) -> int | None:
        for r in self.rounds:
            if slice_id in r["selected"]:
                return int(r["round"])
        return None

    # Mutations (each written through).
    def add_round(self, record: dict[str, Any]) -> None:
        taken = set(self.selected_ids())
        again = [s for s in record["selected"] if s in taken]
        if again:
            raise InvalidDataError(f"slices already selected in an earlier round: {', '.join(again[:5])}")
        self.rounds.append(record)
        write_json(self.folder / "rounds.json", self.rounds)

    def add_annotation(
        self,
        slice_id: str,
        label: np.ndarray,
        kind: str,
        source: str,
        bounds: np.ndarray | None = None,
        affine: np.ndarray | None = None,
    ) -> None:
        """Store an ingested label ``(H, W)`` (-1 = unlabelled) as int16 NIfTI on the slice's grid, then record it."""
        from medwss.data.labels import save_label_map

        name = f"labels/{slice_id}.nii.gz"
        save_label_map(label[:, :, None], self.folder / name, np.eye(4) if affine is None else affine)
        self.annotations[slice_id] = {
            "round": self.round_of(slice_id),
            "kind": kind,
            "file": name,
            "source": os.path.abspath(source) if source else "",
            "bounds": None if bounds is None else [[None if math.isnan(v) else float(v) for v in b] for b in bounds],
        }
        write_json(self.folder / "annotations.json", self.annotations)

    def load_annotation(self, slice_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The stored label ``(H, W)`` int64 (-1 = unlabelled) and its size bounds ``(K, 2)`` (NaN = none)."""
        from medwss.data.labels import load_label_map

        record = self.annotations[slice_id]
        path = require_file(self.folder / record["file"])
        if path.suffix == ".npz":  # state folders written before labels were NIfTI
            with np.load(path) as z:
                return z["label"], (z["bounds"] if "bounds" in z.files else None)
        label = load_label_map(path).array[:, :, 0]
        b = record.get("bounds")
        bounds = None if b is None else np.array([[np.nan if v is None else v for v in r] for r in b], np.float32)
        return label, bounds
