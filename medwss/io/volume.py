"""`Volume`: a 3D (or 3D + channels/time) image with its voxel-to-world affine in RAS millimetres."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """An image volume.

    Attributes:
        array: Voxel values indexed ``(i, j, k)`` (plus a trailing channel/time axis for 4D files).
        affine: 4×4 matrix from voxel indices to world coordinates, RAS, millimetres.
        metadata: Free-form facts from the file (modality, series description, reader, ...).
        path: The file or folder it was read from, if any.
    """

    array: np.ndarray
    affine: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.array.ndim < 3:
            self.array = self.array.reshape(self.array.shape + (1,) * (3 - self.array.ndim))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def orientation(self) -> str:
        """Three-letter code of the direction each array axis points to, e.g. ``"RAS"`` or ``"LPS"``."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    @property
    def modality(self) -> str | None:
        return self.metadata.get("modality")

    def with_array(self, array: np.ndarray, **metadata: Any) -> Volume:
        """A new volume on the same grid holding `array` (e.g. a mask or a heatmap)."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array shape {array.shape} does not match the grid {self.array.shape[:3]}")
        return Volume(array, self.affine.copy(), {**self.metadata, **metadata}, self.path)


def affine_from_lps(direction: np.ndarray, spacing: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """RAS affine from an ITK/DICOM-style geometry given in LPS.

    Args:
        direction: 3×3 matrix whose columns are the directions of the array axes (LPS).
        spacing: Voxel size along each array axis, mm.
        origin: World position of voxel (0, 0, 0), LPS, mm.
    """
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=np.float64) @ np.diag(np.asarray(spacing, dtype=np.float64))
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps
