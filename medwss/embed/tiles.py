"""`TileSet`: where a case's tiles are, stored one HDF5 file per case (``<case_id>.tiles.h5``).

Slides: ``coords`` are the top-left corners of tiles in level-0 pixels (x, y); each tile covers
``tile_size`` pixels at ``mpp`` µm/px, that is ``span`` level-0 pixels, read from ``level``.
Volumes: ``coords`` are the first voxel (i, j, k) of each patch on the volume's canonical RAS+ grid
(`medwss.data.orientation.canonical`: k is the axial axis whatever the stored axis order);
``tile_size`` is its extent in voxels along (i, j, k) (a 2D axial tile has 1 along k, a 2.5D stack
has the stack depth), and ``attrs["orientation"]`` records how the stored grid maps onto the
canonical one (`TileSet.orientation`), so results go back onto the stored grid.
``grid_index`` places every tile on the case's tile grid (row, col[, depth]), ``grid_shape`` is
that grid's size, so aggregators can rebuild the spatial layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.orientation import Orientation
from medwss.errors import CorruptFileError, InvalidDataError, require_file
from medwss.io.atomic import atomic_path
from medwss.io.limits import check_bytes, check_count, limit

TILE_KINDS = ("slide", "axial2d", "stack25d", "patch3d")


@dataclass
class TileSet:
    """The tiles of one case.

    Attributes:
        case_id: Case identifier (manifest ``case_id``).
        source: Path of the image (slide or volume; the first channel for multi-channel cases).
        kind: One of `TILE_KINDS`.
        coords: (N, 2) level-0 (x, y) for slides, (N, 3) voxel (i, j, k) for volumes; int64.
        grid_index: (N, 2) (row, col) for slides and 2D tiles, (N, 3) for 3D patches; int64.
        grid_shape: Size of the tile grid.
        tile_size: Output tile side in pixels (slides) or the patch extent in voxels (volumes).
        tissue_fraction: (N,) fraction of each tile inside the tissue/foreground mask.
        mpp: Target microns per pixel (slides).
        level: Pyramid level the tiles are read from (slides).
        span: Tile side in level-0 pixels (slides).
        spacing: Voxel spacing in mm (volumes).
        attrs: Other facts (tissue detection settings, overlap, the source orientation of volumes, ...).
    """

    case_id: str
    source: str
    kind: str
    coords: np.ndarray
    grid_index: np.ndarray
    grid_shape: tuple[int, ...]
    tile_size: tuple[int, ...]
    tissue_fraction: np.ndarray
    mpp: float | None = None
    level: int | None = None
    span: float | None = None
    spacing: tuple[float, ...] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TILE_KINDS:
            raise ValueError(f"kind must be one of {TILE_KINDS}, got {self.kind!r}")
        self.coords = np.asarray(self.coords, dtype=np.int64).reshape(-1, 2 if self.kind == "slide" else 3)
        grid = np.asarray(self.grid_index, dtype=np.int64)
        self.grid_index = grid.reshape(len(self.coords), grid.shape[-1] if grid.size else self.coords.shape[1])
        self.tissue_fraction = np.asarray(self.tissue_fraction, dtype=np.float32).reshape(len(self.coords))
        self.grid_shape = tuple(int(s) for s in self.grid_shape)
        self.tile_size = tuple(int(s) for s in np.atleast_1d(self.tile_size))

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def orientation(self) -> Orientation | None:
        """How the stored volume maps onto the canonical grid the coords are on (None: slides, old files)."""
        d = self.attrs.get("orientation")
        return Orientation.from_dict(d) if isinstance(d, dict) else None

    def subset(self, index: np.ndarray) -> TileSet:
        """The tiles selected by a boolean mask or an index array (e.g. one rank's share)."""
        return TileSet(
            self.case_id, self.source, self.kind, self.coords[index], self.grid_index[index], self.grid_shape,
            self.tile_size, self.tissue_fraction[index], self.mpp, self.level, self.span, self.spacing, dict(self.attrs),
        )  # fmt: skip


_SCALARS = ("case_id", "source", "kind", "mpp", "level", "span")


def save_tiles(tiles: TileSet, path: str | Path) -> Path:
    """Write a `TileSet` to HDF5, atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("coords", data=tiles.coords)
        f.create_dataset("grid_index", data=tiles.grid_index)
        f.create_dataset("tissue_fraction", data=tiles.tissue_fraction)
        for key in _SCALARS:
            value = getattr(tiles, key)
            if value is not None:
                f.attrs[key] = value
        f.attrs["grid_shape"] = np.asarray(tiles.grid_shape, dtype=np.int64)
        f.attrs["tile_size"] = np.asarray(tiles.tile_size, dtype=np.int64)
        if tiles.spacing is not None:
            f.attrs["spacing"] = np.asarray(tiles.spacing, dtype=np.float64)
        for key, value in tiles.attrs.items():
            if isinstance(value, dict):  # HDF5 attributes hold no mappings: stored as JSON
                f.attrs[f"json_{key}"] = json.dumps(value)
            else:
                f.attrs[f"extra_{key}"] = value
    return Path(path)


def check_tile_size(tile_size: tuple[int, ...] | list[int], path: str | Path | None, channels: int = 1) -> None:
    """Refuse a tile extent that is not positive or whose voxels exceed ``MEDWSS_MAX_TILE_VOXELS``.

    A slide tile of side S has S² pixels (``tile_size`` holds one value); volume patches have
    ``si * sj * sk`` voxels.
    """
    dims = [int(s) for s in tile_size]
    if not dims or min(dims) < 1:
        raise InvalidDataError(f"tile_size {dims} must be positive", path)
    if len(dims) == 1:
        dims = dims * 2
    check_count(f"tile_size {'x'.join(map(str, dims))}: voxels per tile", math.prod(dims) * channels,
                "MEDWSS_MAX_TILE_VOXELS", path)  # fmt: skip


def check_tileset(tiles: TileSet, path: str | Path | None) -> None:
    """Refuse a tile set whose claims would allocate without bound when it is read or embedded.

    Checks: the tile extent (`check_tile_size`), the number of tiles (``MEDWSS_MAX_TILES``), the
    grid's cells (``MEDWSS_MAX_GRID_CELLS``), every grid index inside the grid, and coordinates within
    ``MEDWSS_MAX_COORD``.

    Raises:
        InvalidDataError (`medwss.io.limits.LimitExceededError` for the size limits), naming `path`.
    """
    expected = 1 if tiles.kind == "slide" else 3
    if len(tiles.tile_size) != expected:
        raise InvalidDataError(f"{tiles.kind} tiles need {expected} tile_size value(s), got {tiles.tile_size}", path)
    check_tile_size(tiles.tile_size, path)
    check_count("number of tiles", len(tiles), "MEDWSS_MAX_TILES", path)
    shape = tiles.grid_shape
    if len(shape) != tiles.grid_index.shape[1] or (shape and min(shape) < 1):
        raise InvalidDataError(f"grid_shape {shape} does not fit grid_index of width {tiles.grid_index.shape[1]}", path)
    check_count(f"grid_shape {'x'.join(map(str, shape))}: cells", math.prod(shape), "MEDWSS_MAX_GRID_CELLS", path)
    if len(tiles):
        g = tiles.grid_index
        if bool((g < 0).any()) or bool((g >= np.asarray(shape, dtype=np.int64)).any()):
            raise InvalidDataError(f"grid_index outside grid_shape {shape}", path)
        cap = limit("MEDWSS_MAX_COORD")
        worst = int(np.abs(tiles.coords).max())
        if worst > cap:
            raise InvalidDataError(
                f"a tile coordinate is {worst:,}, over the limit of {cap:,} (MEDWSS_MAX_COORD)", path
            )
    if tiles.span is not None and not (math.isfinite(tiles.span) and tiles.span > 0):
        raise InvalidDataError(f"span {tiles.span} must be a positive number", path)


def _read_dataset(f: Any, name: str, path: Path, width: int | None = None) -> np.ndarray:
    """A small dataset read after its claimed shape is checked (never a group, never over the caps)."""
    import h5py

    d = f[name]
    if not isinstance(d, h5py.Dataset):
        raise InvalidDataError(f"'{name}' is a {type(d).__name__}, not a dataset", path)
    check_count(f"'{name}' rows", int(d.shape[0]) if d.shape else 1, "MEDWSS_MAX_TILES", path)
    check_bytes(f"'{name}'", d.shape, d.dtype.itemsize, "MEDWSS_MAX_BAG_BYTES", path)
    if width is not None and (len(d.shape) != 2 or d.shape[1] != width):
        raise InvalidDataError(f"'{name}' must be N×{width}, got shape {d.shape}", path)
    return d[()]


def load_tiles(path: str | Path) -> TileSet:
    """Read a `TileSet` written by `save_tiles`, refusing one whose claims are over the limits (`check_tileset`).

    Raises:
        CorruptFileError: Not a medwss tile file. InvalidDataError: Claims over the limits, grid out of range.
    """
    import h5py

    p = require_file(path)
    try:
        with h5py.File(p, "r") as f:
            a = dict(f.attrs)
            kind = str(a["kind"])
            if kind not in TILE_KINDS:
                raise CorruptFileError(f"kind {kind!r} is not one of {TILE_KINDS}", p)
            tile_size = tuple(int(v) for v in np.atleast_1d(a["tile_size"]))
            check_tile_size(tile_size, p)
            grid_shape = tuple(int(v) for v in np.atleast_1d(a["grid_shape"]))
            extra = {k[len("extra_") :]: _plain(v) for k, v in a.items() if k.startswith("extra_")}
            extra.update({k[len("json_") :]: json.loads(v) for k, v in a.items() if k.startswith("json_")})
            tiles = TileSet(
                case_id=str(a["case_id"]),
                source=str(a["source"]),
                kind=kind,
                coords=_read_dataset(f, "coords", p, 2 if kind == "slide" else 3),
                grid_index=_read_dataset(f, "grid_index", p),
                grid_shape=grid_shape,
                tile_size=tile_size,
                tissue_fraction=_read_dataset(f, "tissue_fraction", p),
                mpp=float(a["mpp"]) if "mpp" in a else None,
                level=int(a["level"]) if "level" in a else None,
                span=float(a["span"]) if "span" in a else None,
                spacing=tuple(float(s) for s in a["spacing"]) if "spacing" in a else None,
                attrs=extra,
            )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CorruptFileError(f"not a medwss tile file ({exc})", p) from exc
    check_tileset(tiles, p)
    return tiles


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
