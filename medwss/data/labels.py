"""One label convention: `IGNORE` in memory, one encoding on disk, named class maps.

In memory every label map medwss handles (full masks, scribbles, weak labels, pseudo-labels,
annotations taken back from a viewer) is an integer array: ``0`` background, ``1..K-1`` classes
and ``IGNORE = -1`` where nothing is known.

On disk every label map medwss *writes* is a NIfTI of dtype int16 in which ``-1`` means
"unlabelled" (`UNLABELLED_ON_DISK`); 3D Slicer, ITK-SNAP and nibabel read it as it is. On *ingest*
(`decode_labels`, `load_label_map`) medwss also accepts the common viewer conventions: a uint8
file with ``255`` for "unlabelled", or any value the user names (``unlabelled=``).

A `LabelSpec` names the classes of a task and the source label values each one gathers (e.g.
kidney = {2, 3}, tumour = {4} of a TotalSegmentator-style map); `LABEL_SPECS` holds the named
ones medwss ships. Everything not gathered is background.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.errors import InvalidDataError

IGNORE = -1
"""In-memory value of an unlabelled pixel or voxel."""
UNLABELLED_ON_DISK = -1
"""Value of an unlabelled voxel in every label file medwss writes (int16 NIfTI)."""
VIEWER_UNLABELLED = 255
"""The common viewer convention for "unlabelled" in uint8 files, accepted on ingest."""
LABEL_DTYPE = np.int16


def _check_integer(a: np.ndarray, source: object = None) -> None:
    integer = np.issubdtype(a.dtype, np.integer) or a.dtype == bool
    if not integer and (not np.all(np.isfinite(a)) or not np.all(np.equal(np.mod(a, 1), 0))):
        raise InvalidDataError(f"label map holds non-integer values (dtype {a.dtype})", source)  # type: ignore[arg-type]


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """An in-memory label map as it is written to disk: int16, `IGNORE` → `UNLABELLED_ON_DISK`.

    Raises:
        InvalidDataError: Non-integer values, or values outside the int16 range.
    """
    a = np.asarray(labels)
    if a.dtype == bool:
        return a.astype(LABEL_DTYPE)
    _check_integer(a)
    if a.size and (a.min() < IGNORE or a.max() > np.iinfo(LABEL_DTYPE).max):
        raise InvalidDataError(f"label values must lie in [{IGNORE}, 32767], got [{a.min()}, {a.max()}]")
    out = a.astype(LABEL_DTYPE)
    out[a == IGNORE] = UNLABELLED_ON_DISK
    return out


def decode_labels(
    array: np.ndarray, num_classes: int | None = None, unlabelled: int | None = None, source: object = None
) -> np.ndarray:
    """A label map read from a file → int64 with `IGNORE` where unlabelled.

    Unlabelled on disk is any negative value, the `unlabelled` value when given, or else ``255`` in
    a uint8 file when the task has fewer than 255 classes (the common viewer convention).

    Args:
        array: Values read from the file.
        num_classes: Classes including background; values outside ``0..num_classes-1`` are an error.
        unlabelled: The value that means "unlabelled" in this file (in addition to negatives).
        source: File name for error messages.

    Raises:
        InvalidDataError: Non-integer values, or classes out of range.
    """
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    _check_integer(a, source)
    out = a.astype(np.int64)
    unknown = out < 0
    if unlabelled is not None:
        unknown |= out == unlabelled
    elif a.dtype == np.uint8 and (num_classes is None or num_classes < VIEWER_UNLABELLED):
        unknown |= out == VIEWER_UNLABELLED
    out[unknown] = IGNORE
    if num_classes is not None:
        bad = (out >= num_classes) & ~unknown
        if bad.any():
            raise InvalidDataError(
                f"label values {sorted(set(np.unique(out[bad]).tolist()))[:5]} outside 0..{num_classes - 1}",
                source,  # type: ignore[arg-type]
            )
    return out


def save_label_map(labels: np.ndarray, path: str | Path, affine: np.ndarray) -> Path:
    """Write a label map as int16 NIfTI (unlabelled = -1), atomically."""
    from medwss.io.volumes import save_nifti

    return save_nifti(encode_labels(labels), path, affine)


def load_label_map(path: str | Path, num_classes: int | None = None, unlabelled: int | None = None):  # noqa: ANN201
    """Read a label file (any volume format) as a `Volume` of int64 with `IGNORE` where unlabelled."""
    from medwss.io.volumes import load_volume

    vol = load_volume(path)
    return vol.with_array(decode_labels(vol.array, num_classes, unlabelled, path))


@dataclass(frozen=True)
class LabelSpec:
    """Named classes of a task and the source label values each one gathers.

    Attributes:
        classes: ``(name, source values)`` of classes ``1..K`` in order; class 0 is background
            (every source value not listed).
        name: The spec's own name (e.g. ``"totalseg"``).
    """

    classes: tuple[tuple[str, tuple[int, ...]], ...]
    name: str = ""

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for cls_name, values in self.classes:
            for v in values:
                if v in seen:
                    raise InvalidDataError(f"label value {v} is in both '{seen[v]}' and '{cls_name}'")
                seen[v] = cls_name

    @property
    def names(self) -> list[str]:
        """Class names, background first."""
        return ["background"] + [n for n, _ in self.classes]

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.classes) + 1

    def index(self, name: str) -> int:
        """The class id of `name`."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InvalidDataError(f"no class '{name}' in label spec {self.name or self.names}") from None

    def values(self, name: str) -> tuple[int, ...]:
        """The source label values of class `name`."""
        return self.classes[self.index(name) - 1][1] if name != "background" else ()

    def remap(self, labels: np.ndarray) -> np.ndarray:
        """Source label map → class ids ``0..K-1`` (int64); `IGNORE` (and any negative) stays `IGNORE`."""
        lab = np.asarray(labels).astype(np.int64)
        out = np.zeros(lab.shape, dtype=np.int64)
        for c, (_, values) in enumerate(self.classes, start=1):
            out[np.isin(lab, list(values))] = c
        out[lab < 0] = IGNORE
        return out

    def mask(self, labels: np.ndarray, name: str) -> np.ndarray:
        """Bool mask of class `name` in a *source* label map."""
        return np.isin(np.asarray(labels), list(self.values(name)))

    def as_dict(self) -> dict[str, list[int]]:
        return {n: list(v) for n, v in self.classes}

    @classmethod
    def from_classes(cls, classes: Mapping[str, Sequence[int] | int], name: str = "") -> LabelSpec:
        """From ``{"kidney": [2, 3], "tumour": 4}`` (class ids follow the order given)."""
        return cls(tuple((n, tuple(int(x) for x in np.atleast_1d(v))) for n, v in classes.items()), name)

    @classmethod
    def from_groups(cls, groups: Sequence[Sequence[int]], name: str = "") -> LabelSpec:
        """From value groups ``[[1], [2, 3]]`` → classes ``class1``, ``class2``."""
        return cls(tuple((f"class{i}", tuple(int(v) for v in g)) for i, g in enumerate(groups, start=1)), name)


LABEL_SPECS: dict[str, LabelSpec] = {
    "binary": LabelSpec.from_classes({"foreground": [1]}, "binary"),
    "ct_phantom": LabelSpec.from_classes(
        {"liver": [1], "right_kidney": [2], "left_kidney": [3], "spleen": [7], "kidney_tumor": [4]}, "ct_phantom"
    ),
    "totalseg": LabelSpec.from_classes(
        {"liver": [5], "spleen": [1], "right_kidney": [2], "left_kidney": [3]}, "totalseg"
    ),
    "kidney_tumour": LabelSpec.from_classes({"kidney": [2, 3], "tumour": [4]}, "kidney_tumour"),
    "acdc": LabelSpec.from_classes({"rv": [1], "myo": [2], "lv": [3]}, "acdc"),
    "lesion": LabelSpec.from_classes({"lesion": [1]}, "lesion"),
}
"""The named class maps medwss ships."""


def label_spec(spec: str | LabelSpec | Mapping[str, Sequence[int] | int]) -> LabelSpec:
    """A `LabelSpec` from its name in `LABEL_SPECS`, a ``{name: values}`` mapping, or itself.

    Raises:
        InvalidDataError: An unknown name (the message lists the known ones).
    """
    if isinstance(spec, LabelSpec):
        return spec
    if isinstance(spec, str):
        if spec not in LABEL_SPECS:
            raise InvalidDataError(f"unknown label spec '{spec}': choose one of {', '.join(sorted(LABEL_SPECS))}")
        return LABEL_SPECS[spec]
    return LabelSpec.from_classes(spec)
