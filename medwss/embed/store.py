"""The feature store: one HDF5 file per case holding its patch embeddings (`FeatureBag`).

Datasets: ``features`` (N×C, float16 or float32), ``coords`` (N×2 level-0 x, y, or N×3 voxel
i, j, k), optional ``tokens`` (N×C×h×w spatial maps) and ``grid_index`` (N×2|3). File attributes:
``encoder``, ``weights_checksum``, ``tile_size``, ``mpp`` or ``spacing``, ``level``, ``grid_shape``,
``case_id``, ``medwss_version``. Bags written by CLAM or TRIDENT (``features`` + ``coords``, their
attributes on ``coords``) load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss import __version__
from medwss.errors import CorruptFileError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path


@dataclass
class FeatureBag:
    """One case's patch embeddings.

    Attributes:
        features: (N, C) embeddings.
        coords: (N, 2) or (N, 3) tile positions (level-0 pixels or voxel indices), or None if unknown.
        tokens: Optional (N, C, h, w) spatial token maps.
        grid_index: Optional (N, 2|3) position of each tile on the case's tile grid.
        attrs: Encoder name, weights checksum, tile size, mpp or spacing, level, grid shape, ...
        path: The file it was read from.
    """

    features: np.ndarray
    coords: np.ndarray | None
    tokens: np.ndarray | None = None
    grid_index: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def grid_shape(self) -> tuple[int, ...] | None:
        g = self.attrs.get("grid_shape")
        return tuple(int(v) for v in g) if g is not None else None


def save_bag(bag: FeatureBag, path: str | Path, dtype: str = "float16") -> Path:
    """Write a bag to HDF5 atomically (a half-written file never carries the final name).

    Args:
        bag: The bag.
        path: Output ``.h5``.
        dtype: Storage type of ``features`` and ``tokens``: ``float16`` (half the disk) or ``float32``.
    """
    import h5py

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    feats = np.asarray(bag.features)
    if feats.ndim != 2:
        raise InvalidDataError(f"features must be N×C, got shape {feats.shape}", path)
    if bag.coords is not None and len(bag.coords) != len(feats):
        raise InvalidDataError(f"{len(feats)} features but {len(bag.coords)} coords", path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=feats.astype(dtype))
        if bag.coords is not None:
            f.create_dataset("coords", data=np.asarray(bag.coords, dtype=np.int64))
        if bag.tokens is not None:
            f.create_dataset("tokens", data=np.asarray(bag.tokens).astype(dtype), chunks=True, compression="lzf")
        if bag.grid_index is not None:
            f.create_dataset("grid_index", data=np.asarray(bag.grid_index, dtype=np.int64))
        for key, value in {**bag.attrs, "medwss_version": __version__}.items():
            if value is not None:
                f.attrs[key] = np.asarray(value) if isinstance(value, (list, tuple)) else value
    return Path(path)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_bag(path: str | Path, tokens: bool = False) -> FeatureBag:
    """Read a bag: medwss's own, or one written by CLAM or TRIDENT (``features`` + ``coords``).

    A CLAM ``.pt`` file (a features tensor only) loads too, with ``coords`` None.

    Args:
        path: ``.h5`` (or CLAM ``.pt``) file.
        tokens: Also read the token maps (can be large).
    """
    p = require_file(path)
    if p.suffix == ".pt":
        import torch

        try:
            feats = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CorruptFileError(f"not a features tensor ({exc})", p) from exc
        return FeatureBag(np.asarray(feats, dtype=np.float32).reshape(len(feats), -1), None, path=str(p))
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "features" not in f:
                raise CorruptFileError(f"no 'features' dataset (has: {', '.join(f.keys()) or 'nothing'})", p)
            feats = f["features"][()]
            if feats.ndim == 3 and feats.shape[0] == 1:  # some tools store (1, N, C)
                feats = feats[0]
            coords = f["coords"][()] if "coords" in f else None
            if coords is not None and coords.ndim == 3 and coords.shape[0] == 1:
                coords = coords[0]
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if "coords" in f:  # CLAM and TRIDENT keep patch size and level on coords
                for k, v in f["coords"].attrs.items():
                    attrs.setdefault(k, _plain(v))
            tok = f["tokens"][()] if tokens and "tokens" in f else None
            grid = f["grid_index"][()] if "grid_index" in f else None
    except OSError as exc:
        raise CorruptFileError(f"not a readable HDF5 feature bag ({exc})", p) from exc
    if feats.ndim != 2:
        raise CorruptFileError(f"'features' must be N×C, got shape {feats.shape}", p)
    if coords is not None and len(coords) != len(feats):
        raise CorruptFileError(f"{len(feats)} features but {len(coords)} coords", p)
    return FeatureBag(feats, coords, tok, grid, attrs, str(p))


def bag_is_done(path: str | Path, encoder: str | None = None) -> bool:
    """True if a finished bag exists at `path` (written atomically, so existence means finished).

    With `encoder`, the bag must also have been made by that encoder.
    """
    p = Path(path)
    if not p.is_file():
        return False
    if encoder is None:
        return True
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return _plain(f.attrs.get("encoder")) == encoder
    except OSError:
        return False
