"""The one slicer: a volume ↔ its 2D axial slices (optionally cropped to an ROI box and resized), both ways.

Every 2D volume workflow (axial tiling, COIN, pseudo-labels, active learning, scribbles) cuts
slices through a `SliceGeometry` and pastes its per-slice outputs back through the same object.
Slices are always axial: the volume is first put on its canonical RAS+ grid (`medwss.data.
orientation`), whose last axis runs head–foot whatever the stored axis order, and `paste` returns
arrays on the *source* grid, ready to be written with the source affine.

Slice ``k`` of a geometry is canonical axial index ``indices[k]``; in-plane it is the crop
``box = (i0, i1, j0, j1)`` of the canonical (R, A) plane (which may stick out of the image: the
outside is filled), resized to ``size`` when given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medwss.data.orientation import Orientation, orientation_of
from medwss.errors import InvalidDataError
from medwss.io.volume import Volume


@dataclass
class SliceGeometry:
    """Where a case's 2D slices sit in its source volume.

    Attributes:
        orientation: Source grid → canonical grid.
        box: In-plane crop ``(i0, i1, j0, j1)`` on the canonical grid (may leave the image).
        indices: Canonical axial slice indices, one per 2D slice.
        size: Output slice size ``(H, W)``; None keeps the crop size.
    """

    orientation: Orientation
    box: tuple[int, int, int, int]
    indices: list[int]
    size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape of the source grid."""
        return self.orientation.shape

    @property
    def crop_shape(self) -> tuple[int, int]:
        i0, i1, j0, j1 = self.box
        return i1 - i0, j1 - j0

    @property
    def slice_shape(self) -> tuple[int, int]:
        return self.size if self.size is not None else self.crop_shape

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """In-plane size (mm) of one pixel of the 2D slices: the canonical voxel size scaled by crop / slice size."""
        spacing = np.linalg.norm(self.orientation.canonical_affine[:3, :2], axis=0)
        (ch, cw), (sh, sw) = self.crop_shape, self.slice_shape
        return float(spacing[0] * ch / sh), float(spacing[1] * cw / sw)

    def cut(self, array: np.ndarray, label: bool = False, fill: float = 0.0) -> np.ndarray:
        """2D slices of a source-grid array.

        Args:
            array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` on the source grid.
            label: An integer label map (nearest-neighbour resizing, integer output) rather than an image.
            fill: Value outside the image where the box leaves it.

        Returns:
            ``(N, H, W)`` (or ``(N, C, H, W)``), float32 for images, int64 for labels.
        """
        return self.cut_canonical(self.orientation.to_canonical(array), label, fill)

    def cut_canonical(self, array: np.ndarray, label: bool = False, fill: float = 0.0) -> np.ndarray:
        """As `cut`, for an array already on the canonical grid."""
        a = np.asarray(array)
        if a.shape[:3] != self.orientation.canonical_shape:
            raise InvalidDataError(f"array of shape {a.shape} is not on the grid {self.orientation.canonical_shape}")
        ks = np.asarray(self.indices, dtype=np.int64)
        stack = np.moveaxis(a[:, :, ks], 2, 0)  # (N, X, Y[, C])
        if stack.ndim == 4:
            stack = np.moveaxis(stack, 3, 1)  # (N, C, X, Y)
        crop = _crop(stack, self.box, fill)
        if self.size is None or tuple(crop.shape[-2:]) == tuple(self.size):
            return crop.astype(np.int64 if label else np.float32)
        return _resize(crop, self.size, label)

    def paste(self, slices: np.ndarray, label: bool = True, fill: float = 0.0) -> np.ndarray:
        """Per-slice maps back onto the source grid (inverse of `cut`).

        Args:
            slices: ``(N, H, W)`` (or ``(N, C, H, W)``) in the order of `indices`.
            label: Integer maps (nearest-neighbour) rather than continuous maps (bilinear).
            fill: Value of voxels no slice covers (other slices, outside the box).

        Returns:
            ``(X, Y, Z)`` (or ``(X, Y, Z, C)``) on the source grid; int64 for labels, float32 otherwise.
        """
        return self.orientation.to_source(self.paste_canonical(slices, label, fill))

    def paste_canonical(self, slices: np.ndarray, label: bool = True, fill: float = 0.0) -> np.ndarray:
        """As `paste`, returning the canonical-grid array."""
        s = np.asarray(slices)
        if s.shape[0] != len(self.indices) or tuple(s.shape[-2:]) != tuple(self.slice_shape):
            raise InvalidDataError(
                f"{s.shape[0]} slices of {tuple(s.shape[-2:])} do not fit a geometry of "
                f"{len(self.indices)} slices of {self.slice_shape}"
            )
        if tuple(s.shape[-2:]) != self.crop_shape:
            s = _resize(s, self.crop_shape, label)
        X, Y, Z = self.orientation.canonical_shape
        extra = s.shape[1:-2]
        dtype = np.int64 if label else np.float32
        out = np.full((X, Y, Z) + extra, fill, dtype=dtype)
        i0, i1, j0, j1 = self.box
        si0, si1, sj0, sj1 = max(i0, 0), min(i1, X), max(j0, 0), min(j1, Y)
        part = s[..., si0 - i0 : si1 - i0, sj0 - j0 : sj1 - j0].astype(dtype)  # (N, [C,] x, y)
        if part.ndim == 4:
            part = np.moveaxis(part, 1, 3)  # (N, x, y, C)
        for n, k in enumerate(self.indices):
            out[si0:si1, sj0:sj1, k] = part[n]
        return out

    def slice_affine(self, n: int) -> np.ndarray:
        """Voxel → world affine of 2D slice `n` as a one-slice volume ``(H, W, 1)`` (for exports)."""
        aff = self.orientation.canonical_affine.copy()
        i0, _, j0, _ = self.box
        h, w = self.slice_shape
        ch, cw = self.crop_shape
        scale = np.diag([ch / h, cw / w, 1.0, 1.0])
        # pixel centres of a resized slice: u -> i0 + (u + 0.5) * ch / h - 0.5
        shift = np.eye(4)
        shift[:3, 3] = [i0 + 0.5 * ch / h - 0.5, j0 + 0.5 * cw / w - 0.5, self.indices[n]]
        return aff @ shift @ scale

    def as_dict(self) -> dict[str, object]:
        return {
            "orientation": self.orientation.as_dict(),
            "box": list(self.box),
            "indices": list(self.indices),
            "size": list(self.size) if self.size is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SliceGeometry:
        size = d.get("size")
        return cls(
            Orientation.from_dict(d["orientation"]),
            tuple(int(v) for v in d["box"]),  # type: ignore[arg-type]
            [int(k) for k in d["indices"]],
            (int(size[0]), int(size[1])) if size is not None else None,
        )


def _crop(stack: np.ndarray, box: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """Crop the last two axes of `stack` to `box`, filling where the box leaves the array."""
    i0, i1, j0, j1 = box
    X, Y = stack.shape[-2:]
    if i0 >= 0 and j0 >= 0 and i1 <= X and j1 <= Y:
        return stack[..., i0:i1, j0:j1]
    out = np.full(stack.shape[:-2] + (i1 - i0, j1 - j0), fill, dtype=np.result_type(stack.dtype, np.float32))
    si0, si1, sj0, sj1 = max(i0, 0), min(i1, X), max(j0, 0), min(j1, Y)
    if si1 > si0 and sj1 > sj0:
        out[..., si0 - i0 : si1 - i0, sj0 - j0 : sj1 - j0] = stack[..., si0:si1, sj0:sj1]
    return out


def _resize(stack: np.ndarray, size: Sequence[int], label: bool) -> np.ndarray:
    """Resize the last two axes (bilinear for images, nearest for labels), batched in torch."""
    lead = stack.shape[:-2]
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).reshape(-1, 1, *stack.shape[-2:])
    if label:
        y = F.interpolate(x, size=tuple(size), mode="nearest-exact")
        return y.reshape(*lead, *size).round().numpy().astype(np.int64)
    y = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
    return y.reshape(*lead, *size).numpy().astype(np.float32)


def roi_box(roi: np.ndarray, margin: int = 0, square: bool = True) -> tuple[tuple[int, int, int, int], list[int]]:
    """In-plane box around a canonical-grid ROI (grown by `margin`, made square) and the slices holding it.

    Raises:
        InvalidDataError: The ROI is empty.
    """
    if not roi.any():
        raise InvalidDataError("the ROI is empty")
    ii, jj, kk = np.nonzero(roi)
    i0, i1 = int(ii.min()) - margin, int(ii.max()) + 1 + margin
    j0, j1 = int(jj.min()) - margin, int(jj.max()) + 1 + margin
    if square:
        side = max(i1 - i0, j1 - j0)
        ci, cj = (i0 + i1) // 2, (j0 + j1) // 2
        i0, j0 = ci - side // 2, cj - side // 2
        i1, j1 = i0 + side, j0 + side
    return (i0, i1, j0, j1), sorted({int(k) for k in kk})


def plan_slices(
    volume: Volume | Orientation,
    roi: np.ndarray | None = None,
    margin: int = 0,
    size: int | tuple[int, int] | None = None,
    square: bool = True,
    indices: Sequence[int] | None = None,
) -> SliceGeometry:
    """The slice geometry of a volume: all axial slices, or those holding `roi` cropped around it.

    Args:
        volume: The volume (or its orientation).
        roi: ``(X, Y, Z)`` bool mask on the *source* grid (e.g. an organ); None: whole slices.
        margin: Voxels added around the ROI box.
        size: Side (or ``(H, W)``) of the output slices; None keeps the crop size.
        square: Make the ROI box square (before resizing to a square `size`).
        indices: Canonical slice indices to keep (default: all, or the ROI's slices).

    Raises:
        InvalidDataError: The ROI is empty or not on the volume's grid.
    """
    o = volume if isinstance(volume, Orientation) else orientation_of(volume)
    X, Y, Z = o.canonical_shape
    if roi is not None:
        r = np.asarray(roi, dtype=bool)
        if r.shape[:3] != o.shape:
            raise InvalidDataError(f"ROI of shape {r.shape} is not on the volume grid {o.shape}")
        box, ks = roi_box(o.to_canonical(r), margin, square)
    else:
        box, ks = (0, X, 0, Y), list(range(Z))
    if indices is not None:
        ks = [int(k) for k in indices]
        bad = [k for k in ks if not 0 <= k < Z]
        if bad:
            raise InvalidDataError(f"slice indices {bad[:3]} outside 0..{Z - 1}")
    out_size = (size, size) if isinstance(size, int) else (tuple(size) if size is not None else None)
    return SliceGeometry(o, box, ks, out_size)  # type: ignore[arg-type]


def axial_slices(volume: Volume, **kwargs: object) -> tuple[np.ndarray, SliceGeometry]:
    """Shortcut: the axial image slices of `volume` and their geometry (arguments of `plan_slices`)."""
    geom = plan_slices(volume, **kwargs)  # type: ignore[arg-type]
    return geom.cut(volume.array), geom
