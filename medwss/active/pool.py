"""The slice pool: every slice of the volumes of a manifest, with its patient, volume and slice index.

A `SlicePool` keeps a table of slices (`SliceRef`) and a stack of small thumbnails (``(N, 1, T, T)``
in [0, 1]) for the metric encoder; full-resolution slices and their ground truth are read from the
volumes on demand (`SliceReader`, caching one volume at a time), so pools of many volumes stay small.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from medwss.errors import InvalidDataError


@dataclass(frozen=True)
class SliceRef:
    """One slice of the pool: ``slice_id`` is ``<case_id>_z<index>`` (also the exported file name)."""

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


def normalise(array: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Intensities to [0, 1]: clipped to `window` (CT in HU), else to the 1st–99th percentile."""
    a = np.asarray(array, dtype=np.float32)
    lo, hi = window if window is not None else (float(np.percentile(a, 1)), float(np.percentile(a, 99)))
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def remap_labels(label: np.ndarray, classes: Sequence[Sequence[int]] | None) -> np.ndarray:
    """Label map → classes ``0..K-1``: class ``c + 1`` gathers the source labels ``classes[c]`` (None: as is)."""
    lab = np.asarray(label).astype(np.int64)
    if classes is None:
        return lab
    out = np.zeros(lab.shape, dtype=np.int64)
    for c, values in enumerate(classes, start=1):
        out[np.isin(lab, list(values))] = c
    return out


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
        with open(require_file(folder / "pool.csv"), newline="") as fh:
            rows = list(csv.DictReader(fh))
        refs = [SliceRef(**{**r, "volume": int(r["volume"]), "index": int(r["index"])}) for r in rows]  # type: ignore[arg-type]
        thumbs = np.load(require_file(folder / "pool_thumbs.npy"))
        if len(thumbs) != len(refs):
            raise InvalidDataError(f"pool_thumbs.npy has {len(thumbs)} slices, pool.csv {len(refs)}", folder)
        return cls(refs, thumbs)


def build_pool(
    cases: Sequence,  # medwss.data.manifest.Case
    window: tuple[float, float] | None = (-1000.0, 1000.0),
    thumb_size: int = 64,
    slice_range: tuple[int, int] | None = None,
    progress: bool = True,
) -> tuple[SlicePool, list[str]]:
    """The axial slices (last array axis) of every case's image.

    Args:
        cases: Manifest cases; their ``image`` is read and their ``mask`` (if any) kept as the label path.
        window: Intensity window for the thumbnails (None: per-volume percentiles).
        thumb_size: Side of the thumbnails.
        slice_range: Keep slices ``lo <= k < hi`` only (None: all).
        progress: Show a progress bar.

    Returns:
        The pool and one message per case that could not be read (skipped).
    """
    from medwss.errors import MedwssError
    from medwss.io import load_volume

    refs: list[SliceRef] = []
    thumbs: list[np.ndarray] = []
    skipped: list[str] = []
    for vol_id, case in enumerate(tqdm(list(cases), desc="slice pool", disable=not progress)):
        try:
            vol = load_volume(case.image)
            if vol.array.ndim != 3:
                raise InvalidDataError(f"expected a 3D volume, got shape {vol.shape}", case.image)
        except (MedwssError, OSError, ValueError) as exc:
            skipped.append(f"{case.case_id}: {exc}")
            continue
        arr = normalise(vol.array, window)
        lo, hi = slice_range if slice_range is not None else (0, arr.shape[2])
        ks = list(range(max(lo, 0), min(hi, arr.shape[2])))
        thumbs.append(thumbnail(np.moveaxis(arr[:, :, ks], 2, 0), thumb_size))
        label = str(case.mask) if case.mask is not None else ""
        for k in ks:
            refs.append(
                SliceRef(
                    slice_name(case.case_id, k),
                    case.case_id,
                    case.patient_id,
                    vol_id,
                    k,
                    str(case.image),
                    label,
                    case.split or "",
                )
            )
    if not refs:
        raise InvalidDataError(f"no readable volume among {len(cases)} cases ({'; '.join(skipped[:3])})")
    return SlicePool(refs, np.concatenate(thumbs).astype(np.float32)), skipped


class SliceReader:
    """Full-resolution slices (normalised images and remapped labels) of a pool, one volume cached at a time."""

    def __init__(self, window: tuple[float, float] | None, classes: Sequence[Sequence[int]] | None = None) -> None:
        self.window = window
        self.classes = classes
        self._cache: dict[str, np.ndarray] = {}

    def _volume(self, path: str, label: bool) -> np.ndarray:
        from medwss.io import load_volume

        key = ("L:" if label else "I:") + path
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.clear()
            arr = load_volume(path).array
            self._cache[key] = remap_labels(arr, self.classes) if label else normalise(arr, self.window)
        return self._cache[key]

    def image(self, ref: SliceRef) -> np.ndarray:
        """``(1, H, W)`` float32 in [0, 1]."""
        return self._volume(ref.image, False)[None, :, :, ref.index].astype(np.float32)

    def label(self, ref: SliceRef) -> np.ndarray:
        """``(H, W)`` int64 classes from the case's mask (the oracle)."""
        if not ref.label:
            raise InvalidDataError(f"slice {ref.slice_id} has no ground-truth mask in the manifest")
        return self._volume(ref.label, True)[:, :, ref.index]
