"""The slice pool: every axial slice of the volumes of a manifest, with its patient, volume and slice index.

A `SlicePool` keeps a table of slices (`SliceRef`) and a stack of small thumbnails (``(N, 1, T, T)``
in [0, 1]) for the metric encoder; full-resolution slices and their ground truth are read from the
volumes on demand (`SliceReader`, caching a few volumes at a time), so pools of many volumes stay small.

Slices are cut by the one slicer (`medwss.data.slicer.plan_slices`) on the canonical RAS+ grid, so
they are axial whatever the stored axis order, and a slice's ``index`` is its canonical axial index:
a volume and a permuted copy of it give the same pool. Intensities are mapped by
`medwss.transforms.intensity.normalise`, mask labels by a `medwss.data.labels.LabelSpec`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medwss.data.labels import LabelSpec
from medwss.data.slicer import plan_slices
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume
from medwss.transforms.intensity import Window, normalise


@dataclass(frozen=True)
class SliceRef:
    """One slice of the pool: ``slice_id`` is ``<case_id>_z<index>`` (also the exported file name).

    ``index`` is the canonical axial index (`medwss.data.slicer`), not an index into the stored array.
    """

    slice_id: str
    case_id: str
    patient_id: str
    volume: int
    index: int
    image: str
    label: str = ""
    split: str = ""


def slice_name(case_id: str, index: int) -> str:
    """The file-safe identifier of slice `index` of case `case_id`."""
    safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in case_id)
    return f"{safe}_z{index:03d}"


def thumbnail(slices: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` slices in [0, 1] → ``(N, 1, size, size)`` float32 (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]  # (N, 1, H, W)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).numpy()


@dataclass
class SlicePool:
    """Slices of a set of volumes and their thumbnails."""

    refs: list[SliceRef]
    thumbs: np.ndarray  # (N, 1, T, T)

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def ids(self) -> list[str]:
        return [r.slice_id for r in self.refs]

    def index_of(self) -> dict[str, int]:
        return {r.slice_id: i for i, r in enumerate(self.refs)}

    def groups(self, key: str) -> np.ndarray:
        """``(N,)`` integer ids of the slices' ``volume`` or ``patient`` (in order of first appearance)."""
        values = [r.volume if key == "volume" else r.patient_id for r in self.refs]
        lookup: dict[object, int] = {}
        return np.array([lookup.setdefault(v, len(lookup)) for v in values], dtype=np.int64)

    def slice_index(self) -> np.ndarray:
        return np.array([r.index for r in self.refs], dtype=np.int64)

    def save(self, folder: str | Path) -> None:
        """Write ``pool.csv`` and ``pool_thumbs.npy`` atomically."""
        from medwss.io.atomic import atomic_path

        folder = Path(folder)
        with atomic_path(folder / "pool_thumbs.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, self.thumbs.astype(np.float32))
        with atomic_path(folder / "pool.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(SliceRef.__dataclass_fields__))
            w.writeheader()
            w.writerows(asdict(r) for r in self.refs)

    @classmethod
    def load(cls, folder: str | Path) -> SlicePool:
        from medwss.errors import require_file

        folder = Path(folder)
        try:  # a damaged state file is refused naming it, not with a traceback
            with open(require_file(folder / "pool.csv"), newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            refs = [SliceRef(**{**r, "volume": int(r["volume"]), "index": int(r["index"])}) for r in rows]  # type: ignore[arg-type]
        except (TypeError, ValueError, KeyError, UnicodeDecodeError, csv.Error) as exc:
            raise InvalidDataError(f"not a slice pool table ({exc})", folder / "pool.csv") from exc
        try:
            thumbs = np.load(require_file(folder / "pool_thumbs.npy"), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidDataError(f"not a thumbnail array ({exc})", folder / "pool_thumbs.npy") from exc
        if not isinstance(thumbs, np.ndarray) or thumbs.ndim != 4:
            raise InvalidDataError("not an (N, 1, T, T) thumbnail array", folder / "pool_thumbs.npy")
        if len(thumbs) != len(refs):
            raise InvalidDataError(f"pool_thumbs.npy has {len(thumbs)} slices, pool.csv {len(refs)}", folder)
        return cls(refs, thumbs)


def _load_3d(path: str | Path) -> Volume:
    from medwss.io import load_volume

    vol = load_volume(path)
    if vol.array.ndim != 3:
        raise InvalidDataError(f"expected a 3D volume, got shape {vol.shape}", path)
    return vol


def build_pool(
    cases: Sequence,  # medwss.data.manifest.Case
    window: Window = "wide",
    thumb_size: int = 64,
    slice_range: tuple[int, int] | None = None,
    progress: bool = True,
) -> tuple[SlicePool, list[str]]:
    """The axial slices of every case's image (canonical axial axis, whatever the stored axis order).

    Args:
        cases: Manifest cases; their ``image`` is read and their ``mask`` (if any) kept as the label path.
        window: Intensity window of the thumbnails: ``(low, high)``, a name of
            `medwss.transforms.intensity.CT_WINDOWS`, or None for per-volume 1st–99th percentiles.
        thumb_size: Side of the thumbnails.
        slice_range: Keep canonical axial slices ``lo <= k < hi`` only (None: all).
        progress: Show a progress bar.

    Returns:
        The pool and one message per case that could not be read (skipped).
    """
    from medwss.jobs import Job

    refs: list[SliceRef] = []
    thumbs: list[np.ndarray] = []
    items = list(enumerate(cases))

    def one(item: tuple[int, Any]) -> None:
        vol_id, case = item
        vol = _load_3d(case.image)
        geom = plan_slices(vol)
        if slice_range is not None:
            n = len(geom)
            ks = list(range(max(slice_range[0], 0), min(slice_range[1], n)))
            geom = plan_slices(geom.orientation, indices=ks)
        thumb = thumbnail(geom.cut(normalise(vol.array, "window", window)), thumb_size)
        label = str(case.mask) if case.mask is not None else ""
        mine = [SliceRef(slice_name(case.case_id, k), case.case_id, case.patient_id, vol_id, k, str(case.image),
                         label, case.split or "") for k in geom.indices]  # fmt: skip
        thumbs.append(thumb)  # after every step that may fail: a failed case adds nothing
        refs.extend(mine)

    job = Job(None)  # per-case errors: `medwss.jobs.CASE_ERRORS`
    job.run(items, one, case_id=lambda it: it[1].case_id, image=lambda it: it[1].image, stage="load",
            progress=progress, desc="slice pool")  # fmt: skip
    skipped = [f"{c.case_id}: {job.failures[c.case_id]['message']}" for _, c in items if job.failed(c.case_id)]
    if not refs:
        raise InvalidDataError(f"no readable volume among {len(cases)} cases ({'; '.join(skipped[:3])})")
    return SlicePool(refs, np.concatenate(thumbs).astype(np.float32)), skipped


class SliceReader:
    """Full-resolution axial slices of a pool (normalised images, class-mapped labels), a few volumes cached.

    Args:
        window: Intensity window (as for `build_pool`).
        classes: How mask labels become classes ``0..K-1`` (None: the masks' labels as they are).
    """

    def __init__(self, window: Window = "soft_tissue", classes: LabelSpec | None = None) -> None:
        self.window = window
        self.classes = classes
        self._cache: dict[str, np.ndarray] = {}

    def _slices(self, path: str, label: bool) -> np.ndarray:
        """Every axial slice of a volume, ``(Z, H, W)``: canonical slice ``k`` is row ``k``."""
        key = ("L:" if label else "I:") + path
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.clear()
            if label:
                from medwss.data.labels import load_label_map

                vol = load_label_map(path)
                arr = vol.array if self.classes is None else self.classes.remap(vol.array)
            else:
                vol = _load_3d(path)
                arr = normalise(vol.array, "window", self.window)
            self._cache[key] = plan_slices(vol).cut(arr, label=label)
        return self._cache[key]

    def image(self, ref: SliceRef) -> np.ndarray:
        """``(1, H, W)`` float32 in [0, 1]."""
        return self._slices(ref.image, False)[ref.index][None]

    def label(self, ref: SliceRef) -> np.ndarray:
        """``(H, W)`` int64 classes from the case's mask (the oracle), -1 where the mask is unlabelled."""
        if not ref.label:
            raise InvalidDataError(f"slice {ref.slice_id} has no ground-truth mask in the manifest")
        return self._slices(ref.label, True)[ref.index]
