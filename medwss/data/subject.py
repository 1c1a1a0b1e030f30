"""`Subject`: one loaded case — the manifest row with its typed images and label maps, on one canonical grid.

What the slicer, the transforms and every volume workflow take. Images are read once, channels
other than the first are resampled onto the first one's grid when their grids differ, label maps
(``mask``, ``scribble``) are decoded to int64 with `IGNORE` and brought onto the same grid (nearest
neighbour), and everything is put on the canonical RAS+ grid (axial = last axis). `to_source`
turns any canonical-grid result back into a `Volume` on the stored grid with the stored affine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medwss.data.labels import IGNORE, decode_labels
from medwss.data.manifest import Case
from medwss.data.orientation import Orientation, canonical
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume


@dataclass
class Subject:
    """A loaded case.

    Attributes:
        case: The manifest row.
        images: Channel name → canonical-grid volume (3D), in the manifest's channel order.
        labels: ``mask`` / ``scribble`` → canonical-grid int64 volume (`IGNORE` where unlabelled).
        orientation: Source grid (of the first channel) → canonical grid.
    """

    case: Case
    images: dict[str, Volume]
    labels: dict[str, Volume] = field(default_factory=dict)
    orientation: Orientation | None = None

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def image(self) -> Volume:
        """The first channel."""
        return next(iter(self.images.values()))

    def stack(self, channels: Sequence[str] | None = None) -> np.ndarray:
        """``(C, X, Y, Z)`` float32 of the channels (default: all, in order)."""
        names = list(channels) if channels is not None else list(self.images)
        missing = [c for c in names if c not in self.images]
        if missing:
            raise InvalidDataError(f"case {self.case_id} lacks channel(s) {', '.join(missing)}")
        return np.stack([np.asarray(self.images[c].array, dtype=np.float32) for c in names])

    def label(self, name: str = "mask") -> np.ndarray | None:
        """A label map (int64, `IGNORE` = unlabelled) on the canonical grid, or None when absent."""
        vol = self.labels.get(name)
        return None if vol is None else vol.array

    def to_source(self, array: np.ndarray, **metadata: object) -> Volume:
        """A canonical-grid result (spatial axes first) as a `Volume` on the stored grid and affine."""
        o = self.orientation
        if o is None:
            return self.image.with_array(array, **metadata)
        return Volume(o.to_source(array), o.affine.copy(), {**self.image.metadata, **metadata}, self.image.path)


def load_subject(
    case: Case,
    channels: Sequence[str] | None = None,
    labels: Sequence[str] = ("mask", "scribble"),
    num_classes: int | None = None,
) -> Subject:
    """Read a manifest row into a `Subject` on the canonical grid.

    Args:
        case: The manifest row.
        channels: Channels to read (default: all of the row's image columns).
        labels: Label columns to read when the row has them.
        num_classes: Checked against the label values when given.

    Raises:
        InvalidDataError: A channel is missing, or a volume is not 3D.
    """
    from medwss.io.resample import resample_to
    from medwss.io.volumes import load_volume

    names = list(channels) if channels is not None else list(case.images)
    missing = [c for c in names if c not in case.images]
    if missing:
        raise InvalidDataError(f"case {case.case_id} lacks channel(s) {', '.join(missing)}")
    source: dict[str, Volume] = {}
    for name in names:
        vol = load_volume(case.images[name])
        if vol.array.ndim == 4 and vol.array.shape[3] == 1:
            vol = vol.with_array(vol.array[..., 0])
        if vol.array.ndim != 3:
            raise InvalidDataError(f"expected a 3D volume, got shape {vol.shape}", case.images[name])
        if source:
            ref = next(iter(source.values()))
            if vol.shape != ref.shape or not np.allclose(vol.affine, ref.affine, atol=1e-4):
                vol = resample_to(Volume(vol.array.astype(np.float32), vol.affine), ref, order=1)
        source[name] = vol
    ref = next(iter(source.values()))
    label_vols: dict[str, Volume] = {}
    for name in labels:
        path = getattr(case, name, None)
        if path is None:
            continue
        vol = load_volume(path)
        arr = decode_labels(vol.array, num_classes, source=path)
        if arr.shape != ref.shape or not np.allclose(vol.affine, ref.affine, atol=1e-4):
            moved = resample_to(Volume(arr.astype(np.int16), vol.affine), ref, order=0, fill=IGNORE)
            arr = moved.array.astype(np.int64)
        label_vols[name] = ref.with_array(arr)
    images, orientation = {}, None
    for name, vol in source.items():
        images[name], orientation = canonical(vol)
    labels_c = {name: canonical(vol)[0] for name, vol in label_vols.items()}
    return Subject(case, images, labels_c, orientation)
