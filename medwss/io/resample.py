"""Resampling a volume onto another volume's grid, through their world (RAS) affines."""

from __future__ import annotations

import numpy as np

from medwss.io.volume import Volume


def resample_to(volume: Volume, reference: Volume, order: int = 1, fill: float | None = None) -> Volume:
    """`volume` resampled onto `reference`'s voxel grid (trilinear by default, nearest for labels with order 0).

    Args:
        volume: The image to move (3D, or 4D with trailing channels).
        reference: The grid to move it to.
        order: Spline order: 0 nearest (label maps), 1 linear, 3 cubic.
        fill: Value outside `volume`'s field of view (default: its minimum).
    """
    from scipy import ndimage

    if np.allclose(volume.affine, reference.affine) and volume.shape[:3] == reference.shape[:3]:
        return Volume(volume.array, reference.affine.copy(), dict(volume.metadata), volume.path)
    vox = np.linalg.inv(volume.affine) @ reference.affine  # reference voxel -> volume voxel
    cval = float(volume.array.min()) if fill is None else float(fill)
    out_shape = reference.shape[:3]
    arr = volume.array
    src = arr.astype(np.float32) if order > 0 and not np.issubdtype(arr.dtype, np.floating) else arr

    def one(a: np.ndarray) -> np.ndarray:
        return ndimage.affine_transform(a, vox[:3, :3], vox[:3, 3], output_shape=out_shape, order=order, cval=cval)

    out = one(src) if arr.ndim == 3 else np.stack([one(src[..., c]) for c in range(arr.shape[3])], axis=-1)
    if order == 0:
        out = out.astype(arr.dtype)
    return Volume(out, reference.affine.copy(), {**volume.metadata, "resampled_to": reference.path}, volume.path)
