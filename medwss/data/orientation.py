"""Canonical orientation: every volume workflow works on the RAS+ array, whatever the stored axis order.

A volume stored as (slices, H, W), or with its axes in any other order or direction, is turned
into the array whose axes point right, anterior and superior (RAS+, nibabel's "closest canonical"),
so that the last array axis is always the axial (head–foot) axis. `Orientation` remembers how the
stored array maps onto that canonical array, so every output computed on the canonical grid (a
mask, a heatmap, a pseudo-label) goes back onto the source grid with the source affine.

Only permutations and flips are applied (no resampling): the canonical array holds exactly the
stored voxels, so a permuted copy of a file gives the very same canonical array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medwss.io.volume import Volume


@dataclass(frozen=True)
class Orientation:
    """How a stored (source) grid maps onto its canonical RAS+ grid.

    Attributes:
        ornt: nibabel orientation (3×2: target axis, flip) from the source array axes to RAS+.
        shape: Spatial shape of the source array.
        affine: Source voxel → world (RAS mm) affine.
    """

    ornt: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def identity(self) -> bool:
        """True when the source array is already RAS+ (nothing to permute or flip)."""
        return bool(np.array_equal(self.ornt, [[0, 1], [1, 1], [2, 1]]))

    @property
    def codes(self) -> str:
        """Orientation code of the source array, e.g. ``"RAS"`` or ``"SRA"``."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        out = [0, 0, 0]
        for axis, (target, _) in enumerate(self.ornt):
            out[int(target)] = self.shape[axis]
        return (out[0], out[1], out[2])

    @property
    def canonical_affine(self) -> np.ndarray:
        """Voxel → world affine of the canonical array (the same world geometry)."""
        import nibabel as nib

        return self.affine @ nib.orientations.inv_ornt_aff(self.ornt, self.shape)

    @property
    def axial_axis(self) -> int:
        """The source array axis that runs head–foot (the one the canonical last axis comes from)."""
        return int(np.flatnonzero(self.ornt[:, 0] == 2)[0])

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """A source-grid array (spatial axes first, then any trailing axes) on the canonical grid."""
        import nibabel as nib

        a = np.asarray(array)
        if a.shape[:3] != self.shape:
            raise ValueError(f"array of shape {a.shape} is not on the source grid {self.shape}")
        return a if self.identity else np.ascontiguousarray(nib.orientations.apply_orientation(a, self.ornt))

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """A canonical-grid array (spatial axes first) back on the source grid (inverse of `to_canonical`)."""
        import nibabel as nib

        a = np.asarray(array)
        if a.shape[:3] != self.canonical_shape:
            raise ValueError(f"array of shape {a.shape} is not on the canonical grid {self.canonical_shape}")
        if self.identity:
            return a
        back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), self.ornt)
        return np.ascontiguousarray(nib.orientations.apply_orientation(a, back))

    def as_dict(self) -> dict[str, object]:
        return {"ornt": self.ornt.tolist(), "shape": list(self.shape), "affine": self.affine.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Orientation:
        return cls(np.asarray(d["ornt"], dtype=float), tuple(int(s) for s in d["shape"]), np.asarray(d["affine"]))  # type: ignore[arg-type]


def orientation_of(volume: Volume) -> Orientation:
    """The `Orientation` of a volume (from its affine)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(volume.affine)
    if np.isnan(ornt).any():  # degenerate affine: keep the stored order
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    shape = tuple(int(s) for s in volume.shape[:3])
    return Orientation(ornt, shape, np.asarray(volume.affine, dtype=np.float64))  # type: ignore[arg-type]


def canonical(volume: Volume) -> tuple[Volume, Orientation]:
    """The volume on its canonical RAS+ grid (axial = last axis) and the way back.

    The returned volume keeps the metadata and path; ``metadata["source_orientation"]`` holds the
    stored orientation code.
    """
    o = orientation_of(volume)
    if o.identity:
        return volume, o
    meta = {**volume.metadata, "source_orientation": o.codes}
    return Volume(o.to_canonical(volume.array), o.canonical_affine, meta, volume.path), o


def permuted_copy(volume: Volume, axes: tuple[int, int, int], flip: tuple[int, ...] = ()) -> Volume:
    """The same image stored with its array axes in another order (and some flipped): same world geometry.

    Used by tests and by users checking that a workflow does not depend on the stored axis order.

    Args:
        volume: The volume.
        axes: New order of the spatial axes (as for `numpy.transpose`).
        flip: Axes of the new array to reverse.
    """
    arr = np.transpose(volume.array, tuple(axes) + tuple(range(3, volume.array.ndim)))
    aff = volume.affine.copy()
    aff[:, :3] = volume.affine[:, list(axes)]
    for ax in flip:
        arr = np.flip(arr, ax)
        n = arr.shape[ax]
        aff[:3, 3] = aff[:3, 3] + aff[:3, ax] * (n - 1)
        aff[:3, ax] = -aff[:3, ax]
    return Volume(np.ascontiguousarray(arr), aff, dict(volume.metadata), volume.path)
