"""COIN slice sets: a volume's axial slices through the organ, windowed to [-1, 1], with lesion masks and labels.

Slicing is the shared one (`medwss.data.slicer`): axial slices on the canonical grid whatever the
stored axis order, a square box around the organ (`plan_slices`), and `SliceGeometry.paste` to put
2D masks back onto the *source* grid. Intensities go through `medwss.transforms.intensity.normalise`
(a named CT window by default) to ``[-1, 1]``, so a tanh output fits; which mask values are the
organ and the lesion comes from a `medwss.data.labels.LabelSpec`. A slice is abnormal (label 1)
when it holds lesion voxels inside the box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medwss.data.labels import LabelSpec, decode_labels, label_spec
from medwss.data.orientation import orientation_of
from medwss.data.slicer import SliceGeometry, plan_slices
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume
from medwss.transforms.intensity import Window, normalise, resolve_window

if TYPE_CHECKING:
    from medwss.jobs import Job


@dataclass(frozen=True)
class SliceSpec:
    """How volumes become COIN slices (stored in ``classifier.pt`` so later commands slice the same way).

    Attributes:
        labels: The masks' label spec: a name of `medwss.data.labels.LABEL_SPECS` or ``{class: values}``.
        lesion: Class of `labels` that makes a slice abnormal.
        roi: Class of `labels` to crop around (only its slices are kept); None: whole slices.
        window: Intensity window mapped to ``[-1, 1]``: a name of `CT_WINDOWS`, ``(low, high)``, or
            None for each volume's 1st–99th percentiles.
        size: Side of the square output slices.
        margin: Voxels added around the organ box.
    """

    labels: str | Mapping[str, Sequence[int]] = "kidney_tumour"
    lesion: str = "tumour"
    roi: str | None = "kidney"
    window: Window = "soft_tissue"
    size: int = 64
    margin: int = 6

    def __post_init__(self) -> None:
        spec = self.label_spec
        spec.index(self.lesion)
        if self.roi is not None:
            spec.index(self.roi)
        resolve_window(self.window)

    @property
    def label_spec(self) -> LabelSpec:
        return label_spec(self.labels)

    def as_dict(self) -> dict[str, object]:
        """Plain types (for ``torch.save(..., weights_only=True)`` checkpoints and run records)."""
        labels = (
            self.labels
            if isinstance(self.labels, str)
            else {k: list(np.atleast_1d(v).tolist()) for k, v in self.labels.items()}
        )
        window = list(self.window) if isinstance(self.window, tuple | list) else self.window
        return {
            "labels": labels,
            "lesion": self.lesion,
            "roi": self.roi,
            "window": window,
            "size": self.size,
            "margin": self.margin,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> SliceSpec:
        kw = dict(d)
        if "tumour_labels" in kw or "roi_labels" in kw:  # classifier files written before label specs
            tumour, roi = kw.pop("tumour_labels", [4]), kw.pop("roi_labels", [2, 3])
            kw.pop("axis", None)
            kw["labels"] = {"lesion": list(tumour), **({"organ": list(roi)} if roi else {})}
            kw["lesion"], kw["roi"] = "lesion", ("organ" if roi else None)
        if isinstance(kw.get("window"), list):
            kw["window"] = tuple(float(v) for v in kw["window"])
        return cls(**kw)


@dataclass
class SliceSet:
    """Slices with labels. ``images`` (N, 1, S, S) float32 in [-1, 1]; ``masks`` (N, S, S) bool; ``labels`` (N,).

    ``slice_index`` holds each slice's canonical axial index in its volume.
    """

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


def volume_slices(
    image: Volume, labels: Volume | None, spec: SliceSpec, case_id: str = ""
) -> tuple[SliceSet, SliceGeometry]:
    """Slices of one volume: windowed, cropped around the organ, resized to ``spec.size``.

    Without `labels` whole slices are taken and every mask is empty (labels unknown: 0).

    Raises:
        InvalidDataError: The grids differ or the mask holds no organ label.
    """
    img = image.array[..., 0] if image.array.ndim == 4 else image.array
    ls = spec.label_spec
    lab = None
    if labels is not None:
        lab = decode_labels(labels.array, source=labels.path)
        if lab.shape != img.shape:
            raise InvalidDataError(f"mask grid {lab.shape} differs from image grid {img.shape}", labels.path)
        if not np.array_equal(orientation_of(labels).ornt, orientation_of(image).ornt):
            raise InvalidDataError("the mask's axes are stored in another order than the image's", labels.path)
    roi = None
    if lab is not None and spec.roi is not None:
        roi = ls.mask(lab, spec.roi)
        if not roi.any():
            raise InvalidDataError(f"mask holds none of the '{spec.roi}' labels {list(ls.values(spec.roi))}")
    geom = plan_slices(image, roi=roi, margin=spec.margin, size=spec.size, square=True)
    norm = normalise(img, "window", window=spec.window, out_range=(-1.0, 1.0))
    images = np.clip(geom.cut(norm, fill=-1.0), -1, 1)[:, None]  # (N, 1, S, S)
    n = len(geom)
    if lab is None:
        masks = np.zeros((n, *geom.slice_shape), bool)
        slice_labels: np.ndarray = np.zeros(n, np.int64)
    else:
        lesion = ls.mask(lab, spec.lesion)
        masks = geom.cut(lesion, label=True) > 0
        native = replace(geom, size=None).cut(lesion, label=True)  # lesion voxels in the box, before resizing
        slice_labels = np.asarray(native.reshape(n, -1).any(1), dtype=np.int64)
    s = SliceSet(images.astype(np.float32), masks, slice_labels, [case_id] * n, np.asarray(geom.indices, int))
    return s, geom


def manifest_slices(
    cases: Sequence, spec: SliceSpec, progress: bool = True, need_mask: bool = True, job: Job | None = None
) -> tuple[SliceSet, dict[str, SliceGeometry], list[str]]:
    """Slices of every case of a manifest, through `job` (`medwss.jobs.Job`, stage ``load``; default
    one without a log file); a case that fails is skipped and reported.

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
    from medwss.io.volumes import load_volume
    from medwss.jobs import Job

    job = job if job is not None else Job(None)

    def one(case: Any) -> tuple[SliceSet, SliceGeometry]:
        if need_mask and case.mask is None:
            raise InvalidDataError("no mask in the manifest row")
        labels = load_volume(case.mask) if case.mask is not None else None
        return volume_slices(load_volume(case.image), labels, spec, case.case_id)

    sets, geoms = [], {}
    for case, got in zip(cases, job.run(cases, one, stage="load", progress=progress, desc="slices"), strict=True):
        if got is not None:
            sets.append(got[0])
            geoms[case.case_id] = got[1]
    failures = [f"{c.case_id}: {job.failures[c.case_id]['message']}" for c in cases if job.failed(c.case_id)]
    if not sets:
        raise InvalidDataError("no case gave slices: " + "; ".join(failures[:3]))
    return SliceSet.concat(sets), geoms, failures
