"""2D slice sets from volumes: CT window, crop around an organ, resize, slice labels from a mask.

Every slice set holds images normalised to ``[-1, 1]`` (so a tanh output fits), the lesion mask
of each slice on the same grid and the slice label (1 = abnormal: the slice holds lesion voxels).
`SliceGeometry` remembers where each slice came from, so a 2D mask can go back into its volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medwss.errors import InvalidDataError
from medwss.io.volume import Volume


@dataclass(frozen=True)
class SliceSpec:
    """How volumes become slices.

    Attributes:
        window: Intensity window ``(low, high)`` (HU for CT) mapped to ``[-1, 1]``; None: per-volume 1–99 percentiles.
        size: Side of the square output slices.
        tumour_labels: Mask values that count as lesion.
        roi_labels: Mask values of the organ to crop around (and whose slices are kept); empty: whole slices.
        margin: Voxels added around the organ box.
        axis: Slicing axis (2 = axial for RAS volumes).
    """

    window: tuple[float, float] | None = (-160.0, 240.0)
    size: int = 64
    tumour_labels: tuple[int, ...] = (4,)
    roi_labels: tuple[int, ...] = (2, 3)
    margin: int = 6
    axis: int = 2

    def as_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SliceSpec:
        kw = dict(d)
        for k in ("window", "tumour_labels", "roi_labels"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass
class SliceGeometry:
    """Where a case's slices sit in its volume: crop box ``(i0, i1, j0, j1)`` and slice indices."""

    shape: tuple[int, int, int]
    box: tuple[int, int, int, int]
    indices: list[int]


@dataclass
class SliceSet:
    """Slices with labels. ``images`` (N, 1, S, S) float32 in [-1, 1]; ``masks`` (N, S, S) bool; ``labels`` (N,)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    case_ids: list[str] = field(default_factory=list)
    slice_index: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> SliceSet:
        idx = np.asarray(idx, dtype=int)
        return SliceSet(
            self.images[idx], self.masks[idx], self.labels[idx], [self.case_ids[i] for i in idx], self.slice_index[idx]
        )

    @staticmethod
    def concat(sets: Sequence[SliceSet]) -> SliceSet:
        if not sets:
            raise InvalidDataError("no slices to combine")
        return SliceSet(
            np.concatenate([s.images for s in sets]),
            np.concatenate([s.masks for s in sets]),
            np.concatenate([s.labels for s in sets]),
            [c for s in sets for c in s.case_ids],
            np.concatenate([s.slice_index for s in sets]),
        )


def window_normalise(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Map `window` (or the 1st–99th percentiles when None) linearly to ``[-1, 1]``, clipping outside."""
    lo, hi = window if window is not None else tuple(np.percentile(values, [1, 99]))
    if hi <= lo:
        raise InvalidDataError(f"empty intensity window ({lo}, {hi})")
    return (np.clip((values.astype(np.float32) - lo) / (hi - lo), 0, 1) * 2 - 1).astype(np.float32)


def resize2d(a: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """Resize a 2D array to `shape` (order 1 for images, 0 for masks)."""
    zoom = (shape[0] / a.shape[0], shape[1] / a.shape[1])
    out = ndimage.zoom(a.astype(np.float32), zoom, order=order, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def roi_box(labels: np.ndarray, roi_labels: Sequence[int], margin: int, axis: int) -> tuple[tuple[int, ...], list[int]]:
    """Square in-plane box around `roi_labels` (with `margin`) and the slice indices holding them."""
    moved = np.moveaxis(labels, axis, -1)
    if not roi_labels:
        return (0, moved.shape[0], 0, moved.shape[1]), list(range(moved.shape[2]))
    roi = np.isin(moved, list(roi_labels))
    if not roi.any():
        raise InvalidDataError(f"mask holds none of the organ labels {list(roi_labels)}")
    ii, jj, kk = np.nonzero(roi)
    i0, i1, j0, j1 = ii.min() - margin, ii.max() + 1 + margin, jj.min() - margin, jj.max() + 1 + margin
    side = max(i1 - i0, j1 - j0)
    ci, cj = (i0 + i1) // 2, (j0 + j1) // 2
    i0, j0 = ci - side // 2, cj - side // 2
    return (int(i0), int(i0 + side), int(j0), int(j0 + side)), sorted({int(k) for k in kk})


def _crop(a2: np.ndarray, box: tuple[int, ...], fill: float) -> np.ndarray:
    """Crop `a2` to `box`, padding with `fill` where the box leaves the array."""
    i0, i1, j0, j1 = box
    out = np.full((i1 - i0, j1 - j0), fill, dtype=np.float32)
    si0, si1, sj0, sj1 = max(i0, 0), min(i1, a2.shape[0]), max(j0, 0), min(j1, a2.shape[1])
    out[si0 - i0 : si1 - i0, sj0 - j0 : sj1 - j0] = a2[si0:si1, sj0:sj1]
    return out


def volume_slices(
    image: Volume, labels: Volume | None, spec: SliceSpec, case_id: str = ""
) -> tuple[SliceSet, SliceGeometry]:
    """Slices of one volume: windowed, cropped around the organ, resized to ``spec.size``.

    Without `labels` whole slices are taken and every mask is empty (labels unknown: 0).

    Raises:
        InvalidDataError: The grids differ or the mask holds no organ label.
    """
    img = image.array[..., 0] if image.array.ndim == 4 else image.array
    if labels is not None and labels.array.shape[:3] != img.shape:
        raise InvalidDataError(f"mask grid {labels.array.shape[:3]} differs from image grid {img.shape}")
    lab = (
        np.rint(labels.array[..., 0] if labels is not None and labels.array.ndim == 4 else labels.array).astype(int)
        if labels is not None
        else None
    )
    roi_labels = spec.roi_labels if lab is not None else ()
    box, indices = roi_box(lab if lab is not None else np.zeros(img.shape, int), roi_labels, spec.margin, spec.axis)
    norm = np.moveaxis(window_normalise(img, spec.window), spec.axis, -1)
    lesion = np.moveaxis(np.isin(lab, list(spec.tumour_labels)), spec.axis, -1) if lab is not None else None
    s = (spec.size, spec.size)
    ims, masks = [], []
    for k in indices:
        ims.append(resize2d(_crop(norm[..., k], box, -1.0), s, 1))
        m = lesion[..., k] if lesion is not None else np.zeros(norm.shape[:2], bool)
        masks.append(resize2d(_crop(m.astype(np.float32), box, 0.0), s, 1) >= 0.5)
    images = np.clip(np.stack(ims), -1, 1)[:, None].astype(np.float32)
    mask_arr = np.stack(masks)
    labels_arr: np.ndarray = np.asarray(mask_arr.reshape(len(indices), -1).any(1), dtype=np.int64)
    geom = SliceGeometry(tuple(int(v) for v in np.moveaxis(img, spec.axis, -1).shape), box, indices)  # type: ignore[arg-type]
    return SliceSet(images, mask_arr, labels_arr, [case_id] * len(indices), np.asarray(indices)), geom


def paste_back(masks: np.ndarray, geom: SliceGeometry, axis: int) -> np.ndarray:
    """Put 2D slice masks (N, S, S) back into a zero volume of the source grid (inverse of `volume_slices`)."""
    out = np.zeros(geom.shape, dtype=np.uint8)
    i0, i1, j0, j1 = geom.box
    for m, k in zip(masks, geom.indices, strict=True):
        big = resize2d(m.astype(np.float32), (i1 - i0, j1 - j0), 1) >= 0.5
        si0, si1, sj0, sj1 = max(i0, 0), min(i1, geom.shape[0]), max(j0, 0), min(j1, geom.shape[1])
        out[si0:si1, sj0:sj1, k] = big[si0 - i0 : si1 - i0, sj0 - j0 : sj1 - j0]
    return np.moveaxis(out, -1, axis)


def manifest_slices(
    cases: Sequence, spec: SliceSpec, progress: bool = True, need_mask: bool = True
) -> tuple[SliceSet, dict[str, SliceGeometry], list[str]]:
    """Slices of every case of a manifest; a case that fails is skipped and reported.

    Args:
        cases: `medwss.data.manifest.Case` rows (``image`` and, when `need_mask`, ``mask``).
        spec: Slicing settings.
        progress: Show a progress bar.
        need_mask: Skip cases without a mask (training needs slice labels).

    Returns:
        All slices, each case's geometry, and one line per failed case.

    Raises:
        InvalidDataError: No case gave slices.
    """
    from tqdm import tqdm

    from medwss.errors import MedwssError
    from medwss.io.volumes import load_volume

    sets, geoms, failures = [], {}, []
    for case in tqdm(cases, desc="slices", disable=not progress, leave=False):
        try:
            if need_mask and case.mask is None:
                raise InvalidDataError("no mask in the manifest row")
            labels = load_volume(case.mask) if case.mask is not None else None
            s, g = volume_slices(load_volume(case.image), labels, spec, case.case_id)
        except (MedwssError, ValueError) as exc:
            failures.append(f"{case.case_id}: {exc}")
            continue
        sets.append(s)
        geoms[case.case_id] = g
    if not sets:
        raise InvalidDataError("no case gave slices: " + "; ".join(failures[:3]))
    return SliceSet.concat(sets), geoms, failures
